"""OpenAI-compatible chat endpoints: OpenAI, vLLM, llama.cpp server, Ollama, ...

Spec: `openai:<model>` or `openai:<model>@<base_url>`; otherwise the base URL comes from `--base-url`,
then $OPENAI_BASE_URL, then OpenAI's. The API key is read from an environment variable at call time and is
never part of the spec, the identity, the store or a report.

Requests go over lean keep-alive connections (`http.py`), one per concurrency slot, or through httpx when a proxy
is configured. Transient failures (429, 5xx, timeouts, refused connections, garbage bodies) are retried with exponential
backoff and full jitter, honouring Retry-After. After the last try the item is returned as an error
Completion, which the engine stores as an error and retries on the next run.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import ssl
import time
from typing import Sequence

import certifi
import httpx

from ..errors import BackendError, SpecError
from ..types import Completion, Conversation, GenerationConfig
from .base import MODELS, ModelBackend, ModelOptions
from .http import Connection, HttpConnectionError, HttpResponse

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class TransientError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def parse_chat_response(body: bytes) -> Completion:
    """Read an OpenAI chat-completions body. Anything that is not one raises TransientError."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        text = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise TransientError(f"malformed response body ({type(err).__name__}): {body[:80]!r}") from None
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise TransientError("malformed response body: message.content is not text")
    usage = data.get("usage") or {}
    return Completion(
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=str(choice.get("finish_reason") or "stop"),
    )


class OpenAICompatible(ModelBackend):
    batch_size = 1

    def __init__(self, model: str, *, options: ModelOptions, base_url: str | None = None):
        self.model_name = model
        self.options = options
        self.base_url = (base_url or options.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.spec = f"openai:{model}@{self.base_url}"
        self.identity = self.spec
        self.concurrency = max(1, options.concurrency)
        self._idle: asyncio.Queue | None = None
        self._slots: list = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def _api_key(self) -> str:
        key = os.environ.get(self.options.api_key_env, "")
        if not key and self.base_url == DEFAULT_BASE_URL:
            raise BackendError(f"set ${self.options.api_key_env} to call {self.base_url}")
        return key or "EMPTY"  # local servers (vLLM, llama.cpp, Ollama) accept any key

    def _slot_pool(self) -> asyncio.Queue:
        """One connection per concurrency slot: the queue bounds requests in flight."""
        loop = asyncio.get_running_loop()
        if self._idle is not None and self._loop is not loop:  # used from a new asyncio.run(): start afresh
            for slot in self._slots:
                slot.close()
            self._slots, self._idle = [], None
        if self._idle is None:
            self._loop = loop
            headers = {"Authorization": f"Bearer {self._api_key()}", "Accept": "application/json"}
            tls = ssl.create_default_context(cafile=certifi.where())  # shared: building one costs ~30 ms
            make = HttpxSlot if _proxy_configured() else Connection
            self._idle = asyncio.Queue()
            for _ in range(self.concurrency):
                slot = make(self.base_url, tls, headers)
                self._slots.append(slot)
                self._idle.put_nowait(slot)
        return self._idle

    def payload(self, conversation: Conversation, config: GenerationConfig) -> dict:
        return {
            "model": self.model_name,
            "messages": [m.to_dict() for m in conversation],
            "temperature": config.temperature,
            "top_p": config.top_p,
            "max_tokens": config.max_tokens,
            "seed": config.seed,
        }

    async def _once(self, body: bytes) -> Completion:
        idle = self._slot_pool()
        slot = await idle.get()
        try:
            response = await slot.post_json("/chat/completions", body, self.options.timeout)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise TransientError(f"Timeout: no answer within {self.options.timeout:g} s") from None
        except (HttpConnectionError, OSError, httpx.TransportError) as err:
            raise TransientError(f"{type(err).__name__}: {err or 'connection failed'}") from None
        finally:
            idle.put_nowait(slot)
        if response.status in RETRY_STATUS:
            raise TransientError(f"HTTP {response.status}", parse_retry_after(response.headers.get("retry-after")))
        if response.status >= 400:
            detail = response.body[:200].decode("utf-8", "replace").replace("\n", " ")
            raise BackendError(f"HTTP {response.status} from {self.base_url}: {detail}")
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
                return Completion.failed(str(err))
        return Completion.failed(f"gave up after {self.options.max_retries + 1} tries: {last}")

    async def generate(self, conversations: Sequence[Conversation], config: GenerationConfig) -> list[Completion]:
        return list(await asyncio.gather(*(self.complete(c, config) for c in conversations)))

    async def aclose(self) -> None:
        for slot in self._slots:
            slot.close()
            await asyncio.sleep(0)
        self._slots, self._idle = [], None


def _proxy_configured() -> bool:
    return any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"))


class HttpxSlot:
    """The same interface as `http.Connection`, through httpx, which honours proxy settings."""

    def __init__(self, base_url: str, tls: ssl.SSLContext, headers: dict[str, str]):
        self.client = httpx.AsyncClient(base_url=base_url, verify=tls, headers=headers, trust_env=True,
                                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    async def post_json(self, path: str, body: bytes, timeout: float) -> HttpResponse:
        response = await self.client.post(path, content=body, timeout=timeout, headers={"Content-Type": "application/json"})
        return HttpResponse(response.status_code, {k.lower(): v for k, v in response.headers.items()}, response.content)

    def close(self) -> None:
        try:
            asyncio.get_running_loop().create_task(self.client.aclose())
        except RuntimeError:  # no loop running any more: nothing left to flush
            pass


@MODELS.register("openai", takes_argument=True, summary="An OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, Ollama).", example="openai:gpt-4o-mini@http://127.0.0.1:8000/v1")
def _openai(arg: str, *, options: ModelOptions) -> OpenAICompatible:
    model, sep, base_url = arg.partition("@")
    if not model:
        raise SpecError(f"model name missing in 'openai:{arg}'", field="model")
    if sep and not base_url.startswith(("http://", "https://")):
        raise SpecError(f"base URL in 'openai:{arg}' must start with http:// or https://", field="model")
    return OpenAICompatible(model, options=options, base_url=base_url or None)
