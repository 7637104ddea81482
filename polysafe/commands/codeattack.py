"""`polysafe eval codeattack`: generated from CodeAttack's parameters, with this command's own additions: several
`--model`s (then a variant x model table) and `--format` for the table printed after the run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import EvalOptions, finish, run_benchmark
from ._params_cli import Customization, customize

ModelsOpt = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Target model spec (smollm2, hf:<path|id>, openai:<model>[@url], ...+lora:<dir>); repeat it for a variant x model table.")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="Table printed after the run: scores | md | json.")]


def run_codeattack(name: str, params: dict, *, opts: EvalOptions, judge: str | None, param=None,
                   model: list[str] | None = None, report_format: str = "scores") -> None:
    """CodeAttack's command runs one model or several (then a variant x model table follows)."""
    from ..report import RENDERERS

    RENDERERS.split(report_format)  # an unknown format fails before any model call
    models = model or ["smollm2"]
    summaries = []
    for index, spec in enumerate(models):
        run_name = opts.run_name if not opts.run_name or len(models) == 1 else f"{opts.run_name}-{index + 1}"
        summaries.append(run_benchmark(name, model=spec, judge=judge, params=params, opts=replace(opts, run_name=run_name),
                                       reports=[report_format], exit_on_errors=False))
    if len(models) > 1:
        typer.echo("\n## variant x model\n\n" + _combined_table(opts.db, [s.run for s in summaries]))
    for summary in summaries:
        finish(summary)


def register(apps) -> None:
    customize("codeattack", Customization(options={"model": (ModelsOpt, None), "report_format": (FormatOpt, "scores")},
                                          replaces=("model",), run=run_codeattack))


def _combined_table(db: Path, run_names: list[str]) -> str:
    from ..engine.store import Store
    from ..report.base import load_report_input
    from ..report.scores import scores_table

    with Store(db) as store:
        return scores_table([load_report_input(store, name, db.parent) for name in run_names])
