"""The HTTP client's framing rules one by one: the request it writes, keep-alive by the server's word, interim
answers, codings, cut and oversized answers, with the exact one-line reason each failure gives."""

from __future__ import annotations

import asyncio

import pytest

from polysafe.models.http import (Connection, HttpConnectionError, HttpProtocolError, parse_content_length,
                                  parse_head)

CLOSE = object()  # the server closes the connection instead of answering


class Script:
    """A loopback server answering each request with the next raw answer; `(raw, True)` closes after writing."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0

    async def handler(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
                self.requests.append((head, await reader.readexactly(length)))
                answer = self.answers.pop(0)
                if answer is CLOSE:
                    break
                raw, close = answer if isinstance(answer, tuple) else (answer, False)
                writer.write(raw)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


def run(script: Script, calls: int = 1, cap: int = 4096, timeout: float = 5, headers=None):
    """Make `calls` requests on one Connection; each result is the response or the error it ended in."""
    async def go():
        server = await asyncio.start_server(script.handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = Connection(f"http://127.0.0.1:{port}/v1/", None, headers or {}, max_response_bytes=cap)
        out = []
        for _ in range(calls):
            try:
                out.append(await conn.post_json("/x", b'{"q": 1}', timeout=timeout))
            except Exception as err:  # noqa: BLE001 - the tests inspect it
                out.append(err)
            await asyncio.sleep(0.01)
        conn.close()
        server.close()
        return out, port

    return asyncio.run(go())


def ok(body: bytes = b"ok", head: bytes = b"HTTP/1.1 200 OK") -> bytes:
    return head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def test_the_request_as_written():
    script = Script(ok())
    [response], port = run(script, headers={"Authorization": "Bearer k"})
    head, body = script.requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/x HTTP/1.1" and body == b'{"q": 1}' and response.body == b"ok"
    assert {f"Host: 127.0.0.1:{port}", "Authorization: Bearer k", "Content-Type: application/json",
            "Accept-Encoding: identity", "Content-Length: 8", "Connection: keep-alive"} <= set(lines)


def test_origins_and_host_headers():
    plain = Connection("http://example.org/v1/", None, {})
    assert (plain.host, plain.port, plain.prefix, plain.https, plain.tls) == ("example.org", 80, "/v1", False, None)
    assert plain.fixed_headers == "Host: example.org\r\n"
    v6 = Connection("http://[::1]:8080", None, {"A": "b"})
    assert v6.fixed_headers == "Host: [::1]:8080\r\nA: b\r\n" and v6.prefix == ""
    import ssl

    context = ssl.create_default_context()
    secure = Connection("https://api.example.com/v1", context, {}, max_response_bytes=7)
    assert (secure.port, secure.https, secure.tls, secure.max_response_bytes) == (443, True, context, 7)
    assert Connection("http://h:1/", context, {}).tls is None  # TLS only for https


@pytest.mark.parametrize("answer, connections", [
    (ok(), 1),
    (ok(head=b"HTTP/1.1 200 OK\r\nConnection: close"), 2),
    (ok(head=b"HTTP/1.1 200 OK\r\nConnection: Upgrade, Close"), 2),
    (ok(head=b"HTTP/1.1 200 OK\r\nConnection: close,upgrade"), 2),
    (ok(head=b"HTTP/1.1 200 OK\r\nContent-Encoding: identity"), 1),
    (ok(head=b"HTTP/1.1 200 OK\r\nContent-Encoding: "), 1),
    (ok(head=b"HTTP/1.0 200 OK"), 2),
    (ok(head=b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive"), 1),
    (ok(head=b"HTTP/1.0 200 OK\r\nConnection: foo, keep-alive"), 1),
    (b"HTTP/1.1 204 No Content\r\n\r\n", 1),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 1),  # no body, whatever the length says
])
def test_keep_alive_follows_the_servers_word(answer, connections):
    script = Script(answer, answer)
    results, _ = run(script, calls=2)
    assert all(r.status in (200, 204, 304) for r in results) and script.connections == connections
    if b" 204 " in answer or b" 304 " in answer:
        assert [r.body for r in results] == [b"", b""]


def test_a_body_read_to_the_close_and_the_connection_renewed():
    big = bytes(range(256)) * 800  # 200 KiB: several reads
    script = Script((b"HTTP/1.1 200 OK\r\n\r\n" + big, True), ok())
    results, _ = run(script, calls=2, cap=300_000)
    assert results[0].body == big and results[1].body == b"ok" and script.connections == 2
    capped, _ = run(Script((b"HTTP/1.1 200 OK\r\n\r\n" + big, True)), cap=150_000)  # over the cap across reads
    assert isinstance(capped[0], HttpProtocolError)


@pytest.mark.parametrize("interim", [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 102 Processing\r\n\r\n",
                                     b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"])
def test_interim_answers_are_skipped(interim):
    [response], _ = run(Script(interim + ok(b"final", b"HTTP/1.1 200 OK\r\nX-Test: 1")))
    assert response.status == 200 and response.body == b"final" and response.headers["x-test"] == "1"


@pytest.mark.parametrize("raw, message", [
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", "server switched protocols (HTTP 101)"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok",
     "compressed response (Content-Encoding 'gzip') though none was accepted"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", "unsupported Transfer-Encoding 'gzip'"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: " + b"b" * 40 + b"\r\n\r\n",
     f"compressed response (Content-Encoding {'b' * 30!r}) though none was accepted"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + b"t" * 40 + b"\r\n\r\n", f"unsupported Transfer-Encoding {'t' * 30!r}"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size b'zz'"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"z" * 30 + b"\r\n", f"bad chunk size {b'z' * 20!r}"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloEXTRA\r\n0\r\n\r\n", "chunk data longer than its size"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", "response body over the 4,096-byte cap (--max-response-bytes)"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "response head over 64 KiB"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5" + b"0" * 70_000 + b"\r\n", "response line over 64 KiB"),
    (b"NOT HTTP\r\n\r\n", "bad status line 'NOT HTTP'"),
])
def test_each_protocol_error_says_why(raw, message):
    [err], _ = run(Script((raw, True)))
    assert isinstance(err, HttpProtocolError) and str(err) == message


def test_cut_answers_say_where_they_were_cut():
    [head], _ = run(Script((b"HTTP/1.1 200 OK\r\nContent-Le", True)))
    assert isinstance(head, HttpConnectionError) and str(head) == "connection closed in the middle of the response head (27 bytes)"
    [body], _ = run(Script((b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd", True)))
    assert isinstance(body, HttpConnectionError) and str(body) == "connection closed in the middle of the response (4 bytes of 10 read)"
    [nothing], _ = run(Script(CLOSE))
    assert isinstance(nothing, HttpConnectionError) and str(nothing) == "connection closed without an answer"


def test_a_kept_alive_connection_closed_while_idle_is_retried_once_on_a_fresh_one():
    script = Script(ok(b"first"), CLOSE, ok(b"second"))
    results, _ = run(script, calls=2)
    assert [r.body for r in results] == [b"first", b"second"] and script.connections == 2
    assert [head.split(b"\r\n")[0] for head, _ in script.requests] == [b"POST /v1/x HTTP/1.1"] * 3
    again = Script(ok(b"first"), CLOSE, CLOSE)
    results, _ = run(again, calls=2)
    assert isinstance(results[1], HttpConnectionError) and str(results[1]) == "connection closed without an answer"


def test_the_retry_keeps_the_timeout():
    script = Script(ok(b"first"), CLOSE)
    original = script.handler

    async def then_hang(reader, writer):
        if script.connections >= 1 and not script.answers:
            script.connections += 1
            await asyncio.sleep(10)
            return
        await original(reader, writer)

    script.handler = then_hang
    import time

    started = time.perf_counter()
    results, _ = run(script, calls=2, timeout=0.3)
    assert results[0].body == b"first" and isinstance(results[1], TimeoutError) and time.perf_counter() - started < 3


def test_reasons_are_one_bounded_line():
    from polysafe.models.http import _reason

    assert _reason(OSError("reset  by\npeer")) == "reset by peer" and _reason(OSError()) == "OSError"
    assert _reason(OSError("x" * 200)) == "x" * 120


def test_odd_origins():
    assert Connection("http:///v1", None, {}).host == "localhost"
    assert Connection("http://h:1/apiX/", None, {}).prefix == "/apiX"


def test_a_refused_connection_and_a_hung_server():
    async def refused():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        try:
            await Connection(f"http://127.0.0.1:{port}", None, {}).post_json("/x", b"{}", timeout=5)
        except HttpConnectionError as err:
            return port, str(err)

    port, message = asyncio.run(refused())
    assert message.startswith(f"cannot connect to 127.0.0.1:{port}: ")
    hung = Script()
    hung.answers = []

    async def never(reader, writer):
        await asyncio.sleep(10)

    hung.handler = never
    import time

    started = time.perf_counter()
    [err], _ = run(hung, timeout=0.3)
    assert isinstance(err, TimeoutError) and time.perf_counter() - started < 3


# -- the head and Content-Length parsers -------------------------------------------------------------------------
def test_parse_head_reads_the_status_line_and_headers():
    minor, status, headers = parse_head(b"\r\n\r\nHTTP/1.0 203 Fine\r\nLocation: http://x:80/a\r\nnot a header\r\n"
                                        b"Bad : 1\r\n: nameless\r\nA: 1\r\nA: 2\r\nX-Ok: yes\r\n\r\n")
    assert (minor, status) == (0, 203)
    assert headers == {"location": "http://x:80/a", "a": "1, 2", "x-ok": "yes"}


@pytest.mark.parametrize("raw", [b" HTTP/1.1 200 OK\r\n\r\n", b"XHTTP/1.1 200 OK\r\n\r\n", b"HTTP/1.2 200 OK\r\n\r\n",
                                 b"HTTP/1.1 600 Odd\r\n\r\n"])
def test_parse_head_refuses_a_bad_status_line(raw):
    with pytest.raises(HttpProtocolError, match="bad status line"):
        parse_head(raw)


def test_bad_status_line_message_is_bounded():
    line = "Q" * 70
    with pytest.raises(HttpProtocolError) as caught:
        parse_head(line.encode() + b"\r\n\r\n")
    assert str(caught.value) == f"bad status line {line[:60]!r}"


def test_conflicting_content_length_headers():
    with pytest.raises(HttpProtocolError) as caught:
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert str(caught.value) == "conflicting Content-Length headers"


@pytest.mark.parametrize("value, length", [("0", 0), ("7, 7", 7), ("1" * 15, int("1" * 15)), ("1" * 16, None),
                                           ("\u0663", None), ("7, 8", None), ("", None), ("0x10", None)])
def test_parse_content_length(value, length):
    if length is None:
        with pytest.raises(HttpProtocolError, match="bad Content-Length"):
            parse_content_length(value)
    else:
        assert parse_content_length(value) == length


def test_bad_content_length_message_is_bounded():
    value = "9" * 10 + "x" * 30
    with pytest.raises(HttpProtocolError) as caught:
        parse_content_length(value)
    assert str(caught.value) == f"bad Content-Length {value[:30]!r}"


@pytest.mark.parametrize("size_line", [b"5;name=value", b"5;a=1;b=2", b"5 ; ext"])
def test_chunk_extensions_are_ignored(size_line):
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\nhello\r\n0\r\n\r\n"
    [response], _ = run(Script(raw))
    assert response.body == b"hello"


def test_bytes_left_after_an_answer_on_an_open_connection_are_never_the_next_answer():
    """The server sends an answer nobody asked for right after the real one and keeps the connection open: the
    next request goes over a fresh connection, and its answer is its own."""
    script = Script(ok(b"first") + ok(b"evil!"), ok(b"second"))
    results, _ = run(script, calls=2)
    assert [r.body for r in results] == [b"first", b"second"] and script.connections == 2
