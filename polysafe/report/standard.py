"""The `md` and `json` report formats: the setup block, then the judge's declared figures per scenario and
language (rates with Wilson 95%, mean scores with a 95% interval).

For multilingual runs, the per-scenario Avg over the non-English languages and the adaptive any-language rate
follow. The paper's per-language figures appear only for comparable scenarios (report/setup.py).
"""

from __future__ import annotations

from .base import RENDERERS, ReportInput
from .metrics import GroupStats, by_scenario_language, summarize
from .declared import judge_description, rate_metric
from .samples import is_sampled, sample_summaries, samples_markdown
from .setup import describe_setup
from .tables import json_table, markdown_table
from .tiers import (comparable_reference, headline_metric, is_multilingual, reference_models, shows_reference,
                    summaries_markdown, summaries_with_reference)


def _language_reference(setup):
    def reference(stats: GroupStats) -> dict[str, float]:
        scenario, language = stats.group
        return comparable_reference(setup, scenario, language, [language])

    return reference


def _figure(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


@RENDERERS.register("md", summary="Markdown: setup block, the judge's figures per scenario and language with 95% CIs, Avg and adaptive.")
def _markdown():
    def render(data: ReportInput) -> str:
        setup = describe_setup(data.run, data.rows)
        stats = summarize(data.rows, by_scenario_language, setup.description)
        reference = _language_reference(setup)
        models = reference_models(setup) if shows_reference(setup) else ()
        extra = [(f"{m} (paper)", lambda s, m=m: _figure(reference(s).get(m))) for m in models]
        parts = [f"## {data.run.name}", f"task `{data.run.task}` · model `{data.run.model}` · judge `{data.run.judge}`",
                 setup.markdown(), markdown_table(stats, extra=extra)]
        if is_multilingual(data.rows):
            parts.append(summaries_markdown(summaries_with_reference(data.rows, setup), models,
                                            headline_metric(setup).name))
        if is_sampled(data.rows):
            metric = rate_metric(judge_description(data.run, data.rows))
            parts.append(samples_markdown(sample_summaries(data.rows, metric),
                                          data.run.config.get("generation", {}).get("seed"), metric))
        return "\n\n".join(parts)

    return render


@RENDERERS.register("json", summary="JSON: the setup, the same table and the per-scenario summaries, machine-readable.")
def _json():
    def render(data: ReportInput) -> str:
        setup = describe_setup(data.run, data.rows)
        stats = summarize(data.rows, by_scenario_language, setup.description)
        reference = _language_reference(setup)
        summaries = summaries_with_reference(data.rows, setup) if is_multilingual(data.rows) else []
        return json_table(stats, row_extra=lambda s: {"reference": reference(s)}, run=data.run.name, task=data.run.task,
                          model=data.run.model, judge=data.run.judge, setup=setup.to_dict(),
                          scenarios=[s.to_dict() for s in summaries],
                          **({"sampling": [s.to_dict() for s in sample_summaries(
                              data.rows, rate_metric(judge_description(data.run, data.rows)))]}
                             if is_sampled(data.rows) else {}))

    return render
