"""OpenAI-compatible chat endpoints: OpenAI, vLLM, llama.cpp server, Ollama, ...

Spec: `openai:<model>` or `openai:<model>@<base_url>[,<base_url>...]`; otherwise the base URLs come from
`--base-url` (repeatable), then $OPENAI_BASE_URL (comma-separated), then OpenAI's. Every URL is validated
first (see `endpoints`): a bad one, or a URL holding a password, is an InputError before anything is sent or
stored. The API key is read from an environment variable and is never part of the spec, the identity, the
store or a report; an https endpoint off loopback without a key stops at construction (exit 2).

Several URLs are replicas of one model (vLLM, llama.cpp or Ollama on several machines or ports): each
connection slot is bound round-robin to a replica. The identity is the model name and the *first* URL, so
answers stored through one replica set are reused by another that lists the same first URL; a replica that
fails `REPLICA_MAX_FAILURES` times in a row (connection failures, timeouts, 5xx) is taken out of rotation with
a one-line warning and its slots move to the others (the last one standing is never taken out).

Requests go over lean keep-alive connections (`http.py`), one per concurrency slot, or through httpx when a
proxy is configured. Transient failures (429, 5xx, timeouts, refused connections, malformed or oversized
answers) are retried with exponential backoff and full jitter, honouring Retry-After. After the last try the
item is returned as an error Completion with a one-line reason, which the engine stores as an error and
retries on the next run. No answer, however malformed, raises out of `generate`.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import ssl
import time
from dataclasses import dataclass
from typing import Sequence

from ..errors import BackendError, InputError, SpecError
from ..secrets import redact, remember
from ..types import Completion, Conversation, GenerationConfig
from .base import MODELS, ModelBackend, ModelOptions
from .endpoints import needs_api_key, parse_base_urls
from .http import Connection, HttpConnectionError, HttpProtocolError, HttpResponse

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
REPLICA_MAX_FAILURES = 3
_MAX_TOKENS_FIELD = 2**53  # usage counts beyond this are not counts (and overflow SQLite's INTEGER)
log = logging.getLogger("polysafe")


class TransientError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait, from delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        try:
            seconds = parsed.timestamp() - time.time()
        except (OverflowError, OSError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _token_count(usage: dict, name: str) -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or not 0 <= value < _MAX_TOKENS_FIELD:
        raise TransientError(f"malformed usage block: {name} is {repr(value)[:30]}")
    return value


def _storable(text: str) -> str:
    """JSON may carry lone surrogates (\\ud800), which UTF-8 (and so the store) cannot hold."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def parse_chat_response(body: bytes) -> Completion:
    """Read an OpenAI chat-completions body. Anything that is not one raises TransientError."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        text = choice["message"]["content"]
        finish_reason = choice.get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, RecursionError) as err:
        raise TransientError(f"malformed response body ({type(err).__name__}): {body[:80]!r}") from None
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise TransientError(f"malformed response body: message.content is a {type(text).__name__}, not text")
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise TransientError(f"malformed response body: finish_reason is a {type(finish_reason).__name__}")
    usage = data.get("usage")
    if usage is None:
        usage = {}
    if not isinstance(usage, dict):
        raise TransientError(f"malformed usage block: a {type(usage).__name__}, not an object")
    return Completion(
        text=_storable(text),
        prompt_tokens=_token_count(usage, "prompt_tokens"),
        completion_tokens=_token_count(usage, "completion_tokens"),
        finish_reason=_storable(finish_reason or "stop")[:40],
    )


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class Replica:
    url: str
    failures: int = 0  # in a row
    down: bool = False


class _Slot:
    """One connection at a time, bound to one replica."""

    def __init__(self, replica: Replica, connection):
        self.replica = replica
        self.connection = connection


class OpenAICompatible(ModelBackend):
    batch_size = 1

    def __init__(self, model: str, *, options: ModelOptions, base_urls: tuple[str, ...] = ()):
        self.model_name = model
        self.options = options
        self.replicas = [Replica(url) for url in (base_urls or resolve_base_urls(options))]
        self.base_urls = tuple(r.url for r in self.replicas)
        self.base_url = self.base_urls[0]
        self.spec = f"openai:{model}@{self.base_url}"
        self.identity = self.spec  # the first URL names a replica set: adding or removing others keeps it
        self.concurrency = max(1, options.concurrency)
        self._check_key()
        self._idle: asyncio.Queue | None = None
        self._slots: list[_Slot] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_replica = 0

    def _check_key(self) -> None:
        key = os.environ.get(self.options.api_key_env, "")
        remember(key)
        missing = [url for url in self.base_urls if needs_api_key(url)]
        if not key and missing and self.options.require_key:  # a dry run counts calls without a key
            raise InputError(f"${self.options.api_key_env} is not set, and {missing[0]} needs an API key "
                             "(set it, or name another variable with --api-key-env)", field="--api-key-env")

    def _api_key(self) -> str:
        key = os.environ.get(self.options.api_key_env, "")
        remember(key)
        return key or "EMPTY"  # local servers (vLLM, llama.cpp, Ollama) accept any key

    def _connect(self, replica: Replica, tls: ssl.SSLContext | None, headers: dict[str, str]):
        make = HttpxSlot if _proxy_configured() else Connection
        return make(replica.url, tls, headers, self.options.max_response_bytes)

    def _slot_pool(self) -> asyncio.Queue:
        """One connection per concurrency slot, bound round-robin to the replicas: the queue bounds requests in flight."""
        loop = asyncio.get_running_loop()
        if self._idle is not None and self._loop is not loop:  # used from a new asyncio.run(): start afresh
            for slot in self._slots:
                slot.connection.close()
            self._slots, self._idle = [], None
        if self._idle is None:
            self._loop = loop
            self._headers = {"Authorization": f"Bearer {self._api_key()}", "Accept": "application/json"}
            self._tls = _tls_context() if any(url.startswith("https:") for url in self.base_urls) else None
            self._idle = asyncio.Queue()
            for _ in range(self.concurrency):
                replica = self._pick_replica()
                slot = _Slot(replica, self._connect(replica, self._tls, self._headers))
                self._slots.append(slot)
                self._idle.put_nowait(slot)
        return self._idle

    def _pick_replica(self) -> Replica:
        alive = [r for r in self.replicas if not r.down] or self.replicas
        replica = alive[self._next_replica % len(alive)]
        self._next_replica += 1
        return replica

    def _rebind(self, slot: _Slot) -> None:
        slot.connection.close()
        slot.replica = self._pick_replica()
        slot.connection = self._connect(slot.replica, self._tls, self._headers)

    def _replica_failed(self, replica: Replica, reason: str) -> None:
        replica.failures += 1
        others = [r for r in self.replicas if r is not replica and not r.down]
        if replica.down or replica.failures < REPLICA_MAX_FAILURES or not others:
            return
        replica.down = True
        log.warning("warning: replica %s of openai:%s taken out of rotation after %d failures in a row (last: %s); "
                    "its requests go to the %d other replica(s)", replica.url, self.model_name, replica.failures,
                    _one_line(reason, 120), len(others))

    def payload(self, conversation: Conversation, config: GenerationConfig) -> dict:
        return {
            "model": self.model_name,
            "messages": [m.to_dict() for m in conversation],
            "temperature": config.temperature,
            "top_p": config.top_p,
            "max_tokens": config.max_tokens,
            "seed": config.seed,
        }

    async def _exchange(self, body: bytes) -> tuple[Replica, HttpResponse]:
        idle = self._slot_pool()
        slot = await idle.get()
        try:
            if slot.replica.down:
                self._rebind(slot)
            replica = slot.replica
            try:
                return replica, await slot.connection.post_json("/chat/completions", body, self.options.timeout)
            except asyncio.TimeoutError:
                reason = f"Timeout: no answer within {self.options.timeout:g} s"
                self._replica_failed(replica, reason)
                raise TransientError(reason) from None
            except HttpConnectionError as err:
                self._replica_failed(replica, str(err))
                raise TransientError(f"connection failed: {err}") from None
            except HttpProtocolError as err:
                raise TransientError(f"malformed HTTP response: {err}") from None
            except OSError as err:
                self._replica_failed(replica, str(err))
                raise TransientError(f"{type(err).__name__}: {err or 'connection failed'}") from None
        finally:
            idle.put_nowait(slot)

    async def _once(self, body: bytes) -> Completion:
        replica, response = await self._exchange(body)
        status = response.status
        if status >= 500:
            self._replica_failed(replica, f"HTTP {status}")
        else:
            replica.failures = 0
        if status in RETRY_STATUS:
            raise TransientError(f"HTTP {status} from {replica.url}", parse_retry_after(response.headers.get("retry-after")))
        if status >= 300:
            detail = response.body[:200].decode("utf-8", "replace")
            hint = " (redirects are not followed: give the final URL)" if status < 400 else ""
            raise BackendError(f"HTTP {status} from {replica.url}{hint}: {detail}")
        return parse_chat_response(response.body)

    async def complete(self, conversation: Conversation, config: GenerationConfig) -> Completion:
        body = json.dumps(self.payload(conversation, config), ensure_ascii=False).encode()
        last = "no attempt"
        for attempt in range(self.options.max_retries + 1):
            try:
                return await self._once(body)
            except TransientError as err:
                last = str(err)
                if attempt == self.options.max_retries:
                    break
                delay = random.uniform(0, min(self.options.backoff_max, self.options.backoff_base * 2**attempt))
                if err.retry_after is not None:
                    delay = max(delay, min(err.retry_after, self.options.backoff_max))
                await asyncio.sleep(delay)
            except BackendError as err:
                return self._failed(str(err))
            except Exception as err:  # a bug or an answer no rule foresaw: this item fails, the run goes on
                return self._failed(f"unexpected {type(err).__name__} while reading the answer: {err}")
        return self._failed(f"gave up after {self.options.max_retries + 1} tries: {last}")

    def _failed(self, reason: str) -> Completion:
        return Completion.failed(redact(_one_line(reason)))

    async def generate(self, conversations: Sequence[Conversation], config: GenerationConfig) -> list[Completion]:
        if len(conversations) == 1:  # the engine's usual call (batch_size 1): no task to spawn
            return [await self.complete(conversations[0], config)]
        return list(await asyncio.gather(*(self.complete(c, config) for c in conversations)))

    async def aclose(self) -> None:
        for slot in self._slots:
            slot.connection.close()
            await asyncio.sleep(0)
        self._slots, self._idle = [], None


def resolve_base_urls(options: ModelOptions) -> tuple[str, ...]:
    """--base-url (repeatable, or comma-separated), then $OPENAI_BASE_URL, then OpenAI's."""
    given = [*options.base_urls, *([options.base_url] if options.base_url else [])]
    if given:
        return tuple(dict.fromkeys(url for value in given for url in parse_base_urls(value, "--base-url")))
    if os.environ.get("OPENAI_BASE_URL"):
        return parse_base_urls(os.environ["OPENAI_BASE_URL"], "$OPENAI_BASE_URL")
    return (DEFAULT_BASE_URL,)


def _tls_context() -> ssl.SSLContext:
    import certifi  # only for https endpoints

    return ssl.create_default_context(cafile=certifi.where())  # shared: building one costs ~30 ms


def _proxy_configured() -> bool:
    return any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"))


class HttpxSlot:
    """The same interface as `http.Connection`, through httpx, which honours proxy settings."""

    def __init__(self, base_url: str, tls: ssl.SSLContext | None, headers: dict[str, str], max_response_bytes: int):
        import httpx  # only with a proxy: importing it costs ~0.1 s

        self.max_response_bytes = max_response_bytes
        self.client = httpx.AsyncClient(base_url=base_url, verify=tls or True, headers=headers, trust_env=True,
                                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def post_json(self, path: str, body: bytes, timeout: float) -> HttpResponse:
        import httpx

        headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        try:
            async with self.client.stream("POST", path, content=body, timeout=timeout, headers=headers) as response:
                if response.headers.get("content-encoding", "identity").lower() not in ("", "identity"):
                    raise HttpProtocolError("compressed response though none was accepted")
                data = bytearray()
                async for chunk in response.aiter_raw():
                    data += chunk
                    if len(data) > self.max_response_bytes:
                        raise HttpProtocolError(f"response body over the {self.max_response_bytes:,}-byte cap (--max-response-bytes)")
                return HttpResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()}, bytes(data))
        except httpx.TimeoutException:
            raise asyncio.TimeoutError() from None
        except httpx.HTTPError as err:
            raise HttpConnectionError(f"{type(err).__name__}: {err}") from None

    def close(self) -> None:
        try:
            asyncio.get_running_loop().create_task(self.client.aclose())
        except RuntimeError:  # no loop running any more: nothing left to flush
            pass


@MODELS.register("openai", takes_argument=True, summary="An OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama).", example="openai:gpt-4o-mini@http://127.0.0.1:8000/v1")
def _openai(arg: str, *, options: ModelOptions) -> OpenAICompatible:
    model, sep, urls = arg.partition("@")
    if not model:
        raise SpecError("model name missing in 'openai:<model>[@<url>]'", field="model")
    if sep:
        try:
            base_urls = parse_base_urls(urls, "model spec 'openai:<model>@<url>'")
        except InputError as err:
            raise SpecError(str(err)) from None
        return OpenAICompatible(model, options=options, base_urls=base_urls)
    return OpenAICompatible(model, options=options)
