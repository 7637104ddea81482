"""The result store's contract, in process: runs, items, responses, verdicts, the memo and the rows reports read.

Each test states what a caller relies on (a rerun finds what was stored, a good answer is never lost, a report row
says what happened to its item), so a changed query or a swapped field shows up here, not in a user's store."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import pytest

from polysafe.engine import store as store_module
from polysafe.engine.store import ItemRecord, RunRecord, Store
from polysafe.errors import PolysafeError
from polysafe.secrets import MASK, remember
from polysafe.types import Completion, Verdict


def item(key: str, position: int = 0, *, language: str = "en", response_key: str | None = None, prompt: str = "p",
         tags: tuple[str, ...] = (), sample: int = 0, category: str | None = None) -> ItemRecord:
    return ItemRecord(key=key, position=position, prompt_id=f"id-{key}", language=language, scenario="plain",
                      chain="none", category=category, tags=tags, query=f"query {key}", prompt=prompt,
                      response_key=response_key or f"resp-{key}", sample=sample)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.db") as opened:
        yield opened


@pytest.fixture
def clock(monkeypatch):
    """The store's clock, set by the test: `clock.now = 5.0`."""
    class Clock:
        now = 1000.0

    monkeypatch.setattr(store_module.time, "time", lambda: Clock.now)
    return Clock


# -- opening --------------------------------------------------------------------------------------------------
def test_a_writable_store_uses_a_write_ahead_log_synced_normally(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_a_read_only_store_reads_what_was_written(tmp_path):
    path = tmp_path / "s.db"
    with Store(path) as store:
        store.start_run(RunRecord("r", "t", "m", "j", {"a": 1}), [item("k")])
    with Store(path, readonly=True) as store:
        assert store.get_run("r").config == {"a": 1} and [row.prompt_id for row in store.results("r")] == ["id-k"]


def test_a_store_knows_its_file_and_read_only_opens_only_an_existing_store(tmp_path):
    with Store(str(tmp_path / "s.db")) as store:
        assert store.path == tmp_path / "s.db"
    with pytest.raises(PolysafeError, match="no result store here yet"):
        Store(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def test_a_store_is_closed_on_leaving_its_block(tmp_path):
    with Store(tmp_path / "s.db") as store:
        pass
    with pytest.raises(PolysafeError, match="closed database"):
        store.db.execute("SELECT 1")


# -- runs -----------------------------------------------------------------------------------------------------
def test_saving_a_run_again_updates_it_but_keeps_its_creation_time(store, clock):
    store.save_run(RunRecord("r", "t1", "m1", "j1", {"b": 2, "a": [1]}))
    clock.now = 2000.0
    store.save_run(RunRecord("r", "t2", "m2", "j2", {"c": 3}))
    run = store.get_run("r")
    assert (run.task, run.model, run.judge, run.config) == ("t2", "m2", "j2", {"c": 3})
    assert (run.created, run.updated) == (1000.0, 2000.0)
    assert store.db.execute("SELECT config FROM runs").fetchone()[0] == '{"c": 3}'
    assert store.get_run("other") is None


def test_run_configs_are_stored_with_sorted_keys(store):
    store.save_run(RunRecord("r", "t", "m", "j", {"b": 1, "a": 2}))
    assert store.db.execute("SELECT config FROM runs").fetchone()[0] == '{"a": 2, "b": 1}'


def test_update_run_config_merges_and_touches_only_an_existing_run(store, clock):
    store.save_run(RunRecord("r", "t", "m", "j", {"keep": 1, "capped": None}))
    clock.now = 3000.0
    store.update_run_config("r", {"capped": "--max-calls 1 reached", "a": 2})
    store.update_run_config("missing", {"x": 1})
    run = store.get_run("r")
    assert run.config == {"keep": 1, "capped": "--max-calls 1 reached", "a": 2} and run.updated == 3000.0
    assert store.get_run("missing") is None
    assert store.db.execute("SELECT config FROM runs").fetchone()[0] == \
        '{"a": 2, "capped": "--max-calls 1 reached", "keep": 1}'


def test_list_runs_newest_first_with_their_item_counts(store, clock):
    store.start_run(RunRecord("old", "t", "m", "j", {}), [item("a"), item("b", 1)])
    clock.now = 1500.0
    store.save_run(RunRecord("empty", "t", "m", "j", {}))
    clock.now = 1200.0
    store.start_run(RunRecord("mid", "t", "m", "j", {"x": 1}), [item("c")])
    clock.now = 1300.0
    store.save_run(RunRecord("mid", "t", "m", "j", {"x": 1}))
    listed = [(run.name, count, run.config, run.created, run.updated) for run, count in store.list_runs()]
    assert listed == [("empty", 0, {}, 1500.0, 1500.0), ("mid", 1, {"x": 1}, 1200.0, 1300.0),
                      ("old", 2, {}, 1000.0, 1000.0)]
    run = store.list_runs()[0][0]
    assert (run.task, run.model, run.judge) == ("t", "m", "j")


def test_start_run_adds_items_and_replace_drops_the_old_ones(store):
    store.start_run(RunRecord("r", "t", "m", "j", {}), [item("a"), item("b", 1)])
    store.start_run(RunRecord("r", "t", "m", "j", {}), [item("c", 2)])
    assert [row.prompt_id for row in store.results("r")] == ["id-a", "id-b", "id-c"]  # a resume adds
    store.start_run(RunRecord("r", "t", "m", "j", {}), [item("c")], replace=True)
    assert [row.prompt_id for row in store.results("r")] == ["id-c"]
    store.start_run(RunRecord("s", "t", "m", "j", {}), [item("a")], replace=True)  # another run's items stay
    assert [row.prompt_id for row in store.results("r")] == ["id-c"]


def test_a_failing_start_leaves_no_run_without_its_items(store):
    store.start_run(RunRecord("before", "t", "m", "j", {}), [item("a")])
    broken = ItemRecord("k", 0, "p", "en", "s", "c", None, (), "q", None, "r")  # prompt NOT NULL
    with pytest.raises(PolysafeError):
        store.start_run(RunRecord("r", "t", "m", "j", {}), [item("a"), broken])
    assert store.get_run("r") is None and store.db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 1
    with pytest.raises(PolysafeError):
        store.add_items("before", [item("b", 1), broken])
    assert [row.prompt_id for row in store.results("before")] == ["id-a"]  # rolled back whole
    store.memo_put("n", "k", "still writable")
    assert store.memo_get("n", "k") == "still writable"


# -- items ----------------------------------------------------------------------------------------------------
def test_an_item_added_again_takes_its_new_position_prompt_and_response_key_only(store):
    store.add_items("r", [item("a", 0, language="en", prompt="old", response_key="r1", category="c1")])
    store.add_items("r", [item("a", 7, language="zh", prompt="new", response_key="r2", category="c2")])
    row = store.db.execute("SELECT position, prompt, response_key, language, category FROM items").fetchone()
    assert row == (7, "new", "r2", "en", "c1")


def test_items_keep_every_field(store):
    store.add_items("r", [item("a", 3, language="bn", tags=("weapons", "café"), sample=2, category="cat")])
    store.put_response("resp-a", "m", {}, Completion("ok"))
    (row,) = store.results("r")
    assert (row.prompt_id, row.language, row.scenario, row.chain, row.category, row.tags, row.query, row.prompt,
            row.position, row.sample) == ("id-a", "bn", "plain", "none", "cat", ("weapons", "café"), "query a", "p",
                                          3, 2)
    assert store.db.execute("SELECT tags FROM items").fetchone()[0] == '["weapons", "café"]'  # readable UTF-8


def test_verdict_keys_link_only_the_named_items_of_the_named_run(store):
    store.add_items("r", [item("a"), item("b", 1)])
    store.add_items("s", [item("a")])
    store.put_verdicts([("v1", "j", "x", Verdict("unsafe"))])
    store.set_verdict_keys("r", [("a", "v1")])
    links = store.db.execute("SELECT run, key, verdict_key FROM items ORDER BY run, key").fetchall()
    assert links == [("r", "a", "v1"), ("r", "b", None), ("s", "a", None)]


# -- responses ------------------------------------------------------------------------------------------------
def test_responses_read_back_field_for_field(store):
    store.put_response("k", "m", {"messages": ["é"]}, Completion("text", 3, 4, "length"))
    store.put_response("e", "m", {}, Completion("", 1, 0, "error", "HTTP 500"))
    got = store.get_responses(["k", "e", "missing"])
    assert got == {"k": Completion("text", 3, 4, "length"), "e": Completion("", 1, 0, "error", "HTTP 500")}
    model, request, attempts = store.db.execute("SELECT model, request, attempts FROM responses WHERE key='k'").fetchone()
    assert (model, json.loads(request), attempts) == ("m", {"messages": ["é"]}, 1)
    assert "é" in request  # UTF-8 as it is, not escaped
    assert store.ok_response_keys(["k", "e", "missing"]) == {"k"}


def test_an_errored_response_asked_again_counts_its_attempts_and_takes_the_new_time(store, clock):
    store.put_response("e", "m", {}, Completion.failed("HTTP 500"))
    clock.now = 1001.0
    store.put_response("e", "m", {}, Completion.failed("HTTP 503"))
    clock.now = 1002.0
    store.put_response("e", "m", {}, Completion("at last", 2, 3))
    clock.now = 1003.0
    store.put_response("e", "m", {}, Completion.failed("HTTP 500"))  # never replaces the good answer
    assert store.db.execute("SELECT attempts, created, text, error FROM responses").fetchone() == (3, 1002.0, "at last", None)


def test_no_secret_is_stored_in_a_response_or_its_error(store):
    remember("sk-live-secret-value")
    store.put_responses("m", [("k", {}, Completion("echo sk-live-secret-value")),
                              ("e", {}, Completion.failed("401 for Bearer abc.def and sk-live-secret-value"))])
    got = store.get_responses(["k", "e"])
    assert got["k"].text == f"echo {MASK}" and "sk-live" not in got["e"].error and f"Bearer {MASK}" in got["e"].error


# -- verdicts -------------------------------------------------------------------------------------------------
def test_verdicts_keep_their_scale_only_with_a_score_and_their_parts_as_json(store):
    store.put_verdicts([("s", "j", "x", Verdict("unsafe", score=4, rationale="why", parts={"b": 1, "a": "é"})),
                        ("n", "j", "y", Verdict("safe"))], scale="harm-1-5")
    rows = store.db.execute("SELECT key, judge, extracted, label, score, rationale, scale, parts FROM verdicts "
                            "ORDER BY key").fetchall()
    assert rows == [("n", "j", "y", "safe", None, "", None, None),
                    ("s", "j", "x", "unsafe", 4, "why", "harm-1-5", '{"a": "é", "b": 1}')]


def test_an_error_verdict_is_not_done_and_a_later_verdict_replaces_it(store):
    store.put_verdicts([("v", "j", "x", Verdict.error("no label")), ("w", "j", "x", Verdict("invalid"))])
    assert store.ok_verdict_keys(["v", "w", "missing"]) == {"w"}
    store.put_verdicts([("v", "j", "x", Verdict("safe"))])
    assert store.ok_verdict_keys(["v"]) == {"v"}
    assert store.db.execute("SELECT COUNT(*), MIN(label) FROM verdicts WHERE key='v'").fetchone() == (1, "safe")


# -- memo -----------------------------------------------------------------------------------------------------
def test_memo_values_are_per_namespace_and_replaced(store, clock):
    store.memo_put("a", "k", "1")
    store.memo_put("b", "k", "2")
    store.memo_put("a", "k", "3")
    store.memo_put_many("a", {"x": "4", "y": "5"})
    assert store.memo_get("a", "k") == "3" and store.memo_get("b", "k") == "2" and store.memo_get("a", "z") is None
    assert store.memo_get_many("a", iter(["k", "x", "z"])) == {"k": "3", "x": "4"}
    assert store.db.execute("SELECT DISTINCT created FROM memo").fetchall() == [(1000.0,)]


def test_memo_lookups_cross_the_900_key_chunks_within_their_namespace(store):
    store.memo_put_many("a", {f"k{i}": str(i) for i in range(1850)})
    store.memo_put_many("b", {f"k{i}": "other" for i in range(1850)})
    found = store.memo_get_many("a", (f"k{i}" for i in range(1851)))
    assert len(found) == 1850 and found["k0"] == "0" and found["k899"] == "899" and found["k1849"] == "1849"


def test_memoize_asks_only_for_the_missing_keys_once_each_in_first_seen_order(store):
    store.memo_put("n", "b", "stored")
    asked = []

    def compute(keys):
        asked.append(keys)
        return {k: k.upper() for k in keys if k != "c"}  # "c" cannot be computed now

    assert store.memoize("n", ["a", "b", "c", "a", "d"], compute) == {"a": "A", "b": "stored", "d": "D"}
    assert asked == [["a", "c", "d"]]
    assert store.memo_get_many("n", ["a", "c", "d"]) == {"a": "A", "d": "D"}  # committed; "c" not stored
    assert store.memoize("n", ["a", "b"], compute) == {"a": "A", "b": "stored"} and len(asked) == 1
    assert store.memoize("n", ["c"], lambda keys: {}) == {}


def test_amemoize_is_memoize_for_async_work(store):
    store.memo_put("n", "b", "stored")
    asked = []

    async def compute(keys):
        asked.append(keys)
        return {k: k * 2 for k in keys if k != "c"}

    assert asyncio.run(store.amemoize("n", ["a", "b", "c", "a"], compute)) == {"a": "aa", "b": "stored"}
    assert asked == [["a", "c"]] and store.memo_get("n", "a") == "aa" and store.memo_get("n", "c") is None
    assert asyncio.run(store.amemoize("n", ["a", "b"], compute)) == {"a": "aa", "b": "stored"} and len(asked) == 1


# -- the rows reports read ------------------------------------------------------------------------------------
def test_results_say_what_happened_to_each_item_in_position_order(store):
    store.add_items("r", [item("judged", 2), item("failed", 0), item("unjudged", 1), item("unasked", 3),
                          item("errjudge", 4)])
    store.add_items("other", [item("x", 0)])
    store.put_responses("m", [("resp-judged", {}, Completion("an answer", 5, 6, "length")),
                              ("resp-failed", {}, Completion.failed("HTTP 500")),
                              ("resp-unjudged", {}, Completion("waiting", 1, 2)),
                              ("resp-errjudge", {}, Completion("judge failed", 1, 2))])
    store.put_verdicts([("v", "j", "extracted text", Verdict("unsafe", score=2.5, rationale="because")),
                        ("w", "j", "e", Verdict.error("judge said nothing"))], scale="s")
    store.set_verdict_keys("r", [("judged", "v"), ("errjudge", "w")])
    rows = {row.prompt_id: row for row in store.results("r")}
    assert [row.position for row in store.results("r")] == [0, 1, 2, 3, 4]
    judged = rows["id-judged"]
    assert (judged.response, judged.extracted, judged.label, judged.score, judged.rationale, judged.error,
            judged.completion_tokens, judged.prompt_tokens, judged.finish_reason, judged.scale, judged.parts) == \
        ("an answer", "extracted text", "unsafe", 2.5, "because", None, 6, 5, "length", "s", None)
    failed = rows["id-failed"]
    assert (failed.label, failed.rationale, failed.error, failed.response, failed.finish_reason) == \
        ("error", "HTTP 500", "HTTP 500", "", "error")
    unjudged = rows["id-unjudged"]
    assert (unjudged.label, unjudged.rationale, unjudged.response, unjudged.extracted) == ("pending", "", "waiting", None)
    unasked = rows["id-unasked"]
    assert (unasked.label, unasked.response, unasked.completion_tokens, unasked.prompt_tokens, unasked.finish_reason) \
        == ("pending", None, 0, 0, None)
    assert (rows["id-errjudge"].label, rows["id-errjudge"].rationale) == ("error", "judge said nothing")
    assert store.results("nothing") == []


def test_a_score_without_a_declared_scale_has_no_scale(store):
    store.add_items("r", [item("a")])
    store.put_response("resp-a", "m", {}, Completion("x"))
    store.put_verdicts([("v", "j", "x", Verdict("unsafe", score=3))])
    store.set_verdict_keys("r", [("a", "v")])
    assert [(row.score, row.scale) for row in store.results("r")] == [(3, None)]  # only an old store's means harm 1-5


def test_result_rows_carry_parts_and_samples(store):
    store.add_items("r", [item("a", 0, sample=3)])
    store.put_response("resp-a", "m", {}, Completion("x"))
    store.put_verdicts([("v", "j", "x", Verdict("safe", score=1, parts={"refused": 1}))], scale="sr")
    store.set_verdict_keys("r", [("a", "v")])
    (row,) = store.results("r")
    assert (row.parts, row.sample, row.scale, row.score) == ({"refused": 1}, 3, "sr", 1)


def test_a_read_only_store_from_before_scales_and_samples_reads_as_one_sample_harm_scores(tmp_path):
    path = tmp_path / "old.db"
    with Store(path) as store:
        store.add_items("r", [item("a"), item("b", 1)])
        store.put_responses("m", [("resp-a", {}, Completion("x")), ("resp-b", {}, Completion("y"))])
        store.put_verdicts([("v", "j", "x", Verdict("unsafe", score=5)), ("w", "j", "y", Verdict("safe"))], scale="z")
        store.set_verdict_keys("r", [("a", "v"), ("b", "w")])
        store.db.execute("UPDATE items SET sample=4")
    with sqlite3.connect(path) as db:  # the layout of a version-0 store
        db.execute("ALTER TABLE verdicts DROP COLUMN scale")
        db.execute("ALTER TABLE verdicts DROP COLUMN parts")
        db.execute("DROP INDEX IF EXISTS items_response")
        db.execute("ALTER TABLE items DROP COLUMN sample")
        db.execute("PRAGMA user_version=0")
    with Store(path, readonly=True) as store:
        rows = store.results("r")
    with sqlite3.connect(path) as db:  # opened read-only: neither migrated nor given the current tables' columns
        assert db.execute("PRAGMA user_version").fetchone()[0] == 0
        assert "sample" not in {row[1] for row in db.execute("PRAGMA table_info(items)")}
    assert [(r.scale, r.parts, r.sample, r.score) for r in rows] == [("harm-1-5", None, 0, 5), (None, None, 0, None)]
