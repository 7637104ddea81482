"""`polysafe judge-agreement` (`polysafe eval multijail` is generated from MultiJail's parameters)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (ApiKeyEnvOpt, ConcurrencyOpt, EvalOptions, JudgeOpt, JudgePromptOpt, RetriesOpt, TimeoutOpt, console,
                      error_line, run_async)

TranslatorOpt = Annotated[Optional[str], typer.Option("--translator", help="precomputed (human translations, default) | llm:<model spec> | hf:<seq2seq path>.")]
BackTranslateOpt = Annotated[bool, typer.Option("--back-translate", help="Translate responses to English before judging (the paper's pipeline).")]


def _back_translator(opts: EvalOptions, judge, translator: str | None):
    """Back-translation needs a machine translator: --translator, else the judge's own model (MultiJail's rule)."""
    from ..benchmarks.multijail import MultiJailParams, back_translator_spec
    from ..translators import load_translator

    params = MultiJailParams(translator=translator or "precomputed", back_translate=True)
    return load_translator(back_translator_spec(params, judge), options=opts.judge_options())


def judge_agreement(
    labels: Annotated[Path, typer.Option("--labels", help="Human-labelled CSV with columns prompt, response, label [, language].")],
    judge: JudgeOpt = "refusal",
    translator: TranslatorOpt = None,
    back_translate: BackTranslateOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of Markdown.")] = False,
    concurrency: ConcurrencyOpt = 16,
    api_key_env: ApiKeyEnvOpt = "OPENAI_API_KEY",
    max_retries: RetriesOpt = 6,
    timeout: TimeoutOpt = 120.0,
    judge_prompt_file: JudgePromptOpt = None,
) -> None:
    """Measure a judge against human labels: accuracy, Cohen's kappa, precision/recall on unsafe."""
    import json

    from ..judges import load_judge
    from ..judges.agreement import agreement_markdown, enough_judged, load_labels, measure
    from ..judges.backtranslate import BackTranslatingJudge

    opts = EvalOptions(judge=judge, concurrency=concurrency, api_key_env=api_key_env, max_retries=max_retries, timeout=timeout)
    examples = load_labels(labels)

    async def go():
        rubric = {"prompt_file": str(judge_prompt_file)} if judge_prompt_file else {}
        loaded = load_judge(judge, opts.judge_options(), **rubric)
        if back_translate:
            loaded = BackTranslatingJudge(loaded, _back_translator(opts, loaded, translator))
        try:
            return await measure(loaded, examples)
        finally:
            await loaded.aclose()

    result, verdicts = run_async(go())
    first_error = next((v.rationale for v in verdicts if v.label == "error"), None)
    typer.echo(json.dumps({"judge": judge, "labels": str(labels), **result.to_dict()}, indent=2) if as_json
               else agreement_markdown(result, judge))
    if not enough_judged(result):
        error_line(f"the judge labelled only {result.n} of {len(examples)} examples ({result.errors} failed, first: "
                   f"{first_error or 'unknown'}): too few for agreement figures")
        raise typer.Exit(1)
    if result.errors:
        console.print(f"[yellow]note:[/] the judge failed on {result.errors} of {len(examples)} examples (left out)")


def register(apps) -> None:
    apps.root.command("judge-agreement")(judge_agreement)
