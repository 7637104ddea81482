"""The result store: one SQLite file (WAL), safe to kill at any moment.

Responses and verdicts are keyed by content hashes and shared between runs: a response is identified by
(model identity, generation config, messages), a verdict by (judge identity, judge input). Each is committed
as soon as it exists, so a killed run loses at most the calls in flight. A response stored with an error is
not reused: the next run asks again.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence

from ..errors import PolysafeError
from ..secrets import redact, redact_known
from ..types import Completion, Verdict
from .store_file import StoreError, connect  # noqa: F401  (StoreError is part of this module's interface)
from .store_migrate import SCHEMA_VERSION, item_columns, migrate, verdict_columns

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    name TEXT PRIMARY KEY, task TEXT NOT NULL, model TEXT NOT NULL, judge TEXT NOT NULL,
    config TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    run TEXT NOT NULL, key TEXT NOT NULL, position INTEGER NOT NULL, prompt_id TEXT NOT NULL,
    language TEXT NOT NULL, scenario TEXT NOT NULL, chain TEXT NOT NULL, category TEXT, tags TEXT NOT NULL,
    query TEXT NOT NULL, prompt TEXT NOT NULL, response_key TEXT NOT NULL, verdict_key TEXT,
    sample INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run, key)
);
CREATE INDEX IF NOT EXISTS items_response ON items (response_key);
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, request TEXT NOT NULL, text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, finish_reason TEXT NOT NULL,
    error TEXT, attempts INTEGER NOT NULL DEFAULT 1, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY, judge TEXT NOT NULL, extracted TEXT NOT NULL, label TEXT NOT NULL,
    score NUMERIC, rationale TEXT NOT NULL, created REAL NOT NULL, scale TEXT, parts TEXT
);
CREATE TABLE IF NOT EXISTS memo (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (namespace, key)
);
"""


@dataclass(frozen=True)
class RunRecord:
    name: str
    task: str
    model: str
    judge: str
    config: dict
    created: float = 0.0
    updated: float = 0.0


@dataclass(frozen=True)
class ItemRecord:
    key: str
    position: int
    prompt_id: str
    language: str
    scenario: str
    chain: str
    category: str | None
    tags: tuple[str, ...]
    query: str
    prompt: str
    response_key: str
    sample: int = 0  # which of a prompt's K sampled answers (0 for a one-sample run)


@dataclass(frozen=True)
class ResultRow:
    """One item of a run with its response and verdict, as reports read it."""

    prompt_id: str
    language: str
    scenario: str
    chain: str
    category: str | None
    tags: tuple[str, ...]
    query: str
    prompt: str
    response: str | None
    extracted: str | None
    label: str  # safe | unsafe | invalid | error | pending
    score: float | None  # on the scale named by `scale` (harm 1-5 scores read back as ints)
    rationale: str
    error: str | None
    completion_tokens: int
    # Added for setup blocks and exports; defaulted so rows built by hand (tests, other tools) keep working.
    prompt_tokens: int = 0
    finish_reason: str | None = None  # stop | length | error; None while pending
    position: int = 0  # the item's place in its run
    scale: str | None = None  # the name of the judge's declared score scale, when it scores
    parts: dict | None = None  # the verdict's structured sub-scores, when the judge gives them
    sample: int = 0  # which of the prompt's K sampled answers (seed = the run's seed + sample)


class Store:
    """The result store. `readonly=True` opens an existing store for reading, also on read-only media.

    Every SQLite failure surfaces as one line naming the file: InputError (exit 2) for a `--db` that is a
    directory or not a polysafe store, StoreError (exit 1) for a full disk, read-only media or a lock.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.db = connect(path, readonly=readonly, version=SCHEMA_VERSION)  # a newer store is refused
        if not readonly:
            self._set_up()
        self._verdict_columns = verdict_columns(self.db)
        self._has_samples = "sample" in item_columns(self.db)  # a read-only store may predate it: all sample 0

    def _set_up(self, patience: float = 30.0) -> None:
        """WAL mode, the schema and its migrations. Two processes opening a new store at once can find it busy
        without SQLite's busy handler waiting (switching to WAL needs the file to itself): every step is
        idempotent, so it is tried again for up to `patience` seconds before the lock is reported."""
        deadline = time.monotonic() + patience
        pause = 0.01
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
                self.db.executescript(SCHEMA)
                migrate(self.db)
                return
            except StoreError as err:
                if "locked by another process" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(0.5, pause * 2)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, sql: str, rows: Iterable[Sequence]) -> None:
        with self._transaction():
            self.db.executemany(sql, rows)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(PolysafeError):  # a full disk may fail the rollback too; SQLite undoes it on open
                self.db.execute("ROLLBACK")
            raise

    # -- runs -------------------------------------------------------------------------------------------
    _SAVE_RUN = ("INSERT INTO runs VALUES (?,?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET task=excluded.task, "
                 "model=excluded.model, judge=excluded.judge, config=excluded.config, updated=excluded.updated")

    def save_run(self, run: RunRecord) -> None:
        self.db.execute(self._SAVE_RUN, self._run_row(run))

    @staticmethod
    def _run_row(run: RunRecord) -> tuple:
        now = time.time()
        return (run.name, run.task, run.model, run.judge, json.dumps(run.config, sort_keys=True), now, now)

    def start_run(self, run: RunRecord, items: Sequence[ItemRecord], *, replace: bool = False) -> None:
        """Save a run with its items in one transaction: a failure leaves no run without its items.

        `replace` first drops the items the run held (`--overwrite`); responses and verdicts stay, shared."""
        with self._transaction():
            if replace:
                self.db.execute("DELETE FROM items WHERE run=?", (run.name,))
            self.db.execute(self._SAVE_RUN, self._run_row(run))
            self.db.executemany(self._ADD_ITEMS, self._item_rows(run.name, items))

    def update_run_config(self, name: str, changes: dict) -> None:
        """Merge `changes` into a stored run's config (e.g. that this invocation was capped)."""
        run = self.get_run(name)
        if run is not None:
            config = {**run.config, **changes}
            self.db.execute("UPDATE runs SET config=?, updated=? WHERE name=?",
                            (json.dumps(config, sort_keys=True), time.time(), name))

    def get_run(self, name: str) -> RunRecord | None:
        row = self.db.execute("SELECT name, task, model, judge, config, created, updated FROM runs WHERE name=?", (name,)).fetchone()
        return RunRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6]) if row else None

    def list_runs(self) -> list[tuple[RunRecord, int]]:
        rows = self.db.execute(
            "SELECT r.name, r.task, r.model, r.judge, r.config, r.created, r.updated, COUNT(i.key) "
            "FROM runs r LEFT JOIN items i ON i.run = r.name GROUP BY r.name ORDER BY r.updated DESC"
        ).fetchall()
        return [(RunRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]), r[7]) for r in rows]

    # -- items ------------------------------------------------------------------------------------------
    _ADD_ITEMS = ("INSERT INTO items (run, key, position, prompt_id, language, scenario, chain, category, tags, query, "
                  "prompt, response_key, sample) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run, key) DO UPDATE SET "
                  "position=excluded.position, response_key=excluded.response_key, prompt=excluded.prompt")

    def add_items(self, run: str, items: Sequence[ItemRecord]) -> None:
        self._tx(self._ADD_ITEMS, self._item_rows(run, items))

    @staticmethod
    def _item_rows(run: str, items: Sequence[ItemRecord]) -> list[tuple]:
        return [(run, i.key, i.position, i.prompt_id, i.language, i.scenario, i.chain, i.category,
                 json.dumps(list(i.tags), ensure_ascii=False), i.query, i.prompt, i.response_key, i.sample) for i in items]

    def set_verdict_keys(self, run: str, pairs: Sequence[tuple[str, str]]) -> None:
        """pairs: (item key, verdict key)."""
        self._tx("UPDATE items SET verdict_key=? WHERE run=? AND key=?", [(v, run, k) for k, v in pairs])

    # -- responses --------------------------------------------------------------------------------------
    def ok_response_keys(self, keys: Iterable[str]) -> set[str]:
        return {k for (k,) in self._select_in("SELECT key FROM responses WHERE error IS NULL AND key IN ({})", keys)}

    def get_responses(self, keys: Iterable[str]) -> dict[str, Completion]:
        rows = self._select_in("SELECT key, text, prompt_tokens, completion_tokens, finish_reason, error FROM responses WHERE key IN ({})", keys)
        return {r[0]: Completion(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def put_response(self, key: str, model: str, request: dict, completion: Completion) -> None:
        self.put_responses(model, [(key, request, completion)])

    def put_responses(self, model: str, rows: Sequence[tuple[str, dict, Completion]]) -> None:
        """(key, request, completion) rows in one transaction."""
        now = time.time()
        self._tx(
            "INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,1,?) ON CONFLICT(key) DO UPDATE SET text=excluded.text, "
            "prompt_tokens=excluded.prompt_tokens, completion_tokens=excluded.completion_tokens, "
            "finish_reason=excluded.finish_reason, error=excluded.error, attempts=responses.attempts+1, created=excluded.created "
            "WHERE responses.error IS NOT NULL",  # a stored good answer is never overwritten
            [(key, model, json.dumps(request, ensure_ascii=False), redact_known(completion.text), completion.prompt_tokens,
              completion.completion_tokens, completion.finish_reason,
              None if completion.error is None else redact(completion.error), now)  # no key ever stored
             for key, request, completion in rows],
        )

    # -- verdicts ---------------------------------------------------------------------------------------
    def ok_verdict_keys(self, keys: Iterable[str]) -> set[str]:
        return {k for (k,) in self._select_in("SELECT key FROM verdicts WHERE label != 'error' AND key IN ({})", keys)}

    def put_verdicts(self, rows: Sequence[tuple[str, str, str, Verdict]], *, scale: str | None = None) -> None:
        """rows: (verdict key, judge identity, extracted response, verdict); `scale`: the judge's declared scale
        name, kept with every verdict that has a score."""
        now = time.time()
        self._tx(
            "INSERT OR REPLACE INTO verdicts (key, judge, extracted, label, score, rationale, created, scale, parts) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            [(key, judge, extracted, v.label, v.score, v.rationale, now, scale if v.score is not None else None,
              json.dumps(v.parts, sort_keys=True, ensure_ascii=False) if v.parts else None)
             for key, judge, extracted, v in rows],
        )

    # -- memo: small cached values (translations, scores, ...) -------------------------------------------
    def memo_get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        rows = self._select_in("SELECT key, value FROM memo WHERE namespace=? AND key IN ({})", keys, prefix=(namespace,))
        return dict(rows)

    def memo_get(self, namespace: str, key: str) -> str | None:
        return self.memo_get_many(namespace, [key]).get(key)

    def memo_put(self, namespace: str, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO memo VALUES (?,?,?,?)", (namespace, key, value, time.time()))

    def memo_put_many(self, namespace: str, values: Mapping[str, str]) -> None:
        now = time.time()
        self._tx("INSERT OR REPLACE INTO memo VALUES (?,?,?,?)", [(namespace, k, v, now) for k, v in values.items()])

    def memoize(self, namespace: str, keys: Iterable[str],
                compute_missing: Callable[[list[str]], Mapping[str, str]]) -> dict[str, str]:
        """Values for `keys`: stored ones from the memo table, the others from `compute_missing(missing keys)`.

        `compute_missing` gets the keys not stored yet (no duplicates, first-seen order) and returns the values
        it could compute; a key it leaves out is neither stored nor returned, so the next call asks again.
        The new values are committed in one transaction before they are returned."""
        found, missing = self._memo_lookup(namespace, keys)
        if missing:
            found.update(self._memo_store(namespace, missing, compute_missing(missing)))
        return found

    async def amemoize(self, namespace: str, keys: Iterable[str],
                       compute_missing: Callable[[list[str]], Awaitable[Mapping[str, str]]]) -> dict[str, str]:
        """`memoize` for an async `compute_missing` (model calls)."""
        found, missing = self._memo_lookup(namespace, keys)
        if missing:
            found.update(self._memo_store(namespace, missing, await compute_missing(missing)))
        return found

    def _memo_lookup(self, namespace: str, keys: Iterable[str]) -> tuple[dict[str, str], list[str]]:
        unique = list(dict.fromkeys(keys))
        found = self.memo_get_many(namespace, unique)
        return found, [k for k in unique if k not in found]

    def _memo_store(self, namespace: str, missing: list[str], fresh: Mapping[str, str]) -> dict[str, str]:
        values = {k: fresh[k] for k in missing if k in fresh}
        if values:
            self.memo_put_many(namespace, values)
        return values

    # -- results ----------------------------------------------------------------------------------------
    def results(self, run: str) -> list[ResultRow]:
        rows = self.db.execute(
            "SELECT i.prompt_id, i.language, i.scenario, i.chain, i.category, i.tags, i.query, i.prompt, "
            "r.text, v.extracted, v.label, v.score, v.rationale, r.error, r.completion_tokens, r.prompt_tokens, "
            "r.finish_reason, i.position, {scale}, {parts}, {sample} "
            "FROM items i LEFT JOIN responses r ON r.key = i.response_key LEFT JOIN verdicts v ON v.key = i.verdict_key "
            "WHERE i.run = ? ORDER BY i.position".format(  # a read-only store may predate the columns
                scale="v.scale" if "scale" in self._verdict_columns else "NULL",
                parts="v.parts" if "parts" in self._verdict_columns else "NULL",
                sample="i.sample" if self._has_samples else "0"),
            (run,),
        ).fetchall()
        out = []
        for r in rows:
            error = r[13]
            label = "error" if error else (r[10] or "pending")  # unanswered, or answered but not judged yet
            out.append(ResultRow(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), r[6], r[7], r[8], r[9],
                                 label, r[11], r[12] or (error or ""), error, r[14] or 0, r[15] or 0, r[16], r[17],
                                 _legacy_scale(r[18], r[11], self._verdict_columns),
                                 json.loads(r[19]) if r[19] else None, r[20]))
        return out

    def _select_in(self, sql: str, keys: Iterable[str], prefix: tuple = ()) -> list[tuple]:
        keys = list(keys)
        out: list[tuple] = []
        for start in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            chunk = keys[start : start + 900]
            out.extend(self.db.execute(sql.format(",".join("?" * len(chunk))), (*prefix, *chunk)).fetchall())
        return out


def _legacy_scale(scale: str | None, score: float | None, columns: set[str]) -> str | None:
    """A read-only store from before scales were kept holds only 1-5 harm scores (see store_migrate)."""
    if scale is None and score is not None and "scale" not in columns:
        from .store_migrate import LEGACY_SCALE

        return LEGACY_SCALE
    return scale
