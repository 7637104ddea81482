"""The result store's schema versions, and the migration that brings an older store up to date on open.

`PRAGMA user_version` holds the version. Stores written before versions were kept read 0:
- 0 -> 1: verdicts gain `scale` (the name of the judge's declared score scale) and `parts` (JSON of a verdict's
  structured sub-scores, e.g. helpfulness's four rubrics). Scores in a version-0 store came only from the 1-5 harm
  judge, the one scale then stored, so their verdicts get `LEGACY_SCALE`. Responses, verdicts and their keys are
  untouched, so a migrated store resumes with 0 calls.
- 1 -> 2: items gain `sample` (which of a prompt's K sampled answers, `--samples K`); every older item is sample 0,
  whose keys are a one-sample run's, so the store resumes with 0 calls.
A store opened read-only is not migrated; `verdict_columns` tells readers which columns it has.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2
LEGACY_SCALE = "harm-1-5"  # the only score scale a version-0 store holds


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def verdict_columns(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(verdicts)").fetchall()}


def item_columns(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(items)").fetchall()}


def migrate(db: sqlite3.Connection) -> None:
    """Bring a writable store (already holding the current tables) to SCHEMA_VERSION, in one transaction."""
    version = schema_version(db)
    if version >= SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if schema_version(db) < 1:  # another process may have migrated it meanwhile
            columns = verdict_columns(db)
            if "scale" not in columns:
                db.execute("ALTER TABLE verdicts ADD COLUMN scale TEXT")
                db.execute("UPDATE verdicts SET scale=? WHERE score IS NOT NULL", (LEGACY_SCALE,))
            if "parts" not in columns:
                db.execute("ALTER TABLE verdicts ADD COLUMN parts TEXT")
        if schema_version(db) < 2 and "sample" not in item_columns(db):
            db.execute("ALTER TABLE items ADD COLUMN sample INTEGER NOT NULL DEFAULT 0")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def legacy_description(spec: str, scored: bool):
    """What a run stored before judges declared themselves (no `judge_description` in its config) is reported as.

    The judge its spec names is built (nothing is called) and describes itself, when that works offline; else its
    scores are read on the one scale then stored (1-5 harm: ASR = share of 5s, as reports then showed) and a run
    without scores by label rates. Running the same command again records the judge's own declaration, with no
    model call."""
    from dataclasses import replace

    from ..judges.harm import ASR, HARM_SCALE
    from ..types import UNSAFE_RATE, JudgeDescription, Metric

    base, wrapped, back_translator = spec.partition("+back-translate:")  # how the back-translating wrapper names itself
    traits = {"back_translated": True, "back_translator": back_translator} if wrapped else {}
    described = _describe_offline(base)
    if described is not None and (described.scale is not None) == scored:
        return replace(described, spec=spec, traits={**described.traits, **traits},
                       notes=(*described.notes, "described now: the run was stored by an older polysafe"))
    note = ("the judge's declaration was not recorded (a run stored by an older polysafe); run the same command "
            "again to record it, at no model cost")
    if scored:
        return JudgeDescription(spec, "1-5 scored judge (recorded before judges declared their scales)",
                                (ASR, UNSAFE_RATE, Metric("mean_score", "mean score")), scale=HARM_SCALE, traits=traits,
                                notes=(note,))
    return JudgeDescription(spec, "judge not described (recorded before judges declared their metrics)",
                            (UNSAFE_RATE, Metric("label_rate", "invalid rate", label="invalid")), traits=traits,
                            notes=(note,))


def _describe_offline(spec: str):
    """The description of the judge `spec` names, or None when it cannot be built here (unknown, needs a key)."""
    from ..judges.base import load_judge

    if spec not in _DESCRIBED:
        try:
            _DESCRIBED[spec] = load_judge(spec).describe()
        except Exception:  # an unknown plugin, a remote endpoint without a key here: fall back to the data
            _DESCRIBED[spec] = None
    return _DESCRIBED[spec]


_DESCRIBED: dict = {}
