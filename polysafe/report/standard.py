"""The `md` and `json` report formats: per scenario and language, with Wilson 95% intervals."""

from __future__ import annotations

from .base import RENDERERS, ReportInput
from .metrics import by_scenario_language, summarize
from .tables import json_table, markdown_table


@RENDERERS.register("md", summary="Markdown table: rates per scenario and language with Wilson 95% CIs.")
def _markdown():
    def render(data: ReportInput) -> str:
        stats = summarize(data.rows, by_scenario_language)
        title = f"## {data.run.name}\n\ntask `{data.run.task}` · model `{data.run.model}` · judge `{data.run.judge}`\n\n"
        return title + markdown_table(stats)

    return render


@RENDERERS.register("json", summary="JSON: the same table, machine-readable.")
def _json():
    def render(data: ReportInput) -> str:
        stats = summarize(data.rows, by_scenario_language)
        return json_table(stats, run=data.run.name, task=data.run.task, model=data.run.model, judge=data.run.judge)

    return render
