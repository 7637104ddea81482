"""`polysafe eval codeattack`: CodeAttack variants (or chains ending in one) on AdvBench, MultiJail or a prompt file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import EvalOptions, JudgeOpt, LimitOpt, finish, run_benchmark, with_eval_options

DEFAULT_VARIANTS = "python_string,python_list,python_stack,cpp_string,go_string"


def eval_codeattack(
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="Target model spec (smollm2, hf:<path|id>, openai:<model>[@url], ...+lora:<dir>); repeat it for a variant x model table.")] = None,
    variants: Annotated[str, typer.Option("--variants", "-v", help="Comma-separated: python_string, python_list, python_stack, cpp_string, go_string (+ python_*_plus).")] = DEFAULT_VARIANTS,
    attack: Annotated[Optional[list[str]], typer.Option("--attack", "-a", help="An attack chain instead of --variants, e.g. 'translate:sw|codeattack:python_stack'; repeatable.")] = None,
    judge: JudgeOpt = "refusal",
    prompt_set: Annotated[str, typer.Option("--prompt-set", help="advbench (public CSV) or multijail (hub); see 'polysafe plugins'.")] = "advbench",
    data: Annotated[Optional[Path], typer.Option("--data", help="Local copy of the prompt set: AdvBench CSV with a 'goal' column, or MultiJail CSV.")] = None,
    languages: Annotated[Optional[str], typer.Option("--languages", "-l", help="Only these languages, e.g. 'en,bn,sw' (prompt sets with languages).")] = None,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", "-p", help="A polysafe prompt file (id, text [, language, category]) instead of AdvBench.")] = None,
    translator: Annotated[Optional[str], typer.Option("--translator", help="For translate: steps: llm:<model spec> or hf:<path>.")] = None,
    report_format: Annotated[str, typer.Option("--format", "-f", help="Table printed after the run: scores | md | json.")] = "scores",
    limit: LimitOpt = None,
    opts: EvalOptions = EvalOptions(),
) -> None:
    """CodeAttack: harmful requests encoded in code (Ren et al., 2024); --judge llm:<spec> scores 1-5 (ASR = share of 5s)."""
    from ..report import RENDERERS

    RENDERERS.split(report_format)  # an unknown format fails before any model call
    params = {"variants": variants, "attacks": attack or [], "prompt_set": prompt_set, "limit": limit,
              "data": str(data) if data else None, "prompts": str(prompts) if prompts else None,
              "languages": languages or [], "translator": translator}
    models = model or ["smollm2"]
    summaries = []
    for index, spec in enumerate(models):
        name = opts.run_name if not opts.run_name or len(models) == 1 else f"{opts.run_name}-{index + 1}"
        summaries.append(run_benchmark("codeattack", model=spec, judge=judge, params=params,
                                       opts=replace(opts, run_name=name), reports=[report_format],
                                       exit_on_errors=False))
    if len(models) > 1:
        typer.echo("\n## variant x model\n\n" + _combined_table(opts.db, [s.run for s in summaries]))
    for summary in summaries:
        finish(summary)


def register(apps) -> None:
    apps.eval.command("codeattack")(with_eval_options()(eval_codeattack))


def _combined_table(db: Path, run_names: list[str]) -> str:
    from ..engine.store import Store
    from ..report.base import load_report_input
    from ..report.scores import scores_table

    with Store(db) as store:
        return scores_table([load_report_input(store, name, db.parent) for name in run_names])
