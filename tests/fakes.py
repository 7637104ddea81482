"""Fakes for polysafe's own tests. `FakeOpenAI` (scripted answers, injected failures, call counts) is the public
kit's, `polysafe.testing.FakeOpenAI`:

    with FakeOpenAI(reply=lambda body: "I'm sorry") as server:
        spec = f"openai:fake@{server.url}"

`RawServer(respond)` sends exactly the bytes `respond(body)` gives (a `Raw`): malformed answers, HTTP/1.0, ...
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from polysafe.testing.server import FakeOpenAI, Reply, chat_body, last_user_text  # noqa: F401  (the public kit's)


def judged(judge, items) -> list:
    """Judge `items` once, closing the judge's connections afterwards."""
    async def go():
        try:
            return await judge.judge(items)
        finally:
            await judge.aclose()

    return asyncio.run(go())


def run_plain_llm_judged(target_url: str, judge_url: str, prompts, db, options):
    """One plain run of `prompts` on the fake target, judged by `llm:` on the fake judge server into the store `db`
    (run 'r'). Returns the summary and the stored labels, in item order."""
    from polysafe.attacks import parse_chain
    from polysafe.engine.runner import EvalTask, Scenario, run_eval
    from polysafe.engine.store import Store
    from polysafe.judges import load_judge
    from polysafe.models import load_model

    async def go():
        model, judge = load_model(f"openai:t@{target_url}", options), load_judge(f"llm:openai:j@{judge_url}", options)
        with Store(db) as store:
            summary = await run_eval(EvalTask("t", prompts, [Scenario("plain", parse_chain("none"))]), model, judge,
                                     store, run_name="r")
            labels = [row.label for row in store.results("r")]
        await model.aclose()
        await judge.aclose()
        return summary, labels

    return asyncio.run(go())


# -- a server that sends exactly the bytes it is told to -----------------------------------------------------
@dataclass
class Raw:
    """What `RawServer` does for one request: wait, send bytes as they are, maybe close."""

    data: bytes = b""
    close: bool = False  # close the connection after sending
    silence: float = 0.0  # seconds to wait before sending (timeouts)
    half_close: bool = False  # shut down the sending side only, and keep counting what the client still writes


def run_refusal_judged(store, spec: str, options, texts, run_name: str, max_tokens: int = 6):
    """`texts` through the local model `spec` with ModelOptions `options`, judged by the refusal matcher, stored
    in `store` under `run_name`: the RunSummary (generated vs cached says what was paid for)."""
    from polysafe.attacks import parse_chain
    from polysafe.engine import EvalTask, Scenario, run_eval
    from polysafe.judges import load_judge
    from polysafe.models import load_model
    from polysafe.types import GenerationConfig, Prompt

    task = EvalTask("t", [Prompt(id=str(i), text=t) for i, t in enumerate(texts)], [Scenario("none", parse_chain("none"))])
    backend = load_model(spec, options)
    return asyncio.run(run_eval(task, backend, load_judge("refusal"), store, gen=GenerationConfig(max_tokens=max_tokens),
                                run_name=run_name))


def http_response(body: bytes, status: int = 200, headers: dict | None = None, version: str = "HTTP/1.1",
                  length: bool = True) -> bytes:
    """A well-formed response (unless the headers given say otherwise)."""
    lines = [f"{version} {status} X"]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class RawServer:
    """A loopback HTTP server whose answers are raw bytes: `respond(request body as dict) -> Raw`.

    Counts requests per user text (`requests`), connections accepted (`connections`) and requests that
    arrived on a connection the server had already finished with (`wasted`)."""

    def __init__(self, respond: Callable[[dict], Raw]):
        self.respond = respond
        self.requests: Counter = Counter()
        self.connections = 0
        self.wasted = 0
        self.headers_seen: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "RawServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:  # timeout: look at the stop flag again
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket, buffer: bytearray) -> dict | None:
        while b"\r\n\r\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buffer += chunk
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            rest += chunk
        buffer[:] = rest[length:]
        with self._lock:
            self.headers_seen.append(head)
        return json.loads(rest[:length])

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buffer = bytearray()
        try:
            while not self._stop.is_set():
                body = self._read_request(conn, buffer)
                if body is None:
                    return
                with self._lock:
                    self.requests[last_user_text(body)] += 1
                action = self.respond(body)
                if action.silence:
                    self._stop.wait(action.silence)
                conn.sendall(action.data)
                if action.half_close:
                    conn.shutdown(socket.SHUT_WR)
                    if self._read_request(conn, buffer) is not None:  # written to a connection already done with
                        with self._lock:
                            self.wasted += 1
                    return
                if action.close:
                    return
        except OSError:
            return
        finally:
            conn.close()
