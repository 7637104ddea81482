"""A lean HTTP/1.1 client for JSON POSTs over keep-alive connections (asyncio streams, TLS when https).

Why not httpx here: on a 2-core machine httpx/httpcore spend ~2 ms of CPU per request, which capped the whole
engine at ~400 requests/s against a loopback endpoint; this client needs a fraction of that. It does exactly
what chat-completion calls need (Content-Length, chunked or read-to-close bodies, keep-alive, timeouts) and no
more. Proxies are not supported: with HTTP(S)_PROXY set, the backend falls back to httpx (see openai_compat).

The server is not trusted. Whatever it sends, a call ends in an `HttpResponse` or raises one of
`HttpConnectionError` (the transport failed) or `HttpProtocolError` (the bytes are not a valid response, or
too many of them): a head over `MAX_HEAD_BYTES`, a body over `max_response_bytes` (default 8 MiB), a bad
status line, Content-Length or chunk size, a body cut short. Each error closes the connection, so garbage
never leaks into the next answer.

Keep-alive follows the server's word: an HTTP/1.0 answer without `Connection: keep-alive`, a
`Connection: close`, or a body that runs to the end of the connection closes it after reading, and the next
request opens a fresh one; nothing is written to a connection the server has said it will close.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from .base import DEFAULT_MAX_RESPONSE_BYTES

MAX_HEAD_BYTES = 64 * 2**10  # status line + headers, and any one chunk-size or trailer line
_STATUS_LINE = re.compile(r"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [^\r\n]*)?")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_NO_BODY = {204, 304}


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpConnectionError(Exception):
    """The connection failed or closed before a full response arrived."""


class HttpProtocolError(Exception):
    """The server sent something that is not a valid HTTP/1.x response, or a response over the size cap."""


class _NothingReceived(Exception):
    """The connection failed before a single byte of the answer arrived (e.g. a stale keep-alive)."""


class Connection:
    """One keep-alive connection to one origin. Not safe for concurrent use: one request at a time."""

    def __init__(self, base_url: str, tls: ssl.SSLContext | None, headers: dict[str, str],
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.tls = tls if self.https else None
        self.max_response_bytes = max_response_bytes
        host = f"[{self.host}]" if ":" in self.host else self.host
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        self.fixed_headers = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host_header, **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: bytes, timeout: float) -> HttpResponse:
        if self.writer is not None and self._stale():
            self.close()
        reused = self.writer is not None
        try:
            async with asyncio.timeout(timeout):  # no extra task per request, unlike wait_for
                return await self._exchange(path, body)
        except _NothingReceived as err:
            if not reused:
                raise HttpConnectionError(str(err)) from None
        # A kept-alive connection the server closed while idle: one fresh try, no backoff needed.
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(path, body)
        except _NothingReceived as err:
            raise HttpConnectionError(str(err)) from None

    def _stale(self) -> bool:
        """The server closed the idle connection, or left bytes no request asked for: don't write to it."""
        assert self.reader is not None and self.writer is not None
        return self.reader.at_eof() or self.writer.is_closing() or bool(getattr(self.reader, "_buffer", b""))

    async def _exchange(self, path: str, body: bytes) -> HttpResponse:
        try:
            return await self._exchange_unguarded(path, body)
        except BaseException:
            self.close()
            raise

    async def _exchange_unguarded(self, path: str, body: bytes) -> HttpResponse:
        if self.writer is None:
            try:
                self.reader, self.writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls, server_hostname=self.host if self.tls else None,
                    limit=MAX_HEAD_BYTES)
            except OSError as err:
                raise HttpConnectionError(f"cannot connect to {self.host}:{self.port}: {_reason(err)}") from None
        assert self.reader is not None and self.writer is not None
        head = (f"POST {self.prefix}{path} HTTP/1.1\r\n{self.fixed_headers}Content-Type: application/json\r\n"
                f"Accept-Encoding: identity\r\nContent-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n")
        try:
            self.writer.write(head.encode("latin-1") + body)
            await self.writer.drain()
            raw_head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as err:
            if err.partial.strip():
                raise HttpConnectionError(f"connection closed in the middle of the response head ({len(err.partial)} bytes)") from None
            raise _NothingReceived("connection closed without an answer") from None
        except asyncio.LimitOverrunError:
            raise HttpProtocolError(f"response head over {MAX_HEAD_BYTES // 1024} KiB") from None
        except OSError as err:
            raise _NothingReceived(f"connection lost before an answer: {_reason(err)}") from None
        try:
            return await self._read_rest(raw_head)
        except asyncio.IncompleteReadError as err:
            raise HttpConnectionError(f"connection closed in the middle of the response ({len(err.partial)} bytes "
                                      f"of {err.expected} read)") from None
        except asyncio.LimitOverrunError:
            raise HttpProtocolError(f"response line over {MAX_HEAD_BYTES // 1024} KiB") from None
        except OSError as err:
            raise HttpConnectionError(f"connection lost in the middle of the response: {_reason(err)}") from None

    async def _read_rest(self, raw_head: bytes) -> HttpResponse:
        assert self.reader is not None
        minor, status, headers = parse_head(raw_head)
        while 100 <= status < 200:  # interim answers (100 Continue, 103 Early Hints): the real one follows
            if status == 101:
                raise HttpProtocolError("server switched protocols (HTTP 101)")
            minor, status, headers = parse_head(await self.reader.readuntil(b"\r\n\r\n"))
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise HttpProtocolError(f"compressed response (Content-Encoding {encoding[:30]!r}) though none was accepted")
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = "close" not in tokens if minor == 1 else "keep-alive" in tokens
        if status in _NO_BODY:
            body = b""
        elif "transfer-encoding" in headers:
            coding = headers["transfer-encoding"].strip().lower()
            if coding != "chunked":
                raise HttpProtocolError(f"unsupported Transfer-Encoding {coding[:30]!r}")
            body = await self._read_chunked()
        elif "content-length" in headers:
            length = parse_content_length(headers["content-length"])
            self._check_size(length)
            body = await self.reader.readexactly(length)
        else:  # the body runs to the end of the connection
            body = await self._read_to_close()
            keep_alive = False
        if not keep_alive:
            self.close()
        return HttpResponse(status, headers, body)

    def _check_size(self, size: int) -> None:
        if size > self.max_response_bytes:
            raise HttpProtocolError(f"response body over the {self.max_response_bytes:,}-byte cap "
                                    "(--max-response-bytes)")

    async def _read_to_close(self) -> bytes:
        assert self.reader is not None
        parts, total = [], 0
        while chunk := await self.reader.read(2**16):
            total += len(chunk)
            self._check_size(total)
            parts.append(chunk)
        return b"".join(parts)

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts, total = [], 0
        while True:
            size_line = await self.reader.readuntil(b"\r\n")
            size_text = size_line[:-2].split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise HttpProtocolError(f"bad chunk size {size_text[:20]!r}")
            size = int(size_text, 16)
            total += size
            self._check_size(total)
            if size == 0:
                while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, ignored
                    total += len(line)
                    self._check_size(total)
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            if await self.reader.readexactly(2) != b"\r\n":
                raise HttpProtocolError("chunk data longer than its size")

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except RuntimeError:  # its event loop is already closed: the socket went with it
                pass
        self.reader = self.writer = None


def parse_head(raw: bytes) -> tuple[int, int, dict[str, str]]:
    """(HTTP minor version, status, headers with lower-case names) from a status line and header block."""
    lines = raw.decode("latin-1").lstrip("\r\n").split("\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise HttpProtocolError(f"bad status line {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            continue  # not a header; ignored rather than guessed
        name, value = name.lower(), value.strip()
        if name in headers:
            if name == "content-length" and headers[name] != value:
                raise HttpProtocolError("conflicting Content-Length headers")
            if name != "content-length":
                headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value
    return int(match.group(1)), int(match.group(2)), headers


def parse_content_length(value: str) -> int:
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not (text := values.pop()).isdigit() or not text.isascii() or len(text) > 15:
        raise HttpProtocolError(f"bad Content-Length {value[:30]!r}")
    return int(text)


def _reason(err: BaseException) -> str:
    return " ".join(str(err).split())[:120] or type(err).__name__
