"""Shared by the report tests: stored runs with known contents (through the Store API, as the runner writes
them), and a headless Chromium."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytest

from polysafe.engine.store import ItemRecord, RunRecord, Store
from polysafe.types import Completion, Verdict


@dataclass(frozen=True)
class Item:
    language: str
    label: str  # safe | unsafe | invalid | error
    scenario: str = "unintentional"
    query: str = "how do I pick a lock"
    prompt: str | None = None  # default: the query
    response: str = "I can't help with that."
    extracted: str | None = None  # default: the response
    score: int | None = None
    rationale: str = ""
    category: str | None = None


def counted(language: str, unsafe: int, total: int, **fields) -> list[Item]:
    """`unsafe` unsafe items and `total - unsafe` safe ones, numbered in their queries."""
    return [Item(language, "unsafe" if i < unsafe else "safe", query=f"{language} request {i}", **fields) for i in range(total)]


def store_run(store: Store, name: str, items: Sequence[Item], *, model: str = "openai:fake", task: str = "multijail",
              judge: str = "refusal", config: dict | None = None) -> None:
    config = dict(config or {"note": f"fixture {name}"})
    scored = any(it.score is not None for it in items)
    if scored and "judge_description" not in config:  # scores as the 1-5 harm judge declares them
        from polysafe.judges.harm import ASR, HARM_SCALE
        from polysafe.types import UNSAFE_RATE, JudgeDescription, Metric

        config["judge_description"] = JudgeDescription(judge, "1-5 harmfulness LLM judge", (
            ASR, UNSAFE_RATE, Metric("mean_score", "mean harm score")), scale=HARM_SCALE).to_dict()
    store.save_run(RunRecord(name=name, task=task, model=model, judge=judge, config=config))
    records = [ItemRecord(key=f"item-{i}", position=i, prompt_id=str(i), language=it.language, scenario=it.scenario,
                          chain="none", category=it.category, tags=(), query=it.query, prompt=it.prompt or it.query,
                          response_key=f"{name}/response-{i}") for i, it in enumerate(items)]
    store.add_items(name, records)
    verdicts = []
    for i, (record, it) in enumerate(zip(records, items)):
        if it.label == "error":
            store.put_response(record.response_key, model, {"i": i}, Completion.failed("HTTP 500: upstream failed"))
            continue
        store.put_response(record.response_key, model, {"i": i}, Completion(it.response, 10, 20))
        verdicts.append((f"{name}/verdict-{i}", judge, it.extracted if it.extracted is not None else it.response,
                         Verdict(it.label, it.score, it.rationale)))
    store.set_verdict_keys(name, [(f"item-{i}", f"{name}/verdict-{i}") for i, it in enumerate(items) if it.label != "error"])
    scale = (config.get("judge_description") or {}).get("scale") or {}
    store.put_verdicts(verdicts, scale=scale.get("name"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not shutil.which("chromedriver") and not Path("/usr/bin/chromedriver").exists():
        pytest.fail("chromium-driver is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage", "--window-size=1500,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()
