"""The store against foreign and future files, read-only export, and two processes running the same work."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fakes import Reply, last_user_text
from test_store_env import cli, error_line, read_only_media

from polysafe.engine.store import SCHEMA_VERSION, Store
from polysafe.errors import InputError

ROOT = Path(__file__).resolve().parent.parent


def made_store(tmp_path: Path, prompts: int, spec: str, name: str = "kept") -> Path:
    path = tmp_path / "p.csv"
    path.write_text("id,text\n" + "".join(f"{i},question {i}\n" for i in range(prompts)), encoding="utf-8")
    db = tmp_path / "made" / "polysafe.db"
    done = cli("eval", "file", "-p", str(path), "--model", spec, "--db", str(db), "--run-name", name)
    assert done.returncode == 0, done.stderr
    return db


def foreign(path: Path, sql: str) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(sql)
        db.commit()
    return path


@pytest.mark.parametrize("sql, problem", [
    ("CREATE TABLE runs (id INTEGER, title TEXT);", "table 'runs' lacks the column"),
    ("CREATE TABLE runs (name, task, model, judge, config, created, updated); CREATE TABLE verdicts (key, verdict);",
     "table 'verdicts' lacks the column"),
    ("CREATE TABLE runs (name, task, model, judge, config, created, updated); PRAGMA user_version=999;",
     "schema version 999 is newer"),
])
@pytest.mark.parametrize("readonly", [False, True])
def test_a_foreign_or_future_store_is_refused_and_left_untouched(tmp_path, sql, problem, readonly):
    path = foreign(tmp_path / "theirs.db", sql)
    before = path.read_bytes()
    with pytest.raises(InputError) as caught:
        Store(path, readonly=readonly)
    assert "not a polysafe store, or a newer one" in str(caught.value) and problem in str(caught.value)
    assert path.read_bytes() == before


def test_the_cli_says_so_in_one_line_exit_2(tmp_path):
    path = foreign(tmp_path / "future.db", f"PRAGMA user_version={SCHEMA_VERSION + 1};"
                   "CREATE TABLE runs (name, task, model, judge, config, created, updated);")
    for args in (("runs",), ("report", "x"), ("export", "x", "-o", "-")):
        out = cli(*args, "--db", str(path))
        assert out.returncode == 2 and "not a polysafe store, or a newer one" in error_line(out), (args, out.stderr)


def test_a_store_of_this_version_and_an_older_one_still_open(tmp_path):
    with Store(tmp_path / "s.db") as store:
        assert store.list_runs() == []
    with contextlib.closing(sqlite3.connect(tmp_path / "s.db")) as db:
        db.execute("ALTER TABLE verdicts ADD COLUMN extra TEXT")  # later versions only add columns
    with Store(tmp_path / "s.db", readonly=True) as store:
        assert store.list_runs() == []


def test_export_works_on_read_only_media(tmp_path, fake_openai):
    server = fake_openai(lambda body: "Sure, here is how.")
    made = made_store(tmp_path, 3, f"openai:fake@{server.url}")
    with read_only_media(tmp_path, [made]) as media:
        db = media / "polysafe.db"
        out = cli("export", "kept", "--db", str(db), "-o", "-")
        assert out.returncode == 0, out.stderr
        assert len(out.stdout.splitlines()) == 3 and json.loads(out.stdout.splitlines()[0])["response"] == "Sure, here is how."
        csv = cli("export", "kept", "--db", str(db), "-f", "csv", "-o", str(tmp_path / "k.csv"))
        assert csv.returncode == 0 and (tmp_path / "k.csv").read_text().count("\n") >= 4
        beside = cli("export", "kept", "--db", str(db))  # the default place is beside the store, on the media
        assert beside.returncode == 1 and "--out" in error_line(beside)
        assert sorted(p.name for p in media.iterdir()) == ["polysafe.db"]


def test_two_processes_running_the_same_work_pay_once(tmp_path, fake_openai):
    """Two identical runs on one store at the same time: each distinct request reaches the endpoint once."""
    server = fake_openai(lambda body: Reply(text="Sure: " + last_user_text(body), delay=0.05))
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,text\n" + "".join(f"{i},question {i}\n" for i in range(80)), encoding="utf-8")
    db = tmp_path / "shared.db"
    cmd = [sys.executable, "-m", "polysafe.cli", "eval", "file", "-p", str(prompts), "--model",
           f"openai:fake@{server.url}", "--db", str(db), "--judge", "refusal", "--concurrency", "4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-800:] for _, err in outs]
    assert server.received == 80 and set(server.answered.values()) == {1}
    with Store(db, readonly=True) as store:
        [(run, count)] = store.list_runs()
        rows = store.results(run.name)
        assert count == 80 and {r.label for r in rows} <= {"safe", "unsafe", "invalid"}  # none pending or error
        assert store.db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # every claim released


def test_a_dead_owners_claims_are_taken_over(tmp_path):
    import asyncio

    from polysafe.engine import claims as claims_module

    with Store(tmp_path / "s.db") as store:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        owner = f"{claims_module.HOST}|{dead.stdout.strip()}|x"
        claims_module.Claims(store, lambda keys: set())
        store.db.execute("INSERT INTO claims VALUES ('a', ?, ?)", (owner, time.time()))
        store.db.execute("INSERT INTO claims VALUES ('b', 'elsewhere|1|y', ?)", (time.time() - claims_module.TTL - 1,))
        asked: list[str] = []

        async def ask(keys):
            asked.extend(keys)

        assert asyncio.run(claims_module.claimed(store, ["a", "b", "c"], lambda keys: set(), ask)) == 0
        assert sorted(asked) == ["a", "b", "c"]


def test_keys_a_live_process_holds_are_waited_for_not_asked(tmp_path, monkeypatch):
    import asyncio

    from polysafe.engine import claims as claims_module

    monkeypatch.setattr(claims_module, "POLL", 0.02)
    path = tmp_path / "s.db"
    with Store(path) as store:
        claims_module.Claims(store, lambda keys: set())
        store.db.execute("INSERT INTO claims VALUES ('a', 'elsewhere|1|y', ?)", (time.time(),))
        store.db.execute("CREATE TABLE answers (key TEXT)")
        done = lambda keys: {k for (k,) in store.db.execute("SELECT key FROM answers").fetchall()} & set(keys)

        def other_process_answers():
            time.sleep(0.2)
            with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
                db.execute("INSERT INTO answers VALUES ('a')")
                db.execute("DELETE FROM claims WHERE key='a'")

        threading.Thread(target=other_process_answers).start()
        asked: list[str] = []

        async def ask(keys):
            asked.extend(keys)
            store.db.executemany("INSERT INTO answers VALUES (?)", [(k,) for k in keys])

        assert asyncio.run(claims_module.claimed(store, ["a", "b"], done, ask)) == 1
        assert asked == ["b"]


def test_opening_a_new_store_that_another_process_holds_waits_for_it(tmp_path, monkeypatch):
    """Switching a new file to WAL can be refused at once while another process does the same (SQLite's busy
    handler does not wait where waiting could deadlock): the idempotent set-up is tried again, a lock only."""
    from polysafe.engine import store as store_module

    real = store_module.migrate
    refusals = iter([True, True, False])

    def busy_twice(db):
        if next(refusals):
            raise store_module.StoreError(f"{tmp_path}: the result store is locked by another process (database is locked)")
        real(db)

    monkeypatch.setattr(store_module, "migrate", busy_twice)
    with Store(tmp_path / "new.db") as store:
        assert store.list_runs() == []
    monkeypatch.setattr(store_module, "migrate", lambda db: (_ for _ in ()).throw(store_module.StoreError("disk is full")))
    with pytest.raises(store_module.StoreError, match="disk is full"):
        Store(tmp_path / "other.db")
