"""The `scores` report format: the judge's declared figures by scenario x language, with the score distribution.

Rows are grouped by scenario (an attack variant, or a full chain such as `translate:bn|<attack>`) and by the
language of the query sent. Columns are what the judge declares (`describe().metrics`): a share of scores at a
threshold, label rates, a mean score with its 95% interval; an integer scale adds its whole distribution. Several
runs (one per model) make the scenario x model view.
"""

from __future__ import annotations

from typing import Sequence

from ..types import JudgeDescription
from .base import RENDERERS, ReportInput
from .metrics import GroupStats, by_scenario_language, summarize
from .setup import describe_setup


def _distribution(stats: GroupStats, description: JudgeDescription) -> str:
    scale = description.scale
    if not stats.score_counts or scale is None:
        return "n/a"
    return " ".join(f"{score}:{stats.score_counts.get(score, 0)}" for score in range(int(scale.low), int(scale.high) + 1))


def _cell(text: str) -> str:
    """Code-formatted table cell; a chain's `|` is escaped so it does not split the Markdown column."""
    return "`" + text.replace("|", "\\|") + "`"


def scores_table(runs: Sequence[ReportInput]) -> str:
    """One row per model x scenario x language, with each run's own declared figures; runs whose judges declare
    the same figures share one table."""
    blocks: list[tuple[list[str], list[str]]] = []  # (head, rows)
    for data in runs:
        description = describe_setup(data.run, data.rows).description
        scale = description.scale
        head = ["model", "scenario", "language", "n", *(m.name + ("" if m.kind == "mean_score" else " %") + " [95% CI]"
                                                         for m in description.metrics)]
        if scale is not None and scale.integer:
            head.append(f"scores {int(scale.low)}:…{int(scale.high)}:")
        head.append("error %")
        if not blocks or blocks[-1][0] != head:
            blocks.append((head, []))
        lines = blocks[-1][1]
        for s in sorted(summarize(data.rows, by_scenario_language, description), key=lambda s: s.group):
            scenario, language = s.group
            cells = [_cell(data.run.model), _cell(scenario), language, str(s.judged), *(f.text() for f in s.figures)]
            if scale is not None and scale.integer:
                cells.append(_distribution(s, description))
            lines.append("| " + " | ".join([*cells, f"{100 * s.error.value:.1f}"]) + " |")
    return "\n\n".join("\n".join(["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|", *rows])
                       for head, rows in blocks)


@RENDERERS.register("scores", summary="The judge's declared figures (rates, shares at a threshold, mean scores) by scenario x language.")
def _scores():
    def render(data: ReportInput) -> str:
        setup = describe_setup(data.run, data.rows)
        metrics = "; ".join(m.name for m in setup.description.metrics)
        title = (f"## {data.run.name}\n\ntask `{data.run.task}` · model `{data.run.model}` · judge `{data.run.judge}`"
                 f" · {metrics} (rates with Wilson 95% CIs, means with normal 95% CIs); errors are left out of every figure\n\n")
        return title + setup.markdown() + "\n\n" + scores_table([data])

    return render
