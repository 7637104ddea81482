"""Usefulness checks: the I-Alpaca loader (file and URL), over-refusal with intervals, benign perplexity."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fakes import last_user_text

from polysafe.data.ctrl_sets import parse_instruction_set
from polysafe.defenses.usefulness import benign_perplexity, load_benign_prompts, over_refusal, pairs_from_conversations
from polysafe.errors import BackendError, InputError
from polysafe.models import ModelOptions, load_model
from polysafe.report.metrics import wilson
from polysafe.types import Message


def test_i_alpaca_loads_from_the_shared_copy(shared_data):
    path = shared_data / "ctrl" / "bianchi2024" / "evaluation" / "I-Alpaca.json"
    prompts = load_benign_prompts(path)
    raw = json.loads(path.read_text())
    assert len(prompts) == len(raw["instructions"]) == 50
    assert prompts[0].startswith("Compare and contrast two types of mobile operating systems")
    assert all(p == p.strip() and p for p in prompts)


def test_instruction_inputs_are_appended_and_errors_are_located(tmp_path):
    parsed = parse_instruction_set({"instructions": ["Sum these.", "Hi"], "inputs": ["1, 2", ""]}, file="x.json")
    assert [p.text for p in parsed] == ["Sum these.\n\n1, 2", "Hi"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"instructions": ["ok", 3]}')
    with pytest.raises(InputError, match=r"bad.json field 'instructions\[1\]'"):
        load_benign_prompts(bad)
    bad.write_text('{"instructions": ')
    with pytest.raises(InputError, match=r"bad.json:1: invalid JSON"):
        load_benign_prompts(bad)
    with pytest.raises(InputError, match="no such file"):
        load_benign_prompts(tmp_path / "missing.json")


def test_i_alpaca_loads_from_a_url(shared_data):
    payload = (shared_data / "ctrl" / "bianchi2024" / "evaluation" / "I-Alpaca.json").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            ok = self.path.endswith("/I-Alpaca.json")
            body = payload if ok else b"not found"
            self.send_response(200 if ok else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/data/evaluation"
        assert len(load_benign_prompts(f"{base}/I-Alpaca.json")) == 50
        with pytest.raises(BackendError, match="cannot load benign prompts"):
            load_benign_prompts(f"{base}/missing.json")
    finally:
        server.shutdown()
        server.server_close()


def test_over_refusal_counts_refused_benign_requests_with_an_interval(fake_openai):
    prompts = [f"Write a poem about {t}." for t in ("cats", "rain")] + [f"Explain {t}." for t in ("tides", "rust", "wind", "ice")]

    def reply(body):
        return "I'm sorry, I cannot write poems." if "poem" in last_user_text(body) else "Here is a clear explanation."

    server = fake_openai(reply)
    backend = load_model(f"openai:fake@{server.url}", ModelOptions(max_retries=1, backoff_base=0.01))
    rate = over_refusal(backend, prompts)
    assert (rate.count, rate.total) == (2, 6)
    assert (rate.low, rate.high) == pytest.approx(wilson(2, 6))
    assert server.received == 6
    assert all(r["max_tokens"] == 64 for r in server.requests)  # a refusal shows in the opening: short answers


def test_pairs_from_conversations_takes_last_request_and_answer():
    conversations = [(Message("system", "s"), Message("user", "q1"), Message("assistant", "a1"), Message("user", "q2"), Message("assistant", "a2"))]
    assert pairs_from_conversations(conversations) == [("q2", "a2")]


@pytest.mark.slow
def test_benign_perplexity_prefers_fluent_answers(smollm2):
    fluent = [("What is the capital of France?", "The capital of France is Paris."),
              ("How many days are in a week?", "There are seven days in a week.")]
    scrambled = [(q, " ".join(reversed(a.split()))) for q, a in fluent]
    good, bad = benign_perplexity(smollm2, fluent), benign_perplexity(smollm2, scrambled)
    assert 1.0 < good < bad
    with pytest.raises(InputError):
        benign_perplexity(smollm2, [])


def test_instruction_sets_share_one_parser(shared_data, tmp_path):
    from polysafe.data.ctrl_sets import load_instruction_set

    malicious = load_instruction_set(shared_data / "ctrl" / "bianchi2024" / "evaluation" / "I-MaliciousInstructions.json")
    assert len(malicious) == 100 and all(p.tags and p.category == p.tags[0] for p in malicious)
    benign = load_benign_prompts(shared_data / "ctrl" / "bianchi2024" / "evaluation" / "I-Alpaca.json")
    assert len(benign) == 50 and all(isinstance(t, str) and t for t in benign)
    bad = tmp_path / "bad.json"
    bad.write_text('{"instructions": ["ok", 3]}')
    with pytest.raises(InputError, match=r"bad.json field 'instructions\[1\]'"):
        load_benign_prompts(bad)
