"""Runs side by side: one row per group (language, tier, variant or category), one column per run.

Each cell holds the run's rate with a Wilson 95% interval. The rate is the headline rate the runs' judges declare
(`describe()`: an unsafe rate, a non-refusal rate, a share of scores at a threshold). When the runs' judges declare
different rates, every run is measured by its share labelled unsafe, which every judge gives, and the method line
says so, so the columns stay comparable.
Every run after the first also gets its difference to the first run, with a Newcombe 95% interval and a
significance marker after correcting over all differences in the table (see report/stats.py).
When a run holds several scenarios (e.g. unintentional and intentional), rows are split per scenario
unless the grouping is the scenario itself.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from ..languages import TIER_NAMES, TIERS, tier_of
from ..engine.store import ResultRow, RunRecord
from ..errors import InputError
from .base import ReportInput
from .chart import language_order
from ..types import Metric
from .declared import judge_description, rate_metric, rate_of
from .compare_setup import setup_differences, truncation_share
from .metrics import Rate
from .stats import CORRECTION_NAMES, CORRECTIONS, Difference, adjust, difference

GROUPINGS = ("language", "tier", "variant", "category", "sample")
ALPHA = 0.05
NO_CATEGORY = "(none)"


def tier_name(language: str) -> str:
    return TIER_NAMES.get(tier_of(language), "other")


def group_value(row: ResultRow, by: str) -> str:
    if by == "language":
        return row.language
    if by == "tier":
        return tier_name(row.language)
    if by == "variant":
        return row.scenario
    if by == "sample":
        return str(row.sample)
    return row.category or NO_CATEGORY


def order_values(values: Sequence[str], by: str) -> list[str]:
    if by == "language":
        return language_order(values)
    if by == "tier":
        rank = {TIER_NAMES[t]: i for i, t in enumerate(TIERS)}
        return sorted(values, key=lambda v: (rank.get(v, len(rank)), v))
    if by == "category":
        return sorted(values)
    if by == "sample":
        return sorted(values, key=int)
    return list(values)  # scenarios and variants keep the order the runs define them in


@dataclass(frozen=True)
class RunColumn:
    name: str
    task: str
    model: str
    judge: str
    truncation: str = ""  # responses stopped at max_tokens, e.g. "3 of 20 responses (15.0%)"
    judge_check: str = ""  # each judge check's kappa, when the run has checks

    @classmethod
    def of(cls, run: RunRecord, truncation: str = "") -> "RunColumn":
        from .judge_checks import kappa_text

        return cls(run.name, run.task, run.model, run.judge, truncation, kappa_text(run))


@dataclass(frozen=True)
class Cell:
    rate: Rate | None  # None when the run has nothing in this group
    diff: Difference | None = None  # to the first run; None for the first run and where a side is empty
    p_adjusted: float | None = None
    significant: bool = False


@dataclass(frozen=True)
class CompareRow:
    scenario: str | None  # set when rows are split per scenario
    group: str
    cells: tuple[Cell, ...]

    @property
    def label(self) -> str:
        return f"{self.scenario} · {self.group}" if self.scenario is not None else self.group

    def filters(self, by: str) -> dict[str, str]:
        """The response filters that select this row's items (used by the HTML page's links)."""
        key = {"language": "language", "tier": "tier", "variant": "scenario", "category": "category", "sample": "sample"}[by]
        out = {key: self.group}
        if self.scenario is not None:
            out["scenario"] = self.scenario
        return out


@dataclass(frozen=True)
class Comparison:
    runs: tuple[RunColumn, ...]
    by: str
    metric: str
    correction: str
    alpha: float
    tests: int  # differences in the corrected family
    rows: tuple[CompareRow, ...]
    note: str = ""
    differences: tuple[str, ...] = ()  # setup differences between the runs (see compare_setup)

    def truncation_note(self) -> str:
        return "Stopped at max_tokens: " + "; ".join(f"{r.name}: {r.truncation or 'not known'}" for r in self.runs)

    def differences_note(self) -> str:
        return ("Not like for like: " + "; ".join(self.differences)) if self.differences else ""

    def group_title(self) -> str:
        return f"scenario · {self.by}" if any(row.scenario is not None for row in self.rows) else self.by

    def method(self) -> str:
        return (f"{self.metric} with Wilson 95% CI; Δ = run − {self.runs[0].name}, Newcombe hybrid score 95% CI "
                f"(method 10); * = significant at α = {self.alpha:g} after {CORRECTION_NAMES[self.correction]} "
                f"correction over {self.tests} differences, p-values from inverting the Newcombe interval"
                + (f". {self.note}" if self.note else "")
                + (f". {self.differences_note()}" if self.differences else ""))

    def to_dict(self) -> dict:
        return {"by": self.by, "metric": self.metric, "correction": self.correction, "alpha": self.alpha,
                "tests": self.tests, "method": self.method(), "runs": [asdict(r) for r in self.runs],
                "setup_differences": list(self.differences),
                "rows": [{"scenario": row.scenario, "group": row.group,
                          "cells": [{"run": run.name, **_cell_dict(cell)} for run, cell in zip(self.runs, row.cells)]}
                         for row in self.rows]}


def _cell_dict(cell: Cell) -> dict:
    return {"rate": asdict(cell.rate) if cell.rate else None, "diff": asdict(cell.diff) if cell.diff else None,
            "p_adjusted": cell.p_adjusted, "significant": cell.significant}


def _rate_measure(inputs: Sequence[ReportInput]) -> tuple[str, Callable[[list[ResultRow]], Rate], str]:
    metrics = [rate_metric(judge_description(data.run, data.rows)) for data in inputs]
    if all(m is not None for m in metrics) and len({(m.kind, m.label, m.threshold, m.name) for m in metrics}) == 1:  # type: ignore[union-attr]
        metric = metrics[0]
        return metric.name, lambda rows: rate_of(metric, rows), ""  # type: ignore[arg-type]
    declared = ", ".join(dict.fromkeys(m.name if m else "none" for m in metrics))
    common = Metric("label_rate", "share labelled unsafe", label="unsafe")
    return common.name, lambda rows: rate_of(common, rows), (
        f"The runs' judges declare different headline rates ({declared}), so every run is measured by its share "
        "labelled unsafe")


def compare(inputs: Sequence[ReportInput], by: str = "language", correction: str = "holm") -> Comparison:
    if by not in GROUPINGS:
        raise InputError(f"unknown grouping '{by}' (choose from {', '.join(GROUPINGS)})", field="by")
    if correction not in CORRECTIONS:
        raise InputError(f"unknown correction '{correction}' (choose from {', '.join(CORRECTIONS)})", field="correction")
    if len(inputs) < 2:
        raise InputError("compare needs at least two runs", field="runs")
    names = [data.run.name for data in inputs]
    if len(set(names)) != len(names):
        raise InputError(f"a run is named twice: {', '.join(names)}", field="runs")
    metric, measure, note = _rate_measure(inputs)
    note = " ".join(part for part in (note, _samples_note(inputs, by)) if part)
    split = by != "variant" and any(len({r.scenario for r in data.rows}) > 1 for data in inputs)

    groups: list[dict[tuple[str | None, str], list[ResultRow]]] = []
    for data in inputs:
        grouped: dict[tuple[str | None, str], list[ResultRow]] = {}
        for row in data.rows:
            grouped.setdefault((row.scenario if split else None, group_value(row, by)), []).append(row)
        groups.append(grouped)
    scenarios = list(dict.fromkeys(s for grouped in groups for s, _ in grouped))
    values = order_values(list(dict.fromkeys(v for grouped in groups for _, v in grouped)), by)
    keys = [(s, v) for s in scenarios for v in values if any((s, v) in grouped for grouped in groups)]

    rates = [[measure(grouped[key]) if key in grouped else None for grouped in groups] for key in keys]
    diffs = [[None] + [_diff(rate, row[0]) for rate in row[1:]] for row in rates]
    family = [(i, j) for i, row in enumerate(diffs) for j, d in enumerate(row) if d is not None]
    adjusted = dict(zip(family, adjust([diffs[i][j].p for i, j in family], correction)))
    rows = tuple(
        CompareRow(key[0], key[1], tuple(
            Cell(rate, diffs[i][j], adjusted.get((i, j)), (i, j) in adjusted and adjusted[(i, j)] < ALPHA)
            for j, rate in enumerate(rates[i])))
        for i, key in enumerate(keys))
    return Comparison(tuple(RunColumn.of(data.run, truncation_share(data)) for data in inputs), by, metric, correction,
                      ALPHA, len(family), rows, note, setup_differences(inputs))


def _samples_note(inputs: Sequence[ReportInput], by: str) -> str:
    """Runs with several answers per prompt: say how their rates pool the samples."""
    sampled = [f"{data.run.name} ({max(r.sample for r in data.rows) + 1})" for data in inputs
               if any(r.sample for r in data.rows)]
    if not sampled or by == "sample":
        return ""
    return (f"Runs with several sampled answers per prompt: {', '.join(sampled)}. Their rates pool every sample and "
            "their intervals treat the samples as independent (too narrow); --by sample compares one sample index "
            "at a time, and each run's report gives the prompt-clustered and any-of-K rates.")


def _diff(rate: Rate | None, first: Rate | None) -> Difference | None:
    if rate is None or first is None:
        return None
    return difference(rate.count, rate.total, first.count, first.total)


# -- text formats ---------------------------------------------------------------------------------------
def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def rate_text(rate: Rate | None) -> str:
    return "n/a" if rate is None or not rate.total else f"{rate.pct()} (n={rate.total})"


def signed_pp(value: float) -> str:
    """A difference in percentage points: +12.5, -3.0, and ±0.0 for none."""
    text = f"{100 * value:+.1f}"
    return "±0.0" if text in ("+0.0", "-0.0") else text


def diff_text(cell: Cell) -> str:
    if cell.diff is None:
        return "n/a"
    d = cell.diff
    return f"{signed_pp(d.value)} [{signed_pp(d.low)}, {signed_pp(d.high)}]{' *' if cell.significant else ''}"


def _header(comparison: Comparison) -> list[str]:
    first = comparison.runs[0].name
    head = [comparison.group_title(), f"{first} %"]
    for run in comparison.runs[1:]:
        head += [f"{run.name} %", f"Δ {run.name} − {first} (pp)"]
    return head


def _body(comparison: Comparison) -> list[list[str]]:
    body = []
    for row in comparison.rows:
        cells = [row.label, rate_text(row.cells[0].rate)]
        for cell in row.cells[1:]:
            cells += [rate_text(cell.rate), diff_text(cell)]
        body.append(cells)
    return body


def comparison_markdown(comparison: Comparison) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    runs = "\n".join(f"- `{esc(r.name)}`: task `{esc(r.task)}` · model `{esc(r.model)}` · judge `{esc(r.judge)}`"
                     f" · stopped at max_tokens: {esc(r.truncation or 'not known')}"
                     + (f" · judge check {esc(r.judge_check)}" if r.judge_check else "") for r in comparison.runs)
    if comparison.differences:
        runs += "\n\n**Not like for like:**\n" + "\n".join(f"- {esc(d)}" for d in comparison.differences)
    head = _header(comparison)
    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in cells) + " |" for cells in _body(comparison)]
    return (f"## Comparison by {comparison.by}: {comparison.metric}\n\n{runs}\n\n" + "\n".join(lines)
            + f"\n\n{comparison.method()}.\n")


def comparison_json(comparison: Comparison) -> str:
    return json.dumps(comparison.to_dict(), indent=2, ensure_ascii=False)


CSV_COLUMNS = ("by", "scenario", "group", "run", "model", "metric", "count", "total", "rate", "ci_low", "ci_high",
               "diff", "diff_low", "diff_high", "p", "p_adjusted", "correction", "significant",
               "stopped_at_max_tokens", "setup_differences")


def comparison_csv(comparison: Comparison) -> str:
    """Long format (one line per group and run), ready for pandas or a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in comparison.rows:
        for run, cell in zip(comparison.runs, row.cells):
            rate, d = cell.rate, cell.diff
            writer.writerow([
                comparison.by, row.scenario or "", row.group, run.name, run.model, comparison.metric,
                *(("",) * 5 if rate is None else (rate.count, rate.total, *map(_num, (rate.value, rate.low, rate.high)))),
                *(("",) * 4 if d is None else map(_num, (d.value, d.low, d.high, d.p))),
                "" if cell.p_adjusted is None else _num(cell.p_adjusted), comparison.correction,
                "" if d is None else str(cell.significant).lower(), run.truncation, "; ".join(comparison.differences),
            ])
    return buffer.getvalue()


def _num(value: float) -> str:
    return f"{value:.6g}"
