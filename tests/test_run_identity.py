"""Run identity is honest: the default name follows the endpoint and not the spelling of a path, a run name is
never silently reused for another model, task or judge, and `polysafe runs` is scriptable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(*args, cwd=None, stdout=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test"}
    if stdout is None:
        return subprocess.run([sys.executable, "-m", "polysafe.cli", *args], capture_output=True, text=True,
                              timeout=300, env=env, cwd=cwd)
    return subprocess.run([sys.executable, "-m", "polysafe.cli", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=300, env=env, cwd=cwd)


def runs_json(db: Path) -> list[dict]:
    out = cli("runs", "--db", str(db), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def prompts(tmp_path) -> Path:
    path = tmp_path / "x.csv"
    path.write_text("id,text\n1,hello there\n2,how are you\n", encoding="utf-8")
    return path


def answering(text):
    return lambda body: text


def test_the_same_model_name_on_another_server_is_another_run(fake_openai, tmp_path, prompts):
    first, second = fake_openai(answering("I'm sorry, no.")), fake_openai(answering("Sure: step one."))
    db = tmp_path / "r.db"
    for server in (first, second):
        out = cli("eval", "file", "-p", str(prompts), "--model", "openai:llama3", "--base-url", server.url, "--db", str(db))
        assert out.returncode == 0, out.stderr
    assert first.received == 2 and second.received == 2  # the second server's answers were asked, not reused
    listed = runs_json(db)
    assert len(listed) == 2 and len({r["name"] for r in listed}) == 2
    assert all(r["items"] == 2 for r in listed)
    assert {r["model"] for r in listed} == {f"openai:llama3@{first.url}", f"openai:llama3@{second.url}"}


def test_a_path_spelled_three_ways_is_one_run(fake_openai, tmp_path, prompts):
    server = fake_openai(answering("I'm sorry, no."))
    db = tmp_path / "r.db"
    for spelling in ("x.csv", "./x.csv", str(prompts.resolve())):
        out = cli("eval", "file", "-p", spelling, "--model", f"openai:fake@{server.url}", "--db", str(db), cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    assert len(runs_json(db)) == 1 and server.received == 2


def test_a_run_name_is_not_reused_for_another_model_task_or_judge(fake_openai, tmp_path, prompts):
    first, second = fake_openai(answering("I'm sorry, no.")), fake_openai(answering("Sure: step one."))
    db = tmp_path / "r.db"
    base = ["-p", str(prompts), "--db", str(db), "--run-name", "mine"]
    assert cli("eval", "file", *base, "--model", "openai:m", "--base-url", first.url).returncode == 0
    other_server = cli("eval", "file", *base, "--model", "openai:m", "--base-url", second.url)
    line = other_server.stderr.strip()
    assert other_server.returncode == 2 and "\n" not in line and "Traceback" not in line
    assert "run 'mine' already holds model" in line and second.url in line and "--overwrite" in line
    other_judge = cli("eval", "file", *base, "--model", "openai:m", "--base-url", first.url, "--judge", f"llm:openai:j@{first.url}")
    assert other_judge.returncode == 2 and "judge 'refusal'" in other_judge.stderr
    other_task = cli("eval", "codeattack", "--prompts", str(prompts), "--variants", "python_list", "--db", str(db),
                     "--run-name", "mine", "--model", "openai:m", "--base-url", first.url)
    assert other_task.returncode == 2 and "task 'file:x.csv'" in other_task.stderr
    assert second.received == 0  # refused before any call
    (run,) = runs_json(db)
    assert run["model"] == f"openai:m@{first.url}" and run["items"] == 2

    smaller = prompts.parent / "y.csv"
    smaller.write_text("id,text\n9,only one\n", encoding="utf-8")
    replaced = cli("eval", "file", "-p", str(smaller), "--db", str(db), "--run-name", "mine", "--model", "openai:m",
                   "--base-url", second.url, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    (run,) = runs_json(db)
    assert run["model"] == f"openai:m@{second.url}" and run["task"] == "file:y.csv" and run["items"] == 1


def test_runs_prints_to_stdout_untruncated_when_piped(fake_openai, tmp_path, prompts):
    server = fake_openai(answering("I'm sorry, no."))
    db = tmp_path / "r.db"
    long_name = "a-very-long-run-name-" + "x" * 150 + "-end"
    assert cli("eval", "file", "-p", str(prompts), "--model", f"openai:fake@{server.url}", "--db", str(db),
               "--run-name", long_name).returncode == 0
    listing = tmp_path / "runs.txt"
    with listing.open("w") as handle:
        out = cli("runs", "--db", str(db), stdout=handle)
    assert out.returncode == 0 and out.stderr == ""
    text = listing.read_text()
    assert long_name in text and f"openai:fake@{server.url}" in text and "…" not in text
    (run,) = runs_json(db)
    assert run["name"] == long_name and run["items"] == 2 and run["judge"] == "refusal"
    assert "model_identity" in run["config"] and server.url not in json.dumps(run["config"])  # a hash, not the URL
