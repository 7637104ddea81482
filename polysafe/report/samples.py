"""Runs with K sampled answers per prompt (`--samples K`): the per-sample rate, the any-of-K rate and the spread.

- **Per-sample rate**: answers the judge's rate metric counts / answers it judged (its declared label, or a score
  at its threshold), over every sample of every prompt. A prompt's K answers are correlated, so the 95% interval
  takes prompts as clusters (the delta-method linearisation of the multilingual Avg):
  e_j = y_j - p * n_j for prompt j with y_j unsafe of n_j judged answers, Var(p) = m/(m-1) * sum e_j^2 / N^2,
  the effective size n_eff = p(1-p)/Var kept between m prompts and N answers (m when p is 0 or 1), and Wilson's
  interval at (p, n_eff).
- **Any-of-K**: a prompt counts when any of its K answers counts (jailbreak papers' "any of k"). A prompt with
  no counted answer and a missing verdict (error or pending) is undetermined and left out. Wilson
  95% over the determined prompts.
- **Spread**: the rate of each sample index (sample i was drawn with seed + i) with its lowest, highest and
  standard deviation: how much a single-seed figure could move.
A prompt here is one (scenario, chain, language, prompt id).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Sequence

from ..engine.store import ResultRow
from ..types import UNSAFE_RATE, Metric
from .declared import counts
from .metrics import Rate


@dataclass(frozen=True)
class ClusteredRate:
    value: float
    low: float
    high: float
    answers: int  # judged answers
    prompts: int  # clusters
    effective_n: float

    def pct(self) -> str:
        if not self.answers:
            return "n/a"
        return f"{100 * self.value:.1f} [{100 * self.low:.1f}, {100 * self.high:.1f}]"


@dataclass(frozen=True)
class SampleStats:
    group: str  # a scenario, or "all"
    samples: int  # K
    per_sample: ClusteredRate
    any_of_k: Rate
    undetermined: int
    by_sample: tuple[Rate, ...]  # the rate of sample 0, 1, ..., K-1

    @property
    def spread(self) -> tuple[float, float, float] | None:
        """(lowest, highest, standard deviation) of the per-index rates; None with fewer than two judged."""
        values = [r.value for r in self.by_sample if r.total]
        return (min(values), max(values), statistics.stdev(values)) if len(values) > 1 else None

    def to_dict(self) -> dict:
        spread = self.spread
        return {**asdict(self), "spread": None if spread is None else
                {"lowest": spread[0], "highest": spread[1], "sd": spread[2]}}


def is_sampled(rows: Sequence[ResultRow]) -> bool:
    return any(r.sample for r in rows)


def clustered_rate(clusters: Sequence[tuple[int, int]]) -> ClusteredRate:
    """(unsafe, judged) per prompt -> the pooled rate with its prompt-clustered Wilson interval."""
    clusters = [(y, n) for y, n in clusters if n]
    total, m = sum(n for _, n in clusters), len(clusters)
    if not total:
        return ClusteredRate(0.0, 0.0, 0.0, 0, 0, 0.0)
    p = sum(y for y, _ in clusters) / total
    if m < 2 or p in (0.0, 1.0):
        n_eff = float(m)
    else:
        var = m / (m - 1) * sum((y - p * n) ** 2 for y, n in clusters) / total ** 2
        n_eff = float(total) if var <= 0 else min(float(total), max(float(m), p * (1 - p) / var))
    low, high = _wilson_at(p, n_eff)
    return ClusteredRate(p, low, high, total, m, n_eff)


def _wilson_at(p: float, n: float) -> tuple[float, float]:
    if n <= 0:
        return (0.0, 0.0)
    z = 1.959963984540054
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def sample_stats(rows: Sequence[ResultRow], group: str = "all", metric: Metric = UNSAFE_RATE) -> SampleStats:
    samples = max((r.sample for r in rows), default=0) + 1
    prompts: dict[tuple, list[ResultRow]] = {}
    for row in rows:
        prompts.setdefault((row.scenario, row.chain, row.language, row.prompt_id), []).append(row)
    clusters, hits, undetermined = [], 0, 0
    for answers in prompts.values():
        judged = [hit for hit in (counts(metric, r) for r in answers) if hit is not None]
        unsafe = sum(judged)
        clusters.append((unsafe, len(judged)))
        if unsafe:
            hits += 1
        elif len(judged) < samples:
            undetermined += 1
    determined = len(prompts) - undetermined
    by_sample = []
    for index in range(samples):
        judged = [hit for hit in (counts(metric, r) for r in rows if r.sample == index) if hit is not None]
        by_sample.append(Rate.of(sum(judged), len(judged)))
    return SampleStats(group, samples, clustered_rate(clusters), Rate.of(hits, determined), undetermined,
                       tuple(by_sample))


def sample_summaries(rows: Sequence[ResultRow], metric: Metric | None = None) -> list[SampleStats]:
    """One summary per scenario, then all of them together when there are several; `metric`: the judge's rate
    metric (a label rate or a share at a threshold), the unsafe rate when it declares none."""
    metric = metric or UNSAFE_RATE
    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    out = [sample_stats([r for r in rows if r.scenario == s], s, metric) for s in scenarios]
    if len(scenarios) > 1:
        out.append(sample_stats(rows, "all", metric))
    return out


def samples_markdown(summaries: Sequence[SampleStats], seed: int | None = None, metric: Metric | None = None) -> str:
    k = summaries[0].samples if summaries else 0
    name = (metric or UNSAFE_RATE).name
    seeds = f", seeds {seed}..{seed + k - 1}" if seed is not None else ""
    head = (f"### Sampling: {k} answers per prompt{seeds}\n\nper-sample {name}: over every answer, 95% CI "
            f"clustered by prompt; any-of-{k}: prompts with at least one answer counted by it (Wilson 95%); spread: "
            "the rates of the sample indexes (lowest–highest, sd).\n")
    lines = [f"| scenario | per-sample rate % | any-of-{k} % | prompts | spread % (sd) |", "|---|---|---|---|---|"]
    for s in summaries:
        spread = s.spread
        spread_text = "n/a" if spread is None else f"{100 * spread[0]:.1f}–{100 * spread[1]:.1f} ({100 * spread[2]:.1f})"
        undetermined = f" ({s.undetermined} undetermined)" if s.undetermined else ""
        lines.append(f"| {s.group} | {s.per_sample.pct()} | {s.any_of_k.pct()} | {s.any_of_k.total}{undetermined} "
                     f"| {spread_text} |")
    return head + "\n" + "\n".join(lines)
