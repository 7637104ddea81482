"""Per-response export: one row per item of a run, as JSONL, CSV, Parquet or a Hugging Face `datasets` dataset.

Columns (EXPORT_COLUMNS, same order and types in every format):
run, model, benchmark (the task's family: the part of the task name before ':'), task, judge, item (its place in the
run), prompt_id, language, tier (English/HRL/MRL/LRL/other), scenario (a scenario or an attack variant), chain,
category, tags, english_source (the English wording of the request when the set has one, else the prompt text),
prompt (what was sent), response, back_translation (the English text the judge read, for back-translated runs),
extracted (what the judge read when an attack's post-processing, such as extracting code, changed the response),
label, score (a float on the judge's declared scale), scale (that scale's name), parts (the verdict's structured
sub-scores as a JSON object, e.g. rubric ratings), rationale, error, prompt_tokens, completion_tokens, finish_reason,
sample (which of a prompt's K sampled answers) and seed (the seed it was drawn with); then what produced the row:
model_identity (a hash of the model's identity: endpoint, weights, adapters, dtype), dtype (local models),
generation (the generation settings, JSON), polysafe_version, run_created and run_updated (ISO 8601, UTC).

The judge's input is stored once per verdict (`extracted`); it is shown as `back_translation` in a back-translated
run (outside English) and as `extracted` otherwise, and left empty where it equals the response.

CSV and spreadsheets: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets, and model output is hostile. Every such text cell, and every text cell
starting with `'`, gets one leading `'` (OWASP's advice), so a spreadsheet shows the text and runs nothing.
`read_csv` removes exactly that one `'`, so the CSV round-trips; other readers (pandas) see the `'`.
Tags are a JSON list in CSV. A value that does not apply or is not known (no back-translation, a pending response,
no score) is null in JSONL, Parquet and datasets; CSV has no null, so it is an empty cell there, and `read_csv`
reads an empty cell back as null.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterable, Sequence

from ..languages import tier_of
from ..engine.store import ResultRow, RunRecord
from .declared import judge_description
from .tiers import tier_label

# (name, type): str, int, float or list (of str); any value may be None (null).
EXPORT_COLUMNS: tuple[tuple[str, type], ...] = (
    ("run", str), ("model", str), ("benchmark", str), ("task", str), ("judge", str), ("item", int),
    ("prompt_id", str), ("language", str), ("tier", str), ("scenario", str), ("chain", str), ("category", str),
    ("tags", list), ("english_source", str), ("prompt", str), ("response", str), ("back_translation", str),
    ("extracted", str), ("label", str), ("score", float), ("scale", str), ("parts", str), ("rationale", str), ("error", str),
    ("prompt_tokens", int), ("completion_tokens", int), ("finish_reason", str), ("sample", int), ("seed", int),
    ("model_identity", str), ("dtype", str), ("generation", str), ("polysafe_version", str), ("run_created", str),
    ("run_updated", str),
)
FORMATS = ("jsonl", "csv", "parquet")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def provenance(run: RunRecord) -> dict:
    """What produced a run, as every exported row carries it."""
    from .. import __version__

    generation = run.config.get("generation")
    return {"model_identity": run.config.get("model_identity"), "dtype": run.config.get("model_dtype"),
            "generation": json.dumps(generation, sort_keys=True) if generation is not None else None,
            "polysafe_version": __version__, "run_created": _iso(run.created), "run_updated": _iso(run.updated)}


def _iso(timestamp: float) -> str | None:
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds") if timestamp else None


def export_rows(run: RunRecord, rows: Sequence[ResultRow]) -> list[dict]:
    back_translated = bool(run.config.get("back_translate")) or bool(judge_description(run, rows).traits.get("back_translated"))
    produced = provenance(run)
    seed = (run.config.get("generation") or {}).get("seed")
    out = []
    for row in rows:
        judged_text = row.extracted if row.extracted is not None and row.extracted != row.response else None
        back = judged_text if back_translated and row.language != "en" else None
        record = {
            "run": run.name, "model": run.model, "benchmark": run.task.split(":")[0], "task": run.task, "judge": run.judge,
            "item": row.position, "prompt_id": row.prompt_id, "language": row.language, "tier": tier_label(tier_of(row.language)),
            "scenario": row.scenario, "chain": row.chain, "category": row.category, "tags": list(row.tags),
            "english_source": row.query, "prompt": row.prompt, "response": None if row.error else row.response,
            "back_translation": back, "extracted": None if back is not None else judged_text, "label": row.label,
            "score": None if row.score is None else float(row.score), "scale": row.scale,
            "parts": json.dumps(row.parts, ensure_ascii=False, sort_keys=True) if row.parts else None,
            "rationale": row.rationale, "error": row.error, "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens, "finish_reason": row.finish_reason, "sample": row.sample,
            "seed": None if seed is None else seed + row.sample, **produced,
        }
        out.append({name: record[name] for name, _ in EXPORT_COLUMNS})
    return out


# -- JSONL ------------------------------------------------------------------------------------------------


def write_jsonl(rows: Iterable[dict], handle: io.TextIOBase) -> None:
    for row in rows:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")


# -- CSV --------------------------------------------------------------------------------------------------


def guard_cell(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_START) else text


def unguard_cell(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def _csv_cell(value, kind: type) -> str:
    if value is None:
        return ""
    if kind is list:
        return guard_cell(json.dumps(value, ensure_ascii=False))
    return guard_cell(value) if kind is str else str(value)


def write_csv(rows: Iterable[dict], handle: io.TextIOBase) -> None:
    writer = csv.writer(handle, lineterminator="\r\n")  # RFC 4180; fields with newlines or quotes are quoted
    writer.writerow([name for name, _ in EXPORT_COLUMNS])
    for row in rows:
        writer.writerow([_csv_cell(row[name], kind) for name, kind in EXPORT_COLUMNS])


def read_csv(path: str | Path) -> list[dict]:
    """Read back a CSV written by `write_csv`: the formula guard undone, types restored."""
    kinds = dict(EXPORT_COLUMNS)
    with open(path, encoding="utf-8", newline="") as handle:
        return [{name: _from_cell(cell, kinds[name]) for name, cell in record.items()} for record in csv.DictReader(handle)]


def _from_cell(cell: str, kind: type):
    if not cell:
        return None
    if kind is int:
        return int(cell)
    if kind is float:
        return float(cell)
    text = unguard_cell(cell)
    return json.loads(text) if kind is list else text


# -- Parquet and Hugging Face datasets -------------------------------------------------------------------


def arrow_schema():
    import pyarrow as pa

    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), list: pa.list_(pa.string())}
    return pa.schema([pa.field(name, types[kind]) for name, kind in EXPORT_COLUMNS])


def write_parquet(rows: Sequence[dict], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(list(rows), schema=arrow_schema()), path)


def write_hf_dataset(rows: Sequence[dict], directory: Path) -> None:
    """A `datasets.Dataset` saved with `save_to_disk`; `datasets.load_from_disk(directory)` reads it back."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()  # no progress bar in the middle of a command's output
    datasets.disable_progress_bars()
    try:
        dataset = datasets.Dataset.from_list(list(rows), features=datasets.Features.from_arrow_schema(arrow_schema()))
        dataset.save_to_disk(str(directory))
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def write_export(rows: Sequence[dict], fmt: str, path: Path) -> None:
    if fmt == "parquet":
        write_parquet(rows, path)
        return
    with open(path, "w", encoding="utf-8", newline="") as handle:
        (write_jsonl if fmt == "jsonl" else write_csv)(rows, handle)


__all__ = ["EXPORT_COLUMNS", "FORMATS", "export_rows", "write_jsonl", "write_csv", "read_csv", "write_parquet",
           "write_hf_dataset", "write_export", "guard_cell", "unguard_cell", "arrow_schema"]
