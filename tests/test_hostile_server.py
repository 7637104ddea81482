"""No answer can crash a run: a real eval against a loopback server that sends malformed bytes on purpose.

One prompt per fault, plus good prompts (some served in odd but valid ways). The run must finish, every good
item must be judged, every faulty item must be a stored error with a one-line reason naming the fault, and a
second run must ask the server again for the faulty items only.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes import Raw, RawServer, chat_body, http_response, last_user_text

from polysafe.attacks import parse_chain
from polysafe.engine import EvalTask, Scenario, Store, run_eval
from polysafe.judges import load_judge
from polysafe.models import ModelOptions, load_model
from polysafe.types import GenerationConfig, Prompt

CAP = 256 * 1024
OPTIONS = ModelOptions(max_retries=1, backoff_base=0.001, backoff_max=0.01, timeout=1.0, concurrency=4,
                       max_response_bytes=CAP)
REFUSAL = "I'm sorry, I can't help with that."


def body_with(**fields) -> bytes:
    data = json.loads(chat_body(REFUSAL))
    data.update(fields)
    return json.dumps(data).encode()


def message(content) -> bytes:
    return body_with(choices=[{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}])


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


OK = chat_body(REFUSAL)
# fault -> (what the server sends, a fragment the stored one-line error must contain)
FAULTS: dict[str, tuple[Raw, str]] = {
    "content-length-abc": (Raw(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n" + OK), "bad Content-Length"),
    "content-length-negative": (Raw(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n" + OK), "bad Content-Length"),
    "content-length-conflict": (Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n" + OK), "conflicting Content-Length"),
    "bad-chunk-size": (Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + OK + b"\r\n0\r\n\r\n"), "bad chunk size"),
    "negative-chunk-size": (Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n" + OK), "bad chunk size"),
    "header-line-3mb": (Raw(b"HTTP/1.1 200 OK\r\nX-Junk: " + b"a" * 3_000_000 + b"\r\n\r\n"), "head over"),
    "garbage-status-line": (Raw(b"HELLO THERE\r\n\r\n" + OK), "bad status line"),
    "status-not-a-number": (Raw(b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}"), "bad status line"),
    "unsupported-transfer-encoding": (Raw(http_response(OK, headers={"Transfer-Encoding": "gzip"}, length=False)), "Transfer-Encoding"),
    "compressed-body": (Raw(http_response(OK, headers={"Content-Encoding": "gzip"})), "Content-Encoding"),
    "oversized-body": (Raw(http_response(b'{"choices": "' + b"x" * (4 * CAP) + b'"}')), "cap"),
    "oversized-chunked-body": (Raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(*[b"y" * 65536] * 8)), "cap"),
    "oversized-body-until-close": (Raw(b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * (4 * CAP), close=True), "cap"),
    "truncated-body": (Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + OK[:40], close=True), "middle of the response"),
    "closed-mid-head": (Raw(b"HTTP/1.1 200 OK\r\nContent-Le", close=True), "middle of the response head"),
    "empty-reply": (Raw(b"", close=True), "without an answer"),
    "non-utf8-body": (Raw(http_response(b'{"choices": "\xff\xfe\xfa caf\xe9"}')), "malformed response body"),
    "not-json": (Raw(http_response(b"<html>502 bad gateway</html>")), "malformed response body"),
    "deeply-nested-json": (Raw(http_response(b"[" * 100_000)), "malformed response body"),
    "top-level-list": (Raw(http_response(b"[1, 2]")), "malformed response body"),
    "choices-not-a-list": (Raw(http_response(body_with(choices={"0": {"message": {"content": "hi"}}}))), "malformed response body"),
    "content-is-a-dict": (Raw(http_response(message({"text": "hi"}))), "content is a dict"),
    "finish-reason-a-list": (Raw(http_response(body_with(choices=[{"message": {"content": "x"}, "finish_reason": [1]}]))), "finish_reason"),
    "usage-tokens-not-a-number": (Raw(http_response(body_with(usage={"prompt_tokens": "n/a", "completion_tokens": 3}))), "usage"),
    "usage-a-list": (Raw(http_response(body_with(usage=[1]))), "usage"),
    "usage-tokens-too-big": (Raw(http_response(body_with(usage={"prompt_tokens": 10**30}))), "usage"),
    "retry-after-soon": (Raw(http_response(b"busy", 503, {"Retry-After": "soon"})), "HTTP 503"),
    "retry-after-nan": (Raw(http_response(b"busy", 503, {"Retry-After": "nan"})), "HTTP 503"),
    "storm-500": (Raw(http_response(b"oops", 500)), "HTTP 500"),
    "storm-429": (Raw(http_response(b"slow down", 429, {"Retry-After": "0"})), "HTTP 429"),
    "switching-protocols": (Raw(http_response(b"", 101, {"Upgrade": "h2c"})), "HTTP 101"),
    "redirect": (Raw(http_response(b"", 301, {"Location": "http://127.0.0.1:1/v1"})), "redirects are not followed"),
    "silence": (Raw(OK, silence=3.0, close=True), "Timeout"),
}
# served in odd but valid ways: each must be answered and judged
GOOD_ODD: dict[str, Raw] = {
    "good-http10-to-close": Raw(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + OK, close=True),
    "good-http10-length": Raw(http_response(OK, version="HTTP/1.0"), close=True),
    "good-connection-close": Raw(http_response(OK, headers={"Connection": "close"}), close=True),
    "good-chunked": Raw(http_response(chunked(OK[:7], OK[7:]), headers={"Transfer-Encoding": "chunked"}, length=False)),
    "good-100-continue": Raw(b"HTTP/1.1 100 Continue\r\n\r\n" + http_response(OK)),
    "good-trailing-junk": Raw(http_response(OK) + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
    "good-lone-surrogate": Raw(http_response(message("I'm sorry \\ud800 I can't").replace(b"\\\\ud800", b"\\ud800"))),
    "good-no-usage": Raw(http_response(body_with(usage=None))),
}
GOOD_PLAIN = [f"good-plain-{i}" for i in range(12)]


def respond(body: dict) -> Raw:
    text = last_user_text(body)
    if text in FAULTS:
        return FAULTS[text][0]
    if text in GOOD_ODD:
        return GOOD_ODD[text]
    return Raw(http_response(chat_body(REFUSAL)))


def run_once(store: Store, url: str, texts: list[str]):
    task = EvalTask("hostile", [Prompt(str(i), t) for i, t in enumerate(texts)], [Scenario("none", parse_chain("none"))])

    async def go():
        model = load_model(f"openai:hostile@{url}", OPTIONS)
        try:
            return await run_eval(task, model, load_judge("refusal"), store, gen=GenerationConfig(max_tokens=8), run_name="h")
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_hostile_server_cannot_crash_a_run(tmp_path):
    assert len(FAULTS) >= 15
    texts = [t for pair in zip(GOOD_PLAIN, [*FAULTS, *GOOD_ODD]) for t in pair] + [*FAULTS, *GOOD_ODD][len(GOOD_PLAIN):]
    good = set(GOOD_PLAIN) | set(GOOD_ODD)
    with RawServer(respond) as server, Store(tmp_path / "h.db") as store:
        summary = run_once(store, server.url, texts)
        rows = {r.query: r for r in store.results("h")}
        assert summary.items == len(texts) == len(rows)
        for text in good:
            assert rows[text].label == "safe" and rows[text].error is None, (text, rows[text].error)
            assert server.requests[text] == 1, text  # no fault spilled over onto a good item's connection
        assert "\ufffd" in rows["good-lone-surrogate"].response
        for text, (_, reason) in FAULTS.items():
            error = rows[text].error
            assert rows[text].label == "error" and error, text
            assert "\n" not in error and len(error) < 400 and reason in error, (text, error)
        assert summary.errors == len(FAULTS)

        first = server.requests.copy()
        again = run_once(store, server.url, texts)
        asked_again = {t for t in texts if server.requests[t] > first[t]}
        assert asked_again == set(FAULTS)
        assert again.generated == len(FAULTS) and again.cached == len(good) and again.errors == len(FAULTS)


@pytest.mark.parametrize("answer", [
    http_response(OK, version="HTTP/1.0"),  # HTTP/1.0 without keep-alive: the server closes after answering
    http_response(OK, headers={"Connection": "close"}),
])
def test_a_server_that_closes_gets_no_write_on_the_closed_connection(answer):
    texts = [f"q{i}" for i in range(30)]
    with RawServer(lambda body: Raw(answer, half_close=True)) as server:
        run_with = ModelOptions(concurrency=2, max_retries=0, timeout=5)

        async def go():
            model = load_model(f"openai:m@{server.url}", run_with)
            from polysafe.types import Message

            out = await model.generate([(Message("user", t),) for t in texts], GenerationConfig(max_tokens=4))
            await model.aclose()
            return out

        completions = asyncio.run(go())
    assert all(c.ok for c in completions)
    assert sum(server.requests.values()) == len(texts)
    assert server.connections == len(texts) and server.wasted == 0
