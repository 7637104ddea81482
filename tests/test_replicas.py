"""Replicas of one model: requests spread over several base URLs, one identity, a failing replica taken out."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

from fakes import Reply

from polysafe.attacks import parse_chain
from polysafe.engine import EvalTask, Scenario, Store, run_eval
from polysafe.judges import load_judge
from polysafe.models import ModelOptions, load_model
from polysafe.types import GenerationConfig, Prompt

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = ModelOptions(max_retries=3, backoff_base=0.001, backoff_max=0.01, timeout=5, concurrency=4)


def run(store: Store, spec: str, texts: list[str], options: ModelOptions = OPTIONS):
    task = EvalTask("replicas", [Prompt(str(i), t) for i, t in enumerate(texts)], [Scenario("none", parse_chain("none"))])

    async def go():
        model = load_model(spec, options)
        try:
            return await run_eval(task, model, load_judge("refusal"), store, gen=GenerationConfig(max_tokens=8), run_name="r")
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_requests_are_spread_over_healthy_replicas(fake_openai, tmp_path):
    first, second = fake_openai(), fake_openai()
    texts = [f"q{i}" for i in range(40)]
    with Store(tmp_path / "r.db") as store:
        summary = run(store, f"openai:m@{first.url},{second.url}", texts)
        assert summary.errors == 0 and summary.generated == 40
    assert first.received + second.received == 40
    assert first.received >= 10 and second.received >= 10


def test_a_failing_replica_is_taken_out_and_the_healthy_one_answers_everything(fake_openai, tmp_path, caplog):
    healthy = fake_openai()
    failing = fake_openai(lambda body: Reply(status=503))
    texts = [f"q{i}" for i in range(30)]
    with caplog.at_level(logging.WARNING, logger="polysafe"), Store(tmp_path / "r.db") as store:
        summary = run(store, f"openai:m@{failing.url},{healthy.url}", texts)
        rows = store.results("r")
    assert summary.errors == 0 and all(r.label == "safe" for r in rows)
    assert sorted(healthy.answered) == sorted(texts)
    warnings = [r.getMessage() for r in caplog.records if "out of rotation" in r.getMessage()]
    assert len(warnings) == 1 and failing.url in warnings[0] and "\n" not in warnings[0]
    assert failing.received <= 3 + OPTIONS.concurrency  # out of rotation after 3 failures in a row


def test_a_refused_replica_is_taken_out_too(fake_openai, tmp_path, caplog):
    healthy = fake_openai()
    closed_port = "http://127.0.0.1:9/v1"  # discard port: nothing listens there
    texts = [f"q{i}" for i in range(12)]
    with caplog.at_level(logging.WARNING, logger="polysafe"), Store(tmp_path / "r.db") as store:
        summary = run(store, "openai:m", texts, ModelOptions(**{**OPTIONS.__dict__, "base_urls": (closed_port, healthy.url)}))
    assert summary.errors == 0 and sorted(healthy.answered) == sorted(texts)
    assert any("out of rotation" in r.getMessage() and closed_port in r.getMessage() for r in caplog.records)


def test_the_last_replica_standing_is_never_taken_out(fake_openai, tmp_path, caplog):
    failing = [fake_openai(lambda body: Reply(status=500)) for _ in range(2)]
    with caplog.at_level(logging.WARNING, logger="polysafe"), Store(tmp_path / "r.db") as store:
        summary = run(store, f"openai:m@{failing[0].url},{failing[1].url}", [f"q{i}" for i in range(6)],
                      ModelOptions(max_retries=1, backoff_base=0.001, backoff_max=0.01, concurrency=2))
    assert summary.errors == 6
    assert len([r for r in caplog.records if "out of rotation" in r.getMessage()]) == 1


def test_identity_is_the_first_url_so_stored_answers_are_reused_by_any_replica_set(fake_openai, tmp_path):
    first, second = fake_openai(), fake_openai()
    assert load_model(f"openai:m@{first.url},{second.url}").identity == load_model(f"openai:m@{first.url}").identity
    assert load_model(f"openai:m@{second.url},{first.url}").identity != load_model(f"openai:m@{first.url}").identity
    texts = [f"q{i}" for i in range(10)]
    with Store(tmp_path / "r.db") as store:
        run(store, f"openai:m@{first.url}", texts)
        again = run(store, f"openai:m@{first.url},{second.url}", texts)
    assert again.generated == 0 and again.cached == 10 and second.received == 0


def test_base_url_is_repeatable_on_the_command_line(fake_openai, tmp_path):
    first, second = fake_openai(), fake_openai()
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n" + "".join(f"{i},question {i}\n" for i in range(16)))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "polysafe.cli", "eval", "file", "-p", str(prompts), "-m", "openai:m",
                          "--base-url", first.url, "--base-url", second.url, "--db", str(tmp_path / "s.db"),
                          "--run-name", "cli", "--concurrency", "4"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert first.received + second.received == 16 and first.received > 0 and second.received > 0
    with Store(tmp_path / "s.db") as store:
        assert store.get_run("cli").model == f"openai:m@{first.url}"
