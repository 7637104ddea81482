"""`polysafe compare RUN RUN ...`: stored runs side by side, as a table, JSON, CSV, heatmap or explorer page."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import DEFAULT_DB, DbOpt

FORMATS = ("md", "json", "csv", "png", "html")


def output_path(out: Path | None, default_dir: Path, stem: str, fmt: str) -> Path | None:
    """Where to write: --out as a file when it ends in .<fmt>, else as a folder; text formats print without --out."""
    if out is not None and out.suffix.lower() == f".{fmt}":
        return out
    if out is None and fmt in ("md", "json", "csv"):
        return None
    return (out or default_dir) / f"{stem}.{fmt}"


def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more run names (see 'polysafe runs'); the first is the reference. Profile runs give a transfer matrix (cell x model).")],
    by: Annotated[str, typer.Option("--by", help="Rows: language | tier | variant (scenario, CodeAttack variant) | category | sample (runs with --samples K).")] = "language",
    fmt: Annotated[str, typer.Option("--format", "-f", help="md | json | csv | png | html.")] = "md",
    correction: Annotated[str, typer.Option("--correction", help="Multiple-comparison correction: holm | bh (Benjamini-Hochberg).")] = "holm",
    db: DbOpt = Path(DEFAULT_DB),
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="File (ending in .<format>) or folder; default: stdout for md/json/csv, reports/ beside the store for png/html.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse (exit 2) runs whose setups differ, or that are CAPPED, incomplete or empty.")] = False,
) -> None:
    """Compare runs: rate and 95% CI per group and run, differences to the first run (Newcombe CI, Holm)."""
    from ..engine.store import Store
    from ..errors import InputError, PolysafeError
    from ..report.base import load_report_input
    from ..report.chart import safe_filename
    from ..report.compare import comparison_csv, comparison_json, comparison_markdown
    from ..report.compare import compare as build

    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})", field="format")
    if not db.exists():
        raise PolysafeError(f"{db}: no result store here yet")
    with Store(db, readonly=True) as store:
        inputs = [load_report_input(store, name, db.parent / "reports") for name in runs]
    digest = hashlib.sha256("\0".join(runs).encode()).hexdigest()[:8]
    profiles = _profile_inputs(inputs)
    if profiles:  # profiles: a transfer matrix (cell x model) on their shared seeds
        stem = safe_filename(f"transfer-{'-vs-'.join(runs)}")[:90] + f"-{digest}"
        _write(_transfer_content(profiles, fmt), output_path(out, db.parent / "reports", stem, fmt), fmt)
        return
    from ..terminal import printable

    comparison = build(inputs, by=by, correction=correction)
    if comparison.differences and strict:
        raise InputError("the runs are not like for like: " + "; ".join(comparison.differences), field="strict")
    for difference in comparison.differences:
        typer.echo(f"warning: not like for like: {printable(difference)}", err=True)
    stem = safe_filename(f"compare-{by}-{'-vs-'.join(runs)}")[:90] + f"-{digest}"
    path = output_path(out, db.parent / "reports", stem, fmt)
    if fmt == "html":
        from ..report.html import render_comparison_html

        content: str | bytes = render_comparison_html(comparison, inputs)
    elif fmt == "png":
        from ..report.heatmap import heatmap_png

        content = heatmap_png(comparison)
    else:
        content = {"md": comparison_markdown, "json": comparison_json, "csv": comparison_csv}[fmt](comparison)
    _write(content, path, fmt)


def _profile_inputs(inputs):
    """The profiles among the runs (known by the paired design their task config declares); all or none of
    them, else an error."""
    from ..errors import InputError
    from ..report.paired import is_paired_run, paired_from

    flags = [is_paired_run(data.run) for data in inputs]
    if not any(flags):
        return None
    if not all(flags):
        others = [d.run.name for d, flag in zip(inputs, flags) if not flag]
        raise InputError(f"profiles compare only with profiles; not a profile: {', '.join(others)}", field="runs")
    return [paired_from(data) for data in inputs]


def _transfer_content(profiles, fmt: str) -> str | bytes:
    from ..report.paired import transfer_csv, transfer_json, transfer_markdown, transfer_matrix
    from ..report.paired_page import render_transfer_html, transfer_png

    matrix = transfer_matrix(profiles)
    return {"md": transfer_markdown, "json": transfer_json, "csv": transfer_csv, "html": render_transfer_html,
            "png": transfer_png}[fmt](matrix)


def _write(content: str | bytes, path: Path | None, fmt: str) -> None:
    from ..errors import PolysafeError

    if path is None:  # stdout: model and user text never reaches a terminal raw (JSON stays the same data)
        from ..terminal import printable_text

        content = printable_text(content, json_like=fmt == "json") if fmt != "csv" or sys.stdout.isatty() else content
        typer.echo(content, nl=not content.endswith("\n"))
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    except OSError as err:
        raise PolysafeError(f"{path}: cannot write the comparison ({err.strerror or err})") from None
    typer.echo(str(path))


def register(apps) -> None:
    apps.root.command("compare")(compare)
