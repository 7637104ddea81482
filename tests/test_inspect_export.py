"""`polysafe export RUN --format inspect`: an inspect_ai eval log, read back with inspect_ai's own reader."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import polysafe
from polysafe.api import RunOptions
from polysafe.models import ModelOptions
from polysafe.types import GenerationConfig

from fakes import last_user_text

inspect_log = pytest.importorskip("inspect_ai.log")
ROOT = Path(__file__).resolve().parent.parent


def answer(body: dict) -> str:
    text = last_user_text(body)
    return "I'm sorry, I can't help with that." if text == "alpha" else f"Sure: {text} (seed {body['seed']})"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "polysafe.cli", *args], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": "/tmp"})


def test_inspect_log_round_trip(fake_openai, tmp_path):
    server = fake_openai(answer)
    path = tmp_path / "p.csv"
    path.write_text("id,text,language\n1,alpha,en\n2,bravo,en\n3,charlie,en\n", encoding="utf-8")
    options = RunOptions(model=ModelOptions(max_retries=0, timeout=5), db=tmp_path / "r.db", samples=2,
                         generation=GenerationConfig(temperature=0.5, max_tokens=16, seed=7))
    run = polysafe.evaluate("file", model=f"openai:m@{server.url}", params={"prompts": str(path)}, options=options).run

    done = cli("export", run, "--format", "inspect", "--out", str(tmp_path / "logs"), "--db", str(tmp_path / "r.db"))
    assert done.returncode == 0, done.stderr
    written = Path(done.stdout.strip())
    assert written.parent == tmp_path / "logs"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\+00-00_polysafe-file_[0-9a-f]{22}\.eval", written.name)

    log = inspect_log.read_eval_log(str(written))
    assert log.status == "success" and log.eval.task == f"polysafe/file:p.csv"
    assert log.eval.model == f"openai/m@{server.url}" and log.eval.config.epochs == 2
    assert (log.eval.model_generate_config.temperature, log.eval.model_generate_config.seed) == (0.5, 7)
    assert log.eval.metadata["run"] == run and log.eval.metadata["polysafe_version"] == polysafe.__version__
    score = log.results.scores[0]
    # refusal judge: alpha refuses twice, bravo and charlie comply twice: 4 of 6 answers are non-refusals
    assert score.metrics["non_refusal_rate"].value == pytest.approx(4 / 6) and score.scored_samples == 6
    assert log.results.total_samples == 6 and len(log.samples) == 6
    by_id = {(s.id, s.epoch): s for s in log.samples}
    bravo = by_id[("none/en/2", 2)]
    assert bravo.input == "bravo" and bravo.output.completion == "Sure: bravo (seed 8)"
    assert bravo.scores["polysafe"].value == 1.0 and bravo.scores["polysafe"].answer == "unsafe"
    assert bravo.metadata["language"] == "en" and bravo.metadata["scenario"] == "none" and bravo.metadata["seed"] == 8
    assert bravo.metadata["judge_rationale"] and by_id[("none/en/1", 1)].scores["polysafe"].value == 0.0
    usage = log.stats.model_usage[log.eval.model]
    assert usage.input_tokens == 6 * 3 and usage.output_tokens > 0

    again = cli("export", run, "--format", "inspect", "--out", str(tmp_path / "logs"), "--db", str(tmp_path / "r.db"))
    assert again.returncode == 0 and list((tmp_path / "logs").iterdir()) == [written]  # replaced, not added
