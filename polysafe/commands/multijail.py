"""`polysafe eval multijail` and `polysafe judge-agreement`."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import (ApiKeyEnvOpt, ConcurrencyOpt, EvalOptions, JudgeOpt, LimitOpt, ModelOpt, RetriesOpt, TimeoutOpt,
                      console, error_line, execute, finish, with_eval_options)

ScenarioOpt = Annotated[str, typer.Option("--scenario", "-s", help="unintentional | intentional | both.")]
LanguagesOpt = Annotated[str, typer.Option("--languages", "-l", help="Comma-separated codes, or 'all' (en zh it vi ar ko th bn sw jv).")]
DataOpt = Annotated[Optional[str], typer.Option("--data", help="Local MultiJail CSV; default: the hub dataset DAMO-NLP-SG/MultiJail.")]
TemplateOpt = Annotated[Optional[Path], typer.Option("--template-file", help="Jailbreak text with a {prompt} slot for 'intentional' (default: polysafe's own).")]
TranslatorOpt = Annotated[Optional[str], typer.Option("--translator", help="precomputed (human translations, default) | llm:<model spec> | hf:<seq2seq path>.")]
BackTranslateOpt = Annotated[bool, typer.Option("--back-translate", help="Translate responses to English before judging (the paper's pipeline).")]


def build_multijail_task(*, scenario: str, languages: str, limit: int | None, data: str | None, template: Path | None,
                         translator: str | None):
    """The task: human translations by default; with a machine translator, English prompts + `translate:<lang>`."""
    from ..attacks.base import parse_chain
    from ..data.languages import parse_languages
    from ..data.multijail import limit_per_language, load_multijail, multijail_scenarios, parse_scenarios
    from ..engine.runner import EvalTask, Scenario

    codes = parse_languages(languages)
    names = parse_scenarios(scenario)
    template_path = str(template) if template else None
    machine = translator not in (None, "precomputed")
    if machine:
        prompts = limit_per_language(load_multijail(data, ["en"]), limit)
        jailbreak = f"jailbreak:{template_path}" if template_path else "jailbreak"
        scenarios = []
        for name in names:
            multijail_scenarios([name], template_path)  # validates the name and the template
            for code in codes:
                steps = ([] if code == "en" else [f"translate:{code}"]) + ([jailbreak] if name == "intentional" else [])
                scenarios.append(Scenario(name, parse_chain("|".join(steps) or "none")))
    else:
        prompts = limit_per_language(load_multijail(data, codes), limit)
        scenarios = multijail_scenarios(names, template_path)
    config = {"dataset": _dataset_id(data), "languages": codes, "limit_per_language": limit,
              "translator": translator or "precomputed", "translation": "machine" if machine else "human",
              "template": template_path, **(_template_identity(template_path) if "intentional" in names else {})}
    return EvalTask(name="multijail", prompts=prompts, scenarios=scenarios, config=config)


def _template_identity(template_path: str | None) -> dict:
    """Name and sha256 of the intentional scenario's template text, for the reports' setup block."""
    import hashlib

    from ..attacks.jailbreak import POLYSAFE_TEMPLATE, read_template

    text = read_template(template_path) if template_path else POLYSAFE_TEMPLATE
    return {"template_name": Path(template_path).name if template_path else None,
            "template_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def _dataset_id(data: str | None) -> str:
    """How the run records its data: the hub id, or the resolved path (./x.csv and x.csv are one run)."""
    if not data:
        return "hub:DAMO-NLP-SG/MultiJail"
    return data if data == "hub" or data.startswith("hf:") else str(Path(data).resolve())


def _back_translator(opts: EvalOptions, translator: str | None):
    """Back-translation needs a machine translator: --translator, else the judge's own model."""
    from ..data.translation import translator_from_options
    from ..errors import InputError

    if translator and translator != "precomputed":
        return translator_from_options(opts, translator)
    if opts.judge.startswith("llm:"):
        return translator_from_options(opts, "llm:" + opts.judge[len("llm:"):])
    raise InputError("--back-translate needs a machine translator: pass --translator llm:<model> or hf:<path>", field="translator")


def register(apps) -> None:
    @apps.eval.command("multijail")
    @with_eval_options()
    def eval_multijail(
        model: ModelOpt = "smollm2",
        scenario: ScenarioOpt = "both",
        languages: LanguagesOpt = "all",
        limit: LimitOpt = None,
        judge: JudgeOpt = "refusal",
        data: DataOpt = None,
        template_file: TemplateOpt = None,
        translator: TranslatorOpt = None,
        back_translate: BackTranslateOpt = False,
        opts: EvalOptions = EvalOptions(),
    ) -> None:
        """MultiJail (Deng et al. 2024): unsafe prompts in 10 languages, unintentional and intentional scenarios."""
        from ..attacks.base import AttackContext
        from ..data.translation import translator_from_options
        from ..engine.store import Store
        from ..judges.backtranslate import BackTranslatingJudge
        from ..report.base import load_report_input, render

        opts = replace(opts, model=model, judge=judge, extra={"translator": translator or "precomputed", "data": data})
        task = build_multijail_task(scenario=scenario, languages=languages, limit=limit, data=data,
                                    template=template_file, translator=translator)
        task.config["back_translate"] = back_translate
        ctx = AttackContext(translator=translator_from_options(opts))
        wrapper = None
        if back_translate:
            back = _back_translator(opts, translator)
            wrapper = lambda inner, store: BackTranslatingJudge(inner, back, store=store)  # noqa: E731
        summary = execute(task, opts, ctx=ctx, judge_wrapper=wrapper)
        with Store(opts.db) as store:
            report = load_report_input(store, summary.run, opts.db.parent / "reports")
            typer.echo("")
            typer.echo(render("tiers", report))
            path = render("html", report)
        typer.echo(f"\nHTML report: {path}")
        finish(summary)

    @apps.root.command("judge-agreement")
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
    ) -> None:
        """Measure a judge against human labels: accuracy, Cohen's kappa, precision/recall on unsafe."""
        import json

        from ..judges import load_judge
        from ..judges.agreement import agreement_markdown, enough_judged, load_labels, measure
        from ..judges.backtranslate import BackTranslatingJudge

        opts = EvalOptions(judge=judge, concurrency=concurrency, api_key_env=api_key_env, max_retries=max_retries, timeout=timeout)
        examples = load_labels(labels)

        async def go():
            loaded = load_judge(judge, opts.judge_options())
            if back_translate:
                loaded = BackTranslatingJudge(loaded, _back_translator(opts, translator))
            try:
                return await measure(loaded, examples)
            finally:
                await loaded.aclose()

        result, verdicts = asyncio.run(go())
        first_error = next((v.rationale for v in verdicts if v.label == "error"), None)
        typer.echo(json.dumps({"judge": judge, "labels": str(labels), **result.to_dict()}, indent=2) if as_json
                   else agreement_markdown(result, judge))
        if not enough_judged(result):
            error_line(f"the judge labelled only {result.n} of {len(examples)} examples ({result.errors} failed, first: "
                       f"{first_error or 'unknown'}): too few for agreement figures")
            raise typer.Exit(1)
        if result.errors:
            console.print(f"[yellow]note:[/] the judge failed on {result.errors} of {len(examples)} examples (left out)")
