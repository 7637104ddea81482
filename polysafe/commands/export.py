"""`polysafe export RUN`: every response of a run, one row per item, as JSONL, CSV, Parquet or an HF dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import DEFAULT_DB, DbOpt

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="jsonl | csv | parquet | inspect (an inspect_ai eval log for 'inspect view').")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="File to write ('-' prints JSONL or CSV to stdout); a folder for inspect. Default: exports/<run>.<format> beside the store, exports/inspect/ for inspect.")]
HfOpt = Annotated[Optional[Path], typer.Option("--hf", help="Also write a Hugging Face datasets dataset (save_to_disk) to this folder.")]


def export(
    run: Annotated[str, typer.Argument(help="Run name (see 'polysafe runs').")],
    fmt: FormatOpt = "jsonl",
    out: OutOpt = None,
    hf: HfOpt = None,
    db: DbOpt = Path(DEFAULT_DB),
) -> None:
    """Export every item of a run: prompt, response, back-translation or extraction, verdict, tokens."""
    import sys

    from ..engine.store import Store
    from ..errors import InputError, PolysafeError
    from ..report.base import load_report_input
    from ..report.chart import safe_filename
    from ..report.export import FORMATS, export_rows, write_csv, write_export, write_hf_dataset, write_jsonl

    if fmt not in (*FORMATS, "inspect"):
        raise InputError(f"unknown format '{fmt}' (jsonl, csv, parquet, inspect)", field="format")
    if fmt == "inspect" and str(out) == "-":
        raise InputError("an inspect log cannot go to stdout: give --out DIR", field="out")
    if str(out) == "-" and fmt == "parquet":
        raise InputError("parquet cannot go to stdout: give --out FILE", field="out")
    if not db.exists():
        raise PolysafeError(f"{db}: no result store here yet")
    with Store(db, readonly=True) as store:  # also on read-only media
        data = load_report_input(store, run, db.parent)
    if fmt == "inspect":
        from ..report.inspect_log import write_inspect_log

        folder = out or db.parent / "exports" / "inspect"
        written: list[Path] = []
        _written(lambda: written.append(write_inspect_log(data.run, data.rows, folder)), folder / "log.eval")
        typer.echo(str(written[0]))
        return
    rows = export_rows(data.run, data.rows)
    if str(out) == "-":
        import io

        from ..terminal import printable_text

        buffer = io.StringIO()
        (write_jsonl if fmt == "jsonl" else write_csv)(rows, buffer)
        text = buffer.getvalue()  # JSONL stays the same data; CSV cells are escaped only for a terminal
        sys.stdout.write(printable_text(text, json_like=True) if fmt == "jsonl"
                         else printable_text(text) if sys.stdout.isatty() else text)
    else:
        path = out or db.parent / "exports" / f"{safe_filename(run)}.{fmt}"
        _written(lambda: write_export(rows, fmt, path), path)
        typer.echo(str(path))
    if hf is not None:
        _written(lambda: write_hf_dataset(rows, hf), hf)
        typer.echo(str(hf))


def register(apps) -> None:
    apps.root.command("export")(export)


def _written(write, path: Path) -> None:
    """Run a writer; a full disk or a read-only folder is one line (exit 1), never a traceback."""
    from ..errors import PolysafeError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write()
    except OSError as err:
        raise PolysafeError(f"{path}: cannot write the export: {err.strerror or err}; pass --out FILE") from None
