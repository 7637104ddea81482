"""Report renderers: one registry, one file per format (md, json, html, png, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..engine.store import ResultRow, RunRecord, Store
from ..registry import Registry


@dataclass(frozen=True)
class ReportInput:
    run: RunRecord
    rows: list[ResultRow]
    out_dir: Path  # where files go, for formats that write files


Renderer = Callable[[ReportInput], str]  # returns the text to print (a table, or the path of a written file)
RENDERERS: Registry[Renderer] = Registry("report format", package="polysafe.report")


def load_report_input(store: Store, run_name: str, out_dir: Path) -> ReportInput:
    from ..errors import InputError

    run = store.get_run(run_name)
    if run is None:
        known = ", ".join(r.name for r, _ in store.list_runs()[:10]) or "none"
        raise InputError(f"no run named '{run_name}' in {store.path} (recent: {known})", field="run")
    return ReportInput(run=run, rows=store.results(run_name), out_dir=out_dir)


def render(fmt: str, data: ReportInput) -> str:
    renderer = RENDERERS.create(fmt)
    return renderer(data)
