"""The engine against a fake OpenAI-compatible server: failures, retries, resume, and no repeated calls."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fakes import Reply, last_user_text

from polysafe.attacks import parse_chain
from polysafe.engine import EvalTask, Scenario, Store, run_eval
from polysafe.judges import load_judge
from polysafe.models import ModelOptions, load_model
from polysafe.types import GenerationConfig, Prompt

FAST = ModelOptions(max_retries=2, backoff_base=0.01, backoff_max=0.05, timeout=0.5, concurrency=4)


def task_of(texts: list[str]) -> EvalTask:
    prompts = [Prompt(id=str(i), text=t) for i, t in enumerate(texts)]
    return EvalTask(name="test", prompts=prompts, scenarios=[Scenario("none", parse_chain("none"))])


def run(task, spec, store, options=FAST, name="r"):
    async def go():
        model = load_model(spec, options)
        try:
            return await run_eval(task, model, load_judge("refusal"), store, gen=GenerationConfig(max_tokens=16), run_name=name)
        finally:
            await model.aclose()

    return asyncio.run(go())


def test_injected_failures_end_stored_or_error_and_are_retried(fake_openai, tmp_path):
    seen: dict[str, int] = {}
    broken = {"p500", "pgarbage", "ptimeout", "pempty"}

    def reply(body):
        text = last_user_text(body)
        seen[text] = seen.get(text, 0) + 1
        if text in broken:
            return {"p500": Reply(status=500), "pgarbage": Reply(raw=b"<html>not json"),
                    "ptimeout": Reply(delay=1.5), "pempty": Reply(raw=b"")}[text]
        if text == "p429" and seen[text] == 1:
            return Reply(status=429, headers={"Retry-After": "0"})
        return "I'm sorry, I can't help with that." if text != "pok" else "Sure, here is how: step one..."

    server = fake_openai(reply)
    texts = ["pok", "p429", "p500", "pgarbage", "ptimeout", "pempty"]
    store = Store(tmp_path / "r.db")
    summary = run(task_of(texts), f"openai:fake@{server.url}", store)

    rows = {r.query: r for r in store.results("r")}
    assert rows["pok"].label == "unsafe" and rows["p429"].label == "safe"
    assert seen["p429"] == 2  # retried once after the 429
    for text in broken:
        assert rows[text].label == "error" and rows[text].error, text
        assert seen[text] == FAST.max_retries + 1  # every try used, then stored as an error
    assert "HTTP 500" in rows["p500"].error and "malformed" in rows["pgarbage"].error
    assert "Timeout" in rows["ptimeout"].error
    assert summary.errors == 4 and summary.generated == 6

    broken.clear()  # the endpoint recovers: the next run asks only for what failed
    again = run(task_of(texts), f"openai:fake@{server.url}", store)
    assert again.generated == 4 and again.cached == 2 and again.errors == 0
    assert all(r.label in ("safe", "unsafe") for r in store.results("r"))


def test_same_command_twice_makes_zero_calls(fake_openai, tmp_path):
    server = fake_openai()
    store = Store(tmp_path / "r.db")
    task = task_of([f"q{i}" for i in range(20)])
    first = run(task, f"openai:fake@{server.url}", store)
    calls = server.received
    second = run(task, f"openai:fake@{server.url}", store)
    assert calls == 20 and server.received == 20
    assert first.generated == 20 and second.generated == 0 and second.cached == 20 and second.judged == 0


def test_a_changed_generation_config_is_a_new_request(fake_openai, tmp_path):
    server = fake_openai()
    store = Store(tmp_path / "r.db")
    task = task_of(["q"])
    run(task, f"openai:fake@{server.url}", store)

    async def hotter():
        model = load_model(f"openai:fake@{server.url}", FAST)
        await run_eval(task, model, load_judge("refusal"), store, gen=GenerationConfig(max_tokens=16, temperature=0.7), run_name="hot")
        await model.aclose()

    asyncio.run(hotter())
    assert server.received == 2


def _count_responses(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute("SELECT COUNT(*) FROM responses WHERE error IS NULL").fetchone()[0]
    except sqlite3.Error:
        return 0


def _cli(*args: str, env: dict | None = None) -> list[str]:
    return [sys.executable, "-m", "polysafe.cli", *args]


def test_kill_minus_9_then_resume_asks_nothing_twice(fake_openai, tmp_path):
    texts = [f"question number {i}" for i in range(40)]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))
    state = {"hang_after": 15, "answered": 0}

    def reply(body):
        if state["hang_after"] is not None and state["answered"] >= state["hang_after"]:
            return Reply(hang=True)  # requests in flight when the process dies are never answered
        state["answered"] += 1
        text = last_user_text(body)
        return "I cannot help with that." if int(text.split()[-1]) % 2 else "Sure: here you go."

    server = fake_openai(reply)
    db = tmp_path / "store.db"
    args = ["eval", "file", "--prompts", str(prompts), "--model", f"openai:fake@{server.url}", "--db", str(db),
            "--run-name", "killme", "--concurrency", "4", "--max-tokens", "8"]
    proc = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while _count_responses(db) < 15 and time.time() < deadline:
        time.sleep(0.05)
    assert _count_responses(db) == 15
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    state["hang_after"] = None
    done = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(server.answered) == sorted(texts)
    assert set(server.answered.values()) == {1}  # every prompt answered exactly once across both processes

    reference = tmp_path / "ref.db"
    ref_args = [a if a != str(db) else str(reference) for a in args]
    subprocess.run(_cli(*ref_args), capture_output=True, text=True, timeout=120, check=True)
    with Store(db) as a, Store(reference) as b:
        got = [(r.prompt_id, r.response, r.label) for r in a.results("killme")]
        want = [(r.prompt_id, r.response, r.label) for r in b.results("killme")]
    assert got == want and len(got) == 40


def test_api_key_reaches_the_server_but_no_file(fake_openai, tmp_path):
    secret = "sk-polysafe-test-7f3a9c1e55"
    server = fake_openai()
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n1,hello\n2,how do I pick a lock\n")
    env = {**os.environ, "MY_KEY": secret}
    db = tmp_path / "s.db"
    out = subprocess.run(_cli("eval", "file", "-p", str(prompts), "-m", f"openai:fake@{server.url}", "--db", str(db),
                              "--api-key-env", "MY_KEY", "--run-name", "k"), capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert server.headers_seen[0]["Authorization"] == f"Bearer {secret}"
    for report_format in ("md", "json"):
        shown = subprocess.run(_cli("report", "k", "--db", str(db), "-f", report_format), capture_output=True, text=True, env=env)
        assert shown.returncode == 0 and secret not in shown.stdout
    for file in tmp_path.rglob("*"):
        if file.is_file():
            assert secret.encode() not in file.read_bytes(), file
    assert secret not in out.stdout + out.stderr


def test_endpoint_down_gives_one_line_error_and_keeps_the_store(fake_openai, tmp_path):
    server = fake_openai(lambda body: Reply(status=500) if "second" in last_user_text(body) else "I'm sorry.")
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n1,first\n")
    db = tmp_path / "s.db"
    common = ["--db", str(db), "-m", f"openai:fake@{server.url}", "--max-retries", "1", "--run-name", "x"]
    assert subprocess.run(_cli("eval", "file", "-p", str(prompts), *common), capture_output=True).returncode == 0
    prompts.write_text("id,text\n1,first\n2,second\n")
    out = subprocess.run(_cli("eval", "file", "-p", str(prompts), *common), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    error_lines = [l for l in out.stderr.splitlines() if l.startswith("error:")]
    assert len(error_lines) == 1 and "HTTP 500" in error_lines[0]
    with Store(db) as store:
        labels = {r.query: r.label for r in store.results("x")}
    assert labels == {"first": "safe", "second": "error"}


def test_eval_file_translates_with_the_chosen_translator(fake_openai, tmp_path):
    def reply(body):
        text = " ".join(m["content"] for m in body["messages"])
        return "Habari, naomba msaada" if "Swahili" in text else "Samahani, siwezi."

    server = fake_openai(reply)
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n1,Hello I need help\n")
    db = tmp_path / "s.db"
    out = subprocess.run(_cli("eval", "file", "-p", str(prompts), "-m", f"openai:fake@{server.url}", "--db", str(db),
                              "--attack", "translate:sw", "--translator", f"llm:openai:fake@{server.url}", "--run-name", "t"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    with Store(db) as store:
        (row,) = store.results("t")
    assert row.prompt == "Habari, naomba msaada" and row.language == "sw" and row.label == "safe"


def test_a_store_failure_while_answers_arrive_stops_the_run(fake_openai, tmp_path, monkeypatch):
    """Answers are committed in one transaction per event-loop turn: a failing commit must not pass silently."""
    import sqlite3

    import pytest

    server = fake_openai()
    store = Store(tmp_path / "r.db")

    def disk_full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "put_responses", disk_full)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        run(task_of([f"q{i}" for i in range(30)]), f"openai:fake@{server.url}", store)
