"""Opening the result store's SQLite file, and turning every SQLite failure into one line that names it.

`--db` naming a directory or a file that is not a polysafe store is bad input (exit 2); a full disk, a
read-only folder or a locked file is the environment (exit 1). Read-only media can still be listed and
reported: a store opened with `readonly=True` uses SQLite's read-only mode, or its `immutable` mode when the
folder cannot hold the lock files (then a write-ahead log left by a killed run is not read).

Before anything is read or written, the file's schema is checked: polysafe's tables must hold at least the
columns every polysafe store has had (`BASE_COLUMNS`; later versions only add columns), and its `user_version`
must not be above the version this code writes. Anything else is "not a polysafe store, or a newer one" (exit 2),
and the file is left untouched.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..errors import InputError, PolysafeError


class StoreError(PolysafeError):
    """The result store cannot be read or written (disk full, read-only, locked). Exit status 1."""


def store_error(path: str | Path, err: sqlite3.Error) -> PolysafeError:
    name = getattr(err, "sqlite_errorname", "") or ""
    text = str(err)
    if name.startswith("SQLITE_NOTADB") or "file is not a database" in text:
        return InputError("not a polysafe result store (not an SQLite database); --db must name one", file=str(path))
    if name.startswith("SQLITE_FULL") or "disk is full" in text:
        return StoreError(f"{path}: the disk is full ({text}); everything stored before this point is kept")
    if name.startswith("SQLITE_READONLY") or "readonly" in text:
        return StoreError(f"{path}: the result store is read-only ({text}); pass --db on writable storage")
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return StoreError(f"{path}: cannot open the result store ({text}); check that its folder is writable")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return StoreError(f"{path}: the result store is locked by another process ({text})")
    if name.startswith("SQLITE_IOERR") or "I/O error" in text:
        return StoreError(f"{path}: writing the result store failed ({text}: disk full or failing?); "
                          "everything stored before this point is kept")
    return StoreError(f"{path}: result store error ({text})")


class _Connection(sqlite3.Connection):
    """A connection whose SQLite failures are PolysafeErrors naming the file."""

    store_path = ""

    def execute(self, *args):  # type: ignore[override]
        try:
            return super().execute(*args)
        except sqlite3.Error as err:
            raise store_error(self.store_path, err) from None

    def executemany(self, *args):  # type: ignore[override]
        try:
            return super().executemany(*args)
        except sqlite3.Error as err:
            raise store_error(self.store_path, err) from None

    def executescript(self, *args):  # type: ignore[override]
        try:
            return super().executescript(*args)
        except sqlite3.Error as err:
            raise store_error(self.store_path, err) from None


BASE_COLUMNS = {  # the columns of the first store schema: every polysafe store has at least these
    "runs": {"name", "task", "model", "judge", "config", "created", "updated"},
    "items": {"run", "key", "position", "prompt_id", "language", "scenario", "chain", "category", "tags", "query",
              "prompt", "response_key", "verdict_key"},
    "responses": {"key", "model", "request", "text", "prompt_tokens", "completion_tokens", "finish_reason", "error",
                  "attempts", "created"},
    "verdicts": {"key", "judge", "extracted", "label", "score", "rationale", "created"},
    "memo": {"namespace", "key", "value", "created"},
}


def connect(path: str | Path, *, readonly: bool = False, version: int = 0) -> sqlite3.Connection:
    """A connection in autocommit mode; raises InputError or StoreError with one line. `version` is the schema
    version the caller writes: a store above it is refused."""
    if str(path) == ":memory:":
        return _open(":memory:", path)
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory; --db takes the path of a result file", file=str(path))
    if readonly:
        return _open_readonly(path, version)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if err.errno in (errno.ENOTDIR, errno.EEXIST):
            raise InputError(f"cannot make its folder ({err.strerror})", file=str(path)) from None
        raise StoreError(f"{path.parent}: cannot create the results folder ({err.strerror}); "
                         "pass --db on writable storage") from None
    db = _open(str(path), path)
    _check_polysafe(db, path, allow_empty=True, version=version)
    return db


def _open_readonly(path: Path, version: int) -> sqlite3.Connection:
    if not path.is_file():
        raise InputError("no result store here yet (run 'polysafe eval ...' first)", file=str(path))
    if os.access(path.parent, os.W_OK):  # the lock files can be made: a plain connection reads a live log too
        db = _open(str(path), path)
    else:
        uri = f"file:{quote(str(path.absolute()))}"
        try:
            db = _open(f"{uri}?mode=ro", path, uri=True)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except StoreError:  # read-only media without lock files: read the file as it stands
            db = _open(f"{uri}?immutable=1", path, uri=True)
    _check_polysafe(db, path, allow_empty=False, version=version)
    return db


def _open(target: str, path: str | Path, *, uri: bool = False) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(target, timeout=30, isolation_level=None, uri=uri, factory=_Connection)
    except sqlite3.Error as err:
        raise store_error(path, err) from None
    db.store_path = str(path)
    return db


def _check_polysafe(db: sqlite3.Connection, path: Path, *, allow_empty: bool, version: int) -> None:
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
    if allow_empty and not tables:
        return
    problem = None if "runs" in tables else "it has no 'runs' table"
    for table in sorted(tables & BASE_COLUMNS.keys()):
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()}
        missing = sorted(BASE_COLUMNS[table] - columns)
        if missing and problem is None:
            problem = f"its table '{table}' lacks the column '{missing[0]}'"
    found = int(db.execute("PRAGMA user_version").fetchone()[0])
    if problem is None and found > version:
        problem = f"its schema version {found} is newer than this polysafe's {version}; upgrade polysafe"
    if problem is None:
        return
    db.close()
    raise InputError(f"not a polysafe store, or a newer one ({problem})", file=str(path))
