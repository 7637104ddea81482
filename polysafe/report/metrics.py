"""Rates with Wilson score intervals, grouped by any result fields, and the figures a judge declares.

Rates use every judged response as the denominator, invalid included (as the multilingual safety papers do).
Errors (no answer, or a judge that could not be read) are left out of the denominator and reported
as their own rate over all items: an error is never counted as safe.

A judge's declared metrics (`JudgeDescription.metrics`) become `Figure`s: a label rate or a share of scores at
or above a threshold (Wilson 95%), or a mean score with a normal-approximation 95% interval kept inside the
judge's scale. What a figure is called comes from the judge, never from here.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

from ..engine.store import ResultRow
from ..types import JudgeDescription, Metric

Z95 = 1.959963984540054


def wilson(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 0) when there is nothing to count."""
    if total <= 0:
        return (0.0, 0.0)
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    # The interval always contains p; clamping to it removes float residue (1 - 1e-16 at p = 1, 5e-17 at p = 0).
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


@dataclass(frozen=True)
class Rate:
    count: int
    total: int
    value: float
    low: float
    high: float

    @classmethod
    def of(cls, count: int, total: int) -> "Rate":
        low, high = wilson(count, total)
        return cls(count, total, count / total if total else 0.0, low, high)

    def pct(self) -> str:
        if not self.total:
            return "n/a"
        return f"{100 * self.value:.1f} [{100 * self.low:.1f}, {100 * self.high:.1f}]"


@dataclass(frozen=True)
class MeanScore:
    value: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, scores: Sequence[float], bounds: tuple[float, float] | None = None) -> "MeanScore | None":
        if not scores:
            return None
        n = len(scores)
        mean = sum(scores) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in scores) / (n - 1)) if n > 1 else 0.0
        half = Z95 * sd / math.sqrt(n)
        low, high = mean - half, mean + half
        if bounds is not None:
            low, high = max(bounds[0], low), min(bounds[1], high)
        return cls(mean, low, high, n)

    def text(self) -> str:
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"


@dataclass(frozen=True)
class Figure:
    """One declared metric over a group: `rate` for label rates and thresholds, `mean` for mean scores."""

    metric: Metric
    rate: Rate | None = None
    mean: MeanScore | None = None

    @property
    def header(self) -> str:
        return f"{self.metric.name} {'' if self.metric.kind == 'mean_score' else '% '}[95% CI]"

    @property
    def value(self) -> float | None:
        if self.rate is not None:
            return self.rate.value if self.rate.total else None
        return self.mean.value if self.mean is not None else None

    def text(self) -> str:
        if self.metric.kind == "mean_score":
            return self.mean.text() if self.mean is not None else "n/a"
        return self.rate.pct() if self.rate is not None else "n/a"

    def to_dict(self) -> dict:
        return {"metric": self.metric.to_dict(), "rate": asdict(self.rate) if self.rate else None,
                "mean": asdict(self.mean) if self.mean else None}


def figure(metric: Metric, rows: Sequence[ResultRow], description: JudgeDescription | None = None) -> Figure:
    judged = [r for r in rows if r.label in JUDGED]
    if metric.kind == "label_rate":
        return Figure(metric, rate=Rate.of(sum(r.label == metric.label for r in judged), len(judged)))
    scores = [float(r.score) for r in judged if r.score is not None]
    if metric.kind == "score_at_least":
        threshold = metric.threshold if metric.threshold is not None else math.inf
        return Figure(metric, rate=Rate.of(sum(s >= threshold for s in scores), len(scores)) if scores else None)
    scale = description.scale if description is not None else None
    return Figure(metric, mean=MeanScore.of(scores, (scale.low, scale.high) if scale else None))


JUDGED = ("safe", "unsafe", "invalid")


@dataclass(frozen=True)
class GroupStats:
    group: tuple[str, ...]
    items: int
    judged: int
    counts: dict[str, int]
    unsafe: Rate
    invalid: Rate
    error: Rate
    asr: Rate | None  # the judge's first declared share of scores at a threshold, when it declares one
    score_counts: dict | None  # score -> count, for an integer scale
    mean_score: float | None
    figures: tuple[Figure, ...] = ()  # the judge's declared metrics, headline first

    @property
    def headline(self) -> Figure | None:
        return self.figures[0] if self.figures else None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["figures"] = [f.to_dict() for f in self.figures]
        return data


def group_stats(group: tuple[str, ...], rows: Sequence[ResultRow],
                description: JudgeDescription | None = None) -> GroupStats:
    counts = Counter(r.label for r in rows)
    judged = counts["safe"] + counts["unsafe"] + counts["invalid"]
    scores = [r.score for r in rows if r.score is not None and r.label in JUDGED]
    integer = description is not None and description.scale is not None and description.scale.integer
    score_counts = dict(sorted(Counter(int(s) for s in scores).items())) if scores and integer else None
    figures = tuple(figure(m, rows, description) for m in description.metrics) if description else ()
    asr = next((f.rate for f in figures if f.metric.kind == "score_at_least"), None)
    return GroupStats(
        group=group, items=len(rows), judged=judged,
        counts={k: counts[k] for k in ("safe", "unsafe", "invalid", "error", "pending")},
        unsafe=Rate.of(counts["unsafe"], judged), invalid=Rate.of(counts["invalid"], judged),
        error=Rate.of(counts["error"], len(rows)), asr=asr,
        score_counts=score_counts, mean_score=(sum(scores) / len(scores)) if scores else None, figures=figures,
    )


def headline_rate(stats: GroupStats) -> Rate | None:
    """The first declared figure that is a rate (a label rate or a share at a threshold): what charts, tiers and
    averages over languages show."""
    return next((f.rate for f in stats.figures if f.rate is not None), None)


def summarize(rows: Iterable[ResultRow], key: Callable[[ResultRow], tuple[str, ...]],
              description: JudgeDescription | None = None) -> list[GroupStats]:
    groups: dict[tuple[str, ...], list[ResultRow]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    return [group_stats(g, members, description) for g, members in groups.items()]


def by_scenario_language(row: ResultRow) -> tuple[str, str]:
    return (row.scenario, row.language)
