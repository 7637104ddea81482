"""`polysafe eval codeattack`: CodeAttack variants (or chains ending in one) on AdvBench, MultiJail or a prompt file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import EvalOptions, JudgeOpt, LimitOpt, execute, finish, with_eval_options

DEFAULT_VARIANTS = "python_string,python_list,python_stack,cpp_string,go_string"


def judge_spec(spec: str) -> str:
    """`llm:<model>` means the 1-5 harmfulness judge here (the paper's judging); other specs pass through."""
    name, sep, rest = spec.strip().partition(":")
    return f"harm:{rest}" if name == "llm" and sep else spec.strip()


def build_task(*, variants: str, attacks: list[str] | None, data: Path | None, prompts: Path | None,
               limit: int | None, prompt_set: str = "advbench", languages: str | None = None):
    """The EvalTask: one scenario per variant (named after it), or per --attack chain (named after the chain).

    Prompts come from a prompt set (AdvBench by default; `multijail` gives human translations, so code x language
    needs no machine translation) or from a polysafe prompt file. `limit` counts per language.
    """
    from ..attacks import parse_chain
    from ..attacks.codeattack import get_variant
    from ..data import PROMPT_SETS
    from ..data.languages import parse_languages
    from ..data.prompts import FilePromptSet
    from ..engine.runner import EvalTask, Scenario
    from ..errors import InputError

    if data and prompts:
        raise InputError("give --data (an AdvBench-style CSV) or --prompts (a polysafe prompt file), not both",
                         field="prompts")
    if attacks:
        chains = [parse_chain(spec) for spec in attacks]
        scenarios = [Scenario(chain.spec, chain) for chain in chains]
    else:
        names = [v.strip() for v in variants.split(",") if v.strip()]
        if not names:
            raise InputError("no variant given", field="variants")
        scenarios = [Scenario(get_variant(n).name, parse_chain(f"codeattack:{get_variant(n).name}")) for n in names]
    if len({s.name for s in scenarios}) != len(scenarios):
        raise InputError("the same variant or chain is given twice", field="variants")
    codes = parse_languages(languages) if languages else None
    name, argument = PROMPT_SETS.split(prompt_set)
    if prompts or name == "file":
        source = FilePromptSet(prompts or argument)
    else:  # specs are checked before this: loading may download
        source = PROMPT_SETS.create(prompt_set, path=data, source=str(data) if data else None, languages=codes)
    rows = _first_per_language(source.load(), limit)
    if codes:
        rows = [p for p in rows if p.language in codes]
    if not rows:
        raise InputError(f"no prompts in {', '.join(codes or [])}", field="languages")
    given = data or prompts
    config = {"prompt_set": source.name, "limit": limit, "data": str(given.resolve()) if given else "", "languages": codes}
    return EvalTask(name=f"codeattack:{source.name}", prompts=rows, scenarios=scenarios, config=config)


def _first_per_language(rows, limit: int | None) -> list:
    if not limit:
        return list(rows)
    taken: dict[str, int] = {}
    out = []
    for row in rows:
        taken[row.language] = taken.get(row.language, 0) + 1
        if taken[row.language] <= limit:
            out.append(row)
    return out


def register(apps) -> None:
    @apps.eval.command("codeattack")
    @with_eval_options(max_tokens=512)
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
        report_format: Annotated[str, typer.Option("--format", "-f", help="Table printed after the run: codeattack | md | json.")] = "codeattack",
        limit: LimitOpt = None,
        opts: EvalOptions = EvalOptions(),
    ) -> None:
        """CodeAttack: harmful requests encoded in code (Ren et al. 2024). --judge llm:<spec> scores 1-5 (ASR = share of 5s)."""
        from ._common import attack_context
        from ..report import RENDERERS

        RENDERERS.split(report_format)  # an unknown format fails before any model call

        models = model or ["smollm2"]
        task = build_task(variants=variants, attacks=attack, data=data, prompts=prompts, limit=limit,
                          prompt_set=prompt_set, languages=languages)
        summaries = []
        for index, spec in enumerate(models):
            name = opts.run_name if not opts.run_name or len(models) == 1 else f"{opts.run_name}-{index + 1}"
            run_opts = replace(opts, model=spec, judge=judge_spec(judge), run_name=name,
                               extra=_translation_extra(translator, prompt_set, data))
            ctx = attack_context("|".join(attack or []), run_opts)
            summaries.append(execute(task, run_opts, ctx=ctx, report_format=report_format))
        if len(models) > 1:
            typer.echo("\n## variant x model\n\n" + _combined_table(opts.db, [s.run for s in summaries]))
        for summary in summaries:
            finish(summary)


def _translation_extra(translator: str | None, prompt_set: str, data: Path | None) -> dict:
    """Settings the translation layer reads: the translator, and MultiJail's CSV for `precomputed`."""
    extra: dict = {"translator": translator} if translator else {}
    if data and prompt_set == "multijail":
        extra["data"] = str(data)
    return extra


def _combined_table(db: Path, run_names: list[str]) -> str:
    from ..engine.store import Store
    from ..report.base import load_report_input
    from ..report.codeattack import codeattack_table

    with Store(db) as store:
        return codeattack_table([load_report_input(store, name, db.parent) for name in run_names])
