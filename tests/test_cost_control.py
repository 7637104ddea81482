"""Knowing the cost before paying it: a dry run makes no call, caps stop a run cleanly, a rerun finishes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import polysafe
from polysafe.api import RunOptions
from polysafe.engine.store import Store
from polysafe.errors import InputError
from polysafe.models import ModelOptions
from polysafe.report import load_report_input, render
from polysafe.types import GenerationConfig

ROOT = Path(__file__).resolve().parent.parent
SEQUENTIAL = ModelOptions(max_retries=0, timeout=5, concurrency=1)
GEN = GenerationConfig(max_tokens=16)
REFUSAL = "I'm sorry, I can't help with that."  # the fake server counts 7 completion tokens (one per word)


def prompts(tmp_path: Path) -> dict:
    path = tmp_path / "p.csv"
    path.write_text("id,text\n" + "".join(f"{i},question number {i}\n" for i in range(5)), encoding="utf-8")
    return {"prompts": str(path)}


def test_dry_run_makes_no_call_and_counts_what_is_stored(fake_openai, tmp_path):
    server = fake_openai(lambda body: REFUSAL)
    spec = f"openai:gpt-4o-mini@{server.url}"  # a model in the shipped price table
    options = RunOptions(model=SEQUENTIAL, generation=GEN, db=tmp_path / "r.db")

    before = polysafe.estimate("file", model=spec, params=prompts(tmp_path), options=options)
    assert server.received == 0 and not (tmp_path / "r.db").exists()
    assert (before.plan.items, before.plan.model_calls, before.plan.stored_responses) == (5, 5, 0)
    assert (before.plan.judge_calls, before.plan.stored_verdicts) == (0, 0)  # the refusal judge asks no model
    # 5 prompts of 17 bytes, each at most 17 + 8 (its message) + 8 (the reply) = 33 prompt tokens: 165;
    # 5 calls x 16 max tokens = 80 completion tokens;
    # gpt-4o-mini at $0.15 / $0.60 per million: (165 x 0.15 + 80 x 0.60) / 1e6 = 7.275e-5
    assert (before.prompt_tokens, before.completion_tokens) == (165, 80)
    assert before.cost == pytest.approx(7.275e-5)

    capped = polysafe.evaluate("file", model=spec, params=prompts(tmp_path), options=RunOptions(
        model=SEQUENTIAL, generation=GEN, db=tmp_path / "r.db", max_calls=2))
    assert server.received == 2 and capped.generated == 2 and capped.pending == 3
    assert capped.capped and "--max-calls 2" in capped.capped
    with Store(tmp_path / "r.db") as store:
        data = load_report_input(store, capped.run, tmp_path)
    assert [r.label for r in data.rows].count("safe") == 2 and "CAPPED" in render("md", data)

    middle = polysafe.estimate("file", model=spec, params=prompts(tmp_path), options=options)
    assert server.received == 2
    assert (middle.plan.model_calls, middle.plan.stored_responses, middle.plan.stored_verdicts) == (3, 2, 2)

    finished = polysafe.evaluate("file", model=spec, params=prompts(tmp_path), options=options)
    assert finished.run == capped.run and finished.generated == 3 and finished.capped is None and finished.pending == 0
    assert server.received == 5 and finished.completion_tokens == 5 * 7
    with Store(tmp_path / "r.db") as store:
        assert "CAPPED" not in render("md", load_report_input(store, finished.run, tmp_path))


def test_cost_cap_is_never_passed(fake_openai, tmp_path):
    server = fake_openai(lambda body: REFUSAL)
    # $1 per completion token: each call may cost up to $16 (max_tokens) and really costs $7.
    # admit: 0+16 <= 30; 7+16 <= 30; 14+16 <= 30; 21+16 > 30: three calls, $21 spent.
    options = RunOptions(model=SEQUENTIAL, generation=GEN, db=tmp_path / "r.db", max_cost=30, price_in=0, price_out=1e6)
    summary = polysafe.evaluate("file", model=f"openai:unpriced@{server.url}", params=prompts(tmp_path), options=options)
    assert server.received == 3 and summary.generated == 3 and "--max-cost $30" in summary.capped
    with pytest.raises(InputError, match="no price known"):
        polysafe.evaluate("file", model=f"openai:unpriced@{server.url}", params=prompts(tmp_path),
                          options=RunOptions(model=SEQUENTIAL, db=tmp_path / "r.db", max_cost=1))


def test_cli_dry_run_prints_counts_and_cost_and_calls_nothing(fake_openai, tmp_path):
    server = fake_openai(lambda body: REFUSAL)
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "polysafe.cli", "eval", "file", "-p", prompts(tmp_path)["prompts"],
                           "-m", f"openai:x@{server.url}", "--db", str(tmp_path / "r.db"), "--dry-run",
                           "--price-in", "2", "--price-out", "8", "--max-tokens", "16"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert server.received == 0 and not (tmp_path / "r.db").exists()
    assert "model calls: 5 to make, 0 already stored" in done.stdout
    assert "$0.0010" in done.stdout  # (165 x 2 + 80 x 8) / 1e6 = 0.00097


def billed_like_a_byte_tokenizer(log: list):
    """The fake bills a prompt token per UTF-8 byte plus OpenAI's chat overhead, and 7 completion tokens."""
    import json

    from fakes import Reply

    def reply(body):
        usage = {"prompt_tokens": sum(len(m["content"].encode()) + 3 for m in body["messages"]) + 3, "completion_tokens": 7}
        log.append(usage)
        return Reply(raw=json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {
            "role": "assistant", "content": REFUSAL}, "finish_reason": "stop"}], "usage": usage}).encode())

    return reply


@pytest.mark.parametrize("concurrency", [1, 8])
def test_cost_cap_holds_with_an_input_price_and_concurrent_calls(fake_openai, tmp_path, concurrency):
    # $1 per token in and out. A call is billed 17 + 3 + 3 = 23 prompt tokens and 7 completion tokens: $30; its
    # reservation is 17 + 8 + 8 = 33 prompt tokens and 16 completion tokens: $49. At most 4 calls are reserved at
    # once under $200, and whatever the interleaving the money spent never passes the cap.
    log: list = []
    server = fake_openai(billed_like_a_byte_tokenizer(log))
    path = tmp_path / "p.csv"
    path.write_text("id,text\n" + "".join(f"{i},question number {i % 10}\n" for i in range(20)), encoding="utf-8")
    options = RunOptions(model=ModelOptions(max_retries=0, timeout=5, concurrency=concurrency), generation=GEN,
                         db=tmp_path / "r.db", max_cost=200, price_in=1e6, price_out=1e6)
    summary = polysafe.evaluate("file", model=f"openai:unpriced@{server.url}", params={"prompts": str(path)}, options=options)
    spent = sum(u["prompt_tokens"] + u["completion_tokens"] for u in log)
    assert summary.capped and "--max-cost $200" in summary.capped
    assert 0 < spent <= 200 and len(log) == summary.generated
    # sequentially, calls are admitted while spent + 49 <= 200: after 5 calls ($150) the next could reach $199
    assert concurrency > 1 or summary.generated == 6
