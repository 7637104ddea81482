"""A fake OpenAI-compatible chat server on 127.0.0.1: scripted answers, injected failures, call counts.

    with FakeOpenAI(reply=lambda body: "I'm sorry") as server:
        spec = f"openai:fake@{server.url}"

`reply(body)` returns the assistant text, or a `Reply` for full control (status, headers, raw body, delay, hang).
`reply` may be replaced while the server runs (the contract kit answers in each judge's own format that way).
Loopback only: nothing here opens a port beyond 127.0.0.1.
"""

from __future__ import annotations

import json
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


__all__ = ["FakeOpenAI", "Reply", "chat_body", "last_user_text"]
