"""A fake OpenAI-compatible server on 127.0.0.1 for tests: scripted answers, injected failures, call counts.

    with FakeOpenAI(reply=lambda body: "I'm sorry") as server:
        spec = f"openai:fake@{server.url}"

`reply(body)` returns the assistant text, or a `Reply` for full control (status, headers, raw body, delay).
`RawServer(respond)` sends exactly the bytes `respond(body)` gives (a `Raw`): malformed answers, HTTP/1.0, ...
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    text: str | None = None
    status: int = 200
    headers: dict = field(default_factory=dict)
    raw: bytes | None = None  # sent as is instead of a chat-completion body
    delay: float = 0.0  # seconds before answering (timeouts)
    hang: bool = False  # never answer (until the server closes)


def chat_body(text: str, model: str = "fake") -> bytes:
    return json.dumps({
        "id": "chatcmpl-fake", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": max(1, len(text.split()))},
    }).encode()


def judged(judge, items) -> list:
    """Judge `items` once, closing the judge's connections afterwards."""
    async def go():
        try:
            return await judge.judge(items)
        finally:
            await judge.aclose()

    return asyncio.run(go())


def last_user_text(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


class FakeOpenAI:
    def __init__(self, reply: Callable[[dict], "str | Reply"] = lambda body: "I'm sorry, I can't help with that."):
        self.reply = reply
        self.received = 0  # requests read
        self.answered = Counter()  # user text -> successful (200) answers sent
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.received += 1
                    server.requests.append(body)
                    server.headers_seen.append(dict(self.headers))
                out = server.reply(body)
                out = out if isinstance(out, Reply) else Reply(text=out)
                if out.hang:
                    server._stop.wait(60)
                    return
                if out.delay:
                    time.sleep(out.delay)
                payload = out.raw if out.raw is not None else chat_body(out.text or "")
                try:
                    self.send_response(out.status)
                    for key, value in out.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if out.status == 200 and out.raw is None:
                    with server._lock:
                        server.answered[last_user_text(body)] += 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# -- a server that sends exactly the bytes it is told to -----------------------------------------------------
@dataclass
class Raw:
    """What `RawServer` does for one request: wait, send bytes as they are, maybe close."""

    data: bytes = b""
    close: bool = False  # close the connection after sending
    silence: float = 0.0  # seconds to wait before sending (timeouts)
    half_close: bool = False  # shut down the sending side only, and keep counting what the client still writes


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
