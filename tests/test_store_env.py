"""The result store and its environment: a --db that is not a store (exit 2), read-only media and a full disk
(exit 1, one line, nothing already stored lost), reading stores on read-only media, atomic runs, memoize."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from polysafe.attacks import parse_chain
from polysafe.engine import EvalTask, Scenario, run_eval
from polysafe.engine.store import ItemRecord, RunRecord, Store, StoreError
from polysafe.errors import InputError
from polysafe.judges import load_judge
from polysafe.models import ModelOptions, load_model
from polysafe.types import Prompt

ROOT = Path(__file__).resolve().parent.parent
FAST = ModelOptions(max_retries=1, backoff_base=0.01)


def cli(*args, preexec_fn=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test"}
    return subprocess.run([sys.executable, "-m", "polysafe.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env, preexec_fn=preexec_fn)


def error_line(out) -> str:
    assert "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out.stderr
    return errors[0]


@pytest.fixture
def prompts_csv(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,text\n1,hello there\n2,how are you\n", encoding="utf-8")
    return path


@pytest.fixture
def model_spec(fake_openai):
    server = fake_openai(lambda body: "Sure, here is how: first, second.")
    return f"openai:fake@{server.url}"


def test_db_that_is_not_a_store_is_bad_input_and_left_untouched(tmp_path, prompts_csv, model_spec):
    other = tmp_path / "theirs.sqlite"
    with contextlib.closing(sqlite3.connect(other)) as db:
        db.execute("CREATE TABLE notes (x)")
        db.commit()
    folder = tmp_path / "folder"
    folder.mkdir()
    for db, needle in ((prompts_csv, "not an SQLite database"), (folder, "is a directory"), (other, "not a polysafe store")):
        before = db.read_bytes() if db.is_file() else None
        out = cli("eval", "file", "-p", str(prompts_csv), "--model", model_spec, "--db", str(db))
        line = error_line(out)
        assert out.returncode == 2 and str(db) in line and needle in line
        runs = cli("runs", "--db", str(db))
        assert runs.returncode == 2 and str(db) in error_line(runs)
        assert (db.read_bytes() if db.is_file() else None) == before  # no schema written into someone else's file


@contextlib.contextmanager
def read_only_media(tmp_path: Path, files: list[Path]):
    """A folder holding copies of `files` that nobody may write: a read-only tmpfs as root, chmod otherwise."""
    media = tmp_path / "media"
    media.mkdir()
    if os.geteuid() != 0:
        for file in files:
            shutil.copy(file, media / file.name)
            (media / file.name).chmod(0o444)
        media.chmod(0o555)
        try:
            yield media
        finally:
            media.chmod(0o755)
        return
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(media)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("root without the right to mount: no way to make read-only media here")
    try:
        for file in files:
            shutil.copy(file, media / file.name)
        subprocess.run(["mount", "-o", "remount,ro", str(media)], check=True, capture_output=True)
        yield media
    finally:
        subprocess.run(["umount", str(media)], capture_output=True)


def test_read_only_media_can_be_listed_and_reported_but_not_written(tmp_path, prompts_csv, model_spec):
    made = tmp_path / "made" / "polysafe.db"
    assert cli("eval", "file", "-p", str(prompts_csv), "--model", model_spec, "--db", str(made), "--run-name", "kept").returncode == 0
    with read_only_media(tmp_path, [made]) as media:
        db = media / "polysafe.db"
        assert not os.access(media, os.W_OK)
        listed = cli("runs", "--db", str(db))
        assert listed.returncode == 0 and "kept" in listed.stdout, listed.stderr
        report = cli("report", "kept", "--db", str(db))
        assert report.returncode == 0 and "| none | en | 2 |" in report.stdout, report.stderr
        html = cli("report", "kept", "--db", str(db), "--format", "html")  # it would write beside the store
        assert html.returncode == 1 and "--out" in error_line(html)
        html = cli("report", "kept", "--db", str(db), "--format", "html", "--out", str(tmp_path / "out"))
        assert html.returncode == 0 and (tmp_path / "out").is_dir()
        write = cli("eval", "file", "-p", str(prompts_csv), "--model", model_spec, "--db", str(db))
        assert write.returncode == 1 and str(db) in error_line(write)
        fresh = cli("eval", "file", "-p", str(prompts_csv), "--model", model_spec, "--db", str(media / "sub" / "new.db"))
        assert fresh.returncode == 1 and "cannot create the results folder" in error_line(fresh)
        assert sorted(p.name for p in media.iterdir()) == ["polysafe.db"]


def test_a_full_disk_stops_with_one_line_and_keeps_what_was_stored(tmp_path, prompts_csv, model_spec):
    """The disk fills up for real: the CLI runs under a file-size limit (RLIMIT_FSIZE, no privileges needed)."""
    db = tmp_path / "r" / "polysafe.db"
    assert cli("eval", "file", "-p", str(prompts_csv), "--model", model_spec, "--db", str(db), "--run-name", "first").returncode == 0
    big = tmp_path / "big.csv"
    big.write_text("id,text\n" + "".join(f"{i},Tell me about topic {i}. " + "lorem ipsum " * 150 + "\n" for i in range(300)))
    limit = db.stat().st_size + 16384

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes fail with EFBIG

    out = cli("eval", "file", "-p", str(big), "--model", model_spec, "--db", str(db), "--run-name", "second",
              preexec_fn=small_disk)
    line = error_line(out)
    assert out.returncode == 1 and str(db) in line and "disk" in line and "everything stored before" in line
    with Store(db) as store:
        assert [r.name for r, _ in store.list_runs()] in (["first"], ["second", "first"])
        assert [r.label for r in store.results("first")] == ["unsafe", "unsafe"]
    again = cli("eval", "file", "-p", str(big), "--model", model_spec, "--db", str(db), "--run-name", "second")
    assert again.returncode == 0, again.stderr  # room again: the run completes


def test_sqlite_full_during_a_run_is_a_store_error(tmp_path, model_spec):
    """SQLite's own 'database or disk is full' (a page cap on the connection) surfaces as StoreError."""
    task = EvalTask("t", [Prompt(str(i), f"question {i} " + "pad " * 300) for i in range(50)],
                    [Scenario("none", parse_chain("none"))])

    async def go(store):
        model = load_model(model_spec, FAST)
        try:
            await run_eval(task, model, load_judge("refusal"), store, run_name="full")
        finally:
            await model.aclose()

    with Store(tmp_path / "s.db") as store:
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count={pages + 3}")
        with pytest.raises(StoreError, match=r"s.db: the disk is full \(database or disk is full\)"):
            asyncio.run(go(store))
        assert StoreError.exit_code == 1


def test_a_run_and_its_items_are_stored_together_or_not_at_all(tmp_path):
    item = ItemRecord("k", 0, "1", "en", "none", "none", None, (), "q", "bad \ud800", "rk")
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(UnicodeEncodeError):
            store.start_run(RunRecord("r", "t", "m", "j", {}), [item])
        assert store.get_run("r") is None and store.list_runs() == []
        store.start_run(RunRecord("r", "t", "m", "j", {}), [ItemRecord(**{**item.__dict__, "prompt": "fine"})])
        assert [count for _, count in store.list_runs()] == [1]


def test_memoize_computes_only_what_is_missing_and_keeps_it(tmp_path):
    asked: list[list[str]] = []

    def compute(keys):
        asked.append(keys)
        return {k: k.upper() for k in keys if k != "skip"}  # one it cannot compute

    with Store(tmp_path / "s.db") as store:
        assert store.memoize("ns", ["a", "b", "a", "skip"], compute) == {"a": "A", "b": "B"}
        assert store.memoize("ns", ["b", "c", "skip"], compute) == {"b": "B", "c": "C"}
        assert store.memoize("other", ["a"], compute) == {"a": "A"}

        async def acompute(keys):
            return {k: "async-" + k for k in keys}

        assert asyncio.run(store.amemoize("ns", ["a", "d"], acompute)) == {"a": "A", "d": "async-d"}
    assert asked == [["a", "b", "skip"], ["c", "skip"], ["a"]]
    with Store(tmp_path / "s.db") as store:
        assert store.memo_get_many("ns", ["a", "b", "c", "d", "skip"]) == {"a": "A", "b": "B", "c": "C", "d": "async-d"}


def test_read_only_store_refuses_what_is_not_one(tmp_path):
    with pytest.raises(InputError, match="no result store here yet"):
        Store(tmp_path / "missing.db", readonly=True)
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(InputError, match="not a polysafe store"):
        Store(empty, readonly=True)
