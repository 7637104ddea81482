"""The rough edges a new user hit on day one, one test each (through the real command line where it matters)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from report_fixtures import Item, browser, counted, store_run  # noqa: F401 (browser is a fixture)

from polysafe.engine.store import Store

ROOT = Path(__file__).resolve().parent.parent
REFUSAL = "I'm sorry, I can't help with that."


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    base = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "polysafe.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**base, **(env or {})})


def prompt_file(tmp_path: Path, n: int = 3) -> str:
    path = tmp_path / "p.csv"
    path.write_text("id,text\n" + "".join(f"{i},question number {i}\n" for i in range(n)), encoding="utf-8")
    return str(path)


def test_plugins_go_to_stdout_with_every_cell_whole():
    from polysafe.cli import _registries

    done = cli("plugins")
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    for _, registry in _registries():
        for name in registry.names():
            assert registry.info(name).summary in done.stdout  # no cell cut at 80 columns, none wrapped


def test_dry_run_counts_without_a_key(tmp_path):
    done = cli("eval", "file", "-p", prompt_file(tmp_path), "-m", "openai:gpt-4o-mini@https://api.example.com/v1",
               "--dry-run", "--db", str(tmp_path / "r.db"), env={"OPENAI_API_KEY": ""})
    assert done.returncode == 0, done.stderr
    assert "model calls: 3 to make" in done.stdout and "cost (upper bound" in done.stdout
    assert not (tmp_path / "r.db").exists()


def test_config_file_dry_run(fake_openai, tmp_path):
    server = fake_openai(lambda body: REFUSAL)
    config = tmp_path / "run.yaml"
    config.write_text(f"models: [openai:gpt-4o-mini@{server.url}]\njudge: refusal\n"
                      f"benchmarks:\n  - name: file\n    params: {{prompts: {prompt_file(tmp_path)}}}\n", encoding="utf-8")
    done = cli("eval", "--config", str(config), "--db", str(tmp_path / "r.db"), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "dry run:" in done.stdout and "model calls: 3 to make, 0 already stored" in done.stdout
    assert server.received == 0 and not (tmp_path / "r.db").exists()


@pytest.fixture
def multijail_store(tmp_path) -> Path:
    db = tmp_path / "r.db"
    with Store(db) as store:
        store_run(store, "mj", counted("en", 1, 4) + counted("bn", 3, 4),
                  config={"generation": {"temperature": 0, "max_tokens": 16, "seed": 0}})
    return db


def test_score_table_of_a_multijail_run_has_no_column_of_n_a(multijail_store):
    # The CodeAttack table became the judge-declared `scores` format: a refusal-judged run shows its own figures.
    done = cli("report", "mj", "-f", "scores", "--db", str(multijail_store))
    assert done.returncode == 0, done.stderr
    assert "n/a" not in done.stdout and "ASR" not in done.stdout
    assert "| `openai:fake` | `unintentional` | bn | 4 | 75.0 [" in done.stdout


def test_report_help_lists_every_format():
    from polysafe.report import RENDERERS

    done = cli("report", "--help")
    listed = re.search(r"--format\s+<\w+>\s+(.*?)\(see", " ".join(done.stdout.split())).group(1)
    assert {f.strip() for f in listed.split("|")} == set(RENDERERS.names())


def test_tiers_json_calls_english_english(multijail_store):
    import json

    done = cli("report", "mj", "-f", "tiers-json", "--db", str(multijail_store))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert "baseline" not in done.stdout
    assert {(t["tier"], t["label"]) for t in data["tiers"]} == {("english", "English"), ("low", "LRL")}


def test_eval_file_writes_the_html_report(fake_openai, tmp_path):
    server = fake_openai(lambda body: REFUSAL)
    done = cli("eval", "file", "-p", prompt_file(tmp_path), "-m", f"openai:m@{server.url}", "--db", str(tmp_path / "r.db"))
    assert done.returncode == 0, done.stderr
    page = re.search(r"HTML report: (\S+)", done.stdout)
    assert page and Path(page.group(1)).is_file() and "<table id=\"responses\"" in Path(page.group(1)).read_text()


def test_progress_starts_its_clock_after_loading_and_gives_an_eta():
    import asyncio

    from polysafe.engine.progress import Progress, rate_and_eta
    from polysafe.engine.runner import EvalTask, Scenario, run_eval
    from polysafe.attacks import parse_chain
    from polysafe.judges.base import load_judge
    from polysafe.models.base import ModelBackend
    from polysafe.types import Completion, Prompt

    class SlowLoading(ModelBackend):
        spec = identity = "slow-loading"
        loaded_at = None

        async def load(self):
            if self.loaded_at is None:
                await asyncio.sleep(0.3)
                self.loaded_at = time.monotonic()

        async def generate(self, conversations, config):
            await self.load()
            return [Completion("Sure.", 3, 2) for _ in conversations]

    class Clock(Progress):
        started = {}

        def start(self, phase, total):
            self.started[phase] = time.monotonic()

    model, clock = SlowLoading(), Clock()
    task = EvalTask("t", [Prompt("1", "hi")], [Scenario("none", parse_chain("none"))])
    with Store(":memory:") as store:
        asyncio.run(run_eval(task, model, load_judge("refusal"), store, run_name="r", progress=clock))
    assert clock.started["generate"] >= model.loaded_at  # the rate is counted from the first generated token
    assert rate_and_eta(0, 0, 10, 3.0) == ""  # nothing done yet: no made-up rate
    assert rate_and_eta(100, 1, 4, 2.0) == "50 tokens/s · ETA 0:06"
    assert rate_and_eta(0, 10, 3610, 10.0) == "ETA 1:00:00"


def test_hub_dataset_offline_fails_fast_without_retry_logs(tmp_path):
    started = time.monotonic()
    done = cli("eval", "multijail", "--languages", "en", "--limit", "1", "--dry-run", "--db", str(tmp_path / "r.db"),
               env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")})
    elapsed = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "Retry" not in done.stderr, done.stderr
    assert "not in the local cache" in lines[0] and "--data" in lines[0]
    assert elapsed < 15, elapsed  # was about 25 s of retries with backoff


def test_readme_has_no_internal_issue_numbers_and_explains_the_demo_and_aim():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not re.search(r"\bissue(s|'s)?\b", readme, re.I) and not re.search(r"(?<![\w/&])#\d+\b", readme)
    demo = " ".join(readme[readme.index("`make demo` runs"):readme.index("Setup details")].split())  # the lab's settings
    assert "10 held-out seeds per cell" in demo and "48 new" in demo and "40 LoRA steps" in demo and "LAB_FLAGS" in demo
    aim = readme[readme.index("aim.txt"):]
    assert "AIM" in readme and "jailbreakchat" in readme and "{prompt}" in aim[:2000]


def test_explorer_header_never_covers_the_first_row_and_rows_show_finish_and_tokens(tmp_path, browser):
    from selenium.webdriver.common.by import By

    from polysafe.report import load_report_input, render

    with Store(tmp_path / "r.db") as store:
        store_run(store, "long", counted("en", 30, 80))
        path = Path(render("html", load_report_input(store, "long", tmp_path)))
    browser.get(path.as_uri())
    browser.execute_script("document.getElementById('responses').scrollIntoView()")
    header = browser.execute_script("return document.querySelector('#responses thead th').getBoundingClientRect().bottom")
    first = browser.execute_script("return document.querySelector('#responses tbody tr').getBoundingClientRect().top")
    assert first >= header - 1
    row = browser.find_element(By.CSS_SELECTOR, "#responses tbody tr").text
    assert "stop" in row and "20 tokens" in row
    assert browser.find_elements(By.CSS_SELECTOR, "select[data-filter=finish]")
