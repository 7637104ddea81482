"""The lean HTTP client: chunked bodies, servers that close connections, and stale keep-alive connections."""

from __future__ import annotations

import asyncio
import json

from fakes import chat_body

from polysafe.models.http import Connection


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    return head, json.loads(await reader.readexactly(length))


def test_chunked_body_and_path_prefix():
    seen = []

    async def handler(reader, writer):
        head, body = await read_request(reader)
        seen.append(head.split(b"\r\n")[0])
        payload = chat_body("chunked hello")
        chunks = [payload[:10], payload[10:]]
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for chunk in chunks:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def go():
        server, url = await serve(handler)
        conn = Connection(url, None, {"Authorization": "Bearer k"})
        response = await conn.post_json("/chat/completions", b'{"a": 1}', timeout=5)
        conn.close()
        server.close()
        return response

    response = asyncio.run(go())
    assert response.status == 200 and json.loads(response.body)["choices"][0]["message"]["content"] == "chunked hello"
    assert seen == [b"POST /v1/chat/completions HTTP/1.1"]


def test_a_connection_closed_by_the_server_is_reopened_without_losing_the_request():
    served = []

    async def handler(reader, writer):
        _, body = await read_request(reader)
        served.append(body["n"])
        payload = chat_body(str(body["n"]))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
        await writer.drain()
        writer.close()  # keep-alive refused silently: the client's next write hits a dead socket

    async def go():
        server, url = await serve(handler)
        conn = Connection(url, None, {})
        out = []
        for n in range(3):
            response = await conn.post_json("/chat/completions", json.dumps({"n": n}).encode(), timeout=5)
            out.append(json.loads(response.body)["choices"][0]["message"]["content"])
            await asyncio.sleep(0.05)
        conn.close()
        server.close()
        return out

    assert asyncio.run(go()) == ["0", "1", "2"]
    assert served == [0, 1, 2]


def test_bytes_no_request_asked_for_are_never_read_as_the_next_answer():
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        try:
            while True:
                _, body = await read_request(reader)
                payload = chat_body(str(body["n"]))
                junk = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"  # an answer nobody asked for
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s%s" % (len(payload), payload, junk))
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    async def go():
        server, url = await serve(handler)
        conn = Connection(url, None, {})
        out = [json.loads((await conn.post_json("/chat/completions", json.dumps({"n": n}).encode(), timeout=5)).body)
               for n in range(3)]
        conn.close()
        server.close()
        return [o["choices"][0]["message"]["content"] for o in out]

    assert asyncio.run(go()) == ["0", "1", "2"]
    assert len(connections) == 3  # a polluted connection is dropped, not reused


def test_size_cap_and_head_limit_end_as_protocol_errors_and_close_the_connection():
    from polysafe.models.http import HttpProtocolError

    answers = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000,
                    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"])

    async def handler(reader, writer):
        try:
            while True:
                await read_request(reader)
                writer.write(next(answers))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def go():
        server, url = await serve(handler)
        conn = Connection(url, None, {}, max_response_bytes=4096)
        errors = []
        for _ in range(2):
            try:
                await conn.post_json("/x", b"{}", timeout=5)
            except HttpProtocolError as err:
                errors.append((str(err), conn.writer is None))
        last = await conn.post_json("/x", b"{}", timeout=5)
        conn.close()
        server.close()
        return errors, last

    errors, last = asyncio.run(go())
    assert [closed for _, closed in errors] == [True, True]
    assert "4,096-byte cap" in errors[0][0] and "head over 64 KiB" in errors[1][0]
    assert last.status == 200 and last.body == b"{}"
