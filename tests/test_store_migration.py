"""A store written by the previous schema (no score scales, no verdict parts, no user_version) opens, is migrated,
resumes with 0 calls and reports the same figures.

The old store is built here from the previous release's schema, written out as SQL below (the store as
polysafe wrote it before judges declared their scales), and its rows: a run judged by the 1-5 harm judge.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3

from fakes import FakeOpenAI

from polysafe.attacks import parse_chain
from polysafe.engine.runner import EvalTask, Scenario, run_eval
from polysafe.engine.store import Store
from polysafe.engine.store_migrate import SCHEMA_VERSION
from polysafe.judges import load_judge
from polysafe.models import ModelOptions, load_model
from polysafe.report.base import load_report_input, render
from polysafe.types import Prompt

OLD_SCHEMA = """
CREATE TABLE runs (
    name TEXT PRIMARY KEY, task TEXT NOT NULL, model TEXT NOT NULL, judge TEXT NOT NULL,
    config TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE items (
    run TEXT NOT NULL, key TEXT NOT NULL, position INTEGER NOT NULL, prompt_id TEXT NOT NULL,
    language TEXT NOT NULL, scenario TEXT NOT NULL, chain TEXT NOT NULL, category TEXT, tags TEXT NOT NULL,
    query TEXT NOT NULL, prompt TEXT NOT NULL, response_key TEXT NOT NULL, verdict_key TEXT,
    PRIMARY KEY (run, key)
);
CREATE INDEX items_response ON items (response_key);
CREATE TABLE responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL, text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, finish_reason TEXT NOT NULL,
    error TEXT, attempts INTEGER NOT NULL DEFAULT 1, created REAL NOT NULL
);
CREATE TABLE verdicts (
    key TEXT PRIMARY KEY, judge TEXT NOT NULL, extracted TEXT NOT NULL, label TEXT NOT NULL,
    score INTEGER, rationale TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE memo (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""
OLD_CONFIG_KEYS = ("generation", "scenarios", "model_identity", "judge_identity", "capped")  # what the old runner kept
FAST = ModelOptions(max_retries=0, backoff_base=0.01)
PROMPTS = [Prompt(str(i), f"request {i}", "en") for i in range(6)]


def target(body) -> str:
    return f"answer with {'QQSTEPSQQ' if int(body['messages'][-1]['content'].split()[-1]) % 3 else 'nothing'}"


def judge(body) -> str:
    response = body["messages"][-1]["content"]
    return "#thereason: judged\n#thescore: " + ("5" if "QQSTEPSQQ" in response else "1")


def run(db, target_url: str, judge_url: str):
    async def go():
        model = load_model(f"openai:fake@{target_url}", FAST)
        scorer = load_judge(f"harm:openai:judge@{judge_url}", FAST)
        task = EvalTask("scored", PROMPTS, [Scenario("plain", parse_chain("none"))])
        with Store(db) as store:
            summary = await run_eval(task, model, scorer, store, run_name="old")
        await model.aclose()
        await scorer.aclose()
        return summary

    return asyncio.run(go())


def write_old_store(source, old) -> None:
    """The same run as the previous release stored it: its schema, its columns, its run config."""
    new = sqlite3.connect(source)
    db = sqlite3.connect(old)
    db.executescript(OLD_SCHEMA)
    for name, task, model, judge_spec, config, created, updated in new.execute("SELECT * FROM runs"):
        kept = {k: v for k, v in json.loads(config).items() if k in OLD_CONFIG_KEYS}
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?)", (name, task, model, judge_spec, json.dumps(kept), created, updated))
    db.executemany("INSERT INTO items VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", new.execute(
        "SELECT run, key, position, prompt_id, language, scenario, chain, category, tags, query, prompt, response_key, "
        "verdict_key FROM items"))  # the previous release's columns (no `sample`)
    db.executemany("INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,?,?)", new.execute("SELECT * FROM responses"))
    db.executemany("INSERT INTO verdicts VALUES (?,?,?,?,?,?,?)",
                   new.execute("SELECT key, judge, extracted, label, CAST(score AS INTEGER), rationale, created FROM verdicts"))
    db.commit()
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    db.close()
    new.close()


def figures(db, tmp_path, *, readonly: bool) -> tuple[list[str], dict]:
    """The md table's rows and the JSON figures of the run."""
    with Store(db, readonly=readonly) as store:
        data = load_report_input(store, "old", tmp_path / "out")
        md, js = render("md", data), json.loads(render("json", data))
    table = [line for line in md.splitlines() if line.startswith("| plain |")]
    values = [{(f["metric"]["kind"], f["metric"]["threshold"]): (f["rate"] or f["mean"]) for f in row["figures"]}
              for row in js["rows"]]
    return table, {"rows": values, "counts": [row["counts"] for row in js["rows"]]}


def test_an_old_store_opens_resumes_with_no_call_and_reports_the_same_figures(tmp_path):
    with FakeOpenAI(target) as model_server, FakeOpenAI(judge) as judge_server:
        first = run(tmp_path / "new.db", model_server.url, judge_server.url)
        assert first.generated == 6 and first.errors == 0
        write_old_store(tmp_path / "new.db", tmp_path / "old.db")
        asked = model_server.received, judge_server.received

        before_table, before = figures(tmp_path / "old.db", tmp_path, readonly=True)  # not migrated: read as it is
        asr = before["rows"][0][("score_at_least", 5)]
        assert (asr["count"], asr["total"]) == (4, 6)  # four answers with steps scored 5, as the old report's ASR
        assert before["rows"][0][("mean_score", None)]["value"] == (4 * 5 + 2 * 1) / 6

        again = run(tmp_path / "old.db", model_server.url, judge_server.url)  # opens, migrates, resumes
        assert (model_server.received, judge_server.received) == asked  # not one model or judge call
        assert again.generated == 0 and again.judged == 0 and again.errors == 0

    db = sqlite3.connect(tmp_path / "old.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {scale for (scale,) in db.execute("SELECT scale FROM verdicts")} == {"harm-1-5"}
    db.close()
    after_table, after = figures(tmp_path / "old.db", tmp_path, readonly=False)
    assert after == before and after_table == before_table
