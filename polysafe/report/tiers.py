"""Per-tier aggregation for MultiJail-style runs, with the paper's figures as reference columns.

A tier's figure is the plain mean of its languages' rates, as the paper computes HRL/MRL/LRL. Next to it are
the pooled counts of the tier with a Wilson 95% interval, and the tier ratios (LRL/HRL, MRL/HRL) that the
paper headlines (about 3x for ChatGPT and GPT-4, unintentional).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Sequence

from ..data.languages import LANGUAGES, TIER_NAMES, TIERS, tier_of
from ..engine.store import ResultRow
from .base import RENDERERS, ReportInput
from .metrics import Rate, group_stats

# Table 1 of Deng et al. (ICLR 2024): unsafe rate in %, per language and tier.
PAPER_TABLE1: dict[tuple[str, str], dict[str, float]] = {
    ("ChatGPT", "unintentional"): {"en": 0.63, "zh": 2.22, "it": 2.86, "vi": 7.94, "high": 4.34, "ar": 6.03, "ko": 9.84,
                                   "th": 18.10, "medium": 11.32, "bn": 28.25, "sw": 7.94, "jv": 8.57, "low": 14.92, "avg": 10.19},
    ("GPT-4", "unintentional"): {"en": 0.95, "zh": 3.49, "it": 2.54, "vi": 4.76, "high": 3.60, "ar": 3.49, "ko": 3.81,
                                 "th": 5.08, "medium": 4.13, "bn": 12.70, "sw": 6.35, "jv": 11.43, "low": 10.16, "avg": 5.96},
    ("ChatGPT", "intentional"): {"en": 72.06, "zh": 81.27, "it": 83.17, "vi": 81.27, "high": 81.90, "ar": 82.54, "ko": 80.00,
                                 "th": 81.90, "medium": 81.48, "bn": 83.17, "sw": 83.49, "jv": 71.43, "low": 79.37, "avg": 80.92},
    ("GPT-4", "intentional"): {"en": 28.25, "zh": 41.90, "it": 44.44, "vi": 34.29, "high": 40.21, "ar": 29.84, "ko": 34.92,
                               "th": 46.67, "medium": 37.14, "bn": 38.41, "sw": 43.49, "jv": 52.38, "low": 44.76, "avg": 40.71},
}
REFERENCE_MODELS = ("ChatGPT", "GPT-4")


def paper_reference(scenario: str, key: str) -> dict[str, float]:
    """The paper's figures for a language code or tier name, by model; {} when the paper has none."""
    return {model: PAPER_TABLE1[(model, scenario)][key] for model in REFERENCE_MODELS if key in PAPER_TABLE1.get((model, scenario), {})}


@dataclass(frozen=True)
class TierStats:
    scenario: str
    tier: str  # baseline | high | medium | low
    languages: tuple[str, ...]
    unsafe_mean: float  # plain mean of the languages' unsafe rates (the paper's tier figure)
    invalid_mean: float
    unsafe_pooled: Rate  # all the tier's judged responses together, with a Wilson interval
    invalid_pooled: Rate
    reference: dict[str, float] = field(default_factory=dict)  # paper model -> unsafe % for this tier


@dataclass(frozen=True)
class TierReport:
    tiers: list[TierStats]
    ratios: dict[str, dict[str, float | None]]  # scenario -> {"LRL/HRL": x, "MRL/HRL": y}

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def tier_report(rows: Sequence[ResultRow]) -> TierReport:
    by_scenario: dict[str, dict[str, list[ResultRow]]] = {}
    for row in rows:
        by_scenario.setdefault(row.scenario, {}).setdefault(row.language, []).append(row)
    tiers: list[TierStats] = []
    ratios: dict[str, dict[str, float | None]] = {}
    for scenario, by_language in by_scenario.items():
        means: dict[str, float] = {}
        for tier in TIERS:
            codes = tuple(code for code in by_language if tier_of(code) == tier)
            stats = [group_stats((code,), by_language[code]) for code in codes]
            stats = [s for s in stats if s.judged]
            if not stats:
                continue
            pooled = [row for code in codes for row in by_language[code]]
            pooled_stats = group_stats((tier,), pooled)
            means[tier] = _mean([s.unsafe.value for s in stats])
            tiers.append(TierStats(
                scenario=scenario, tier=tier, languages=tuple(s.group[0] for s in stats), unsafe_mean=means[tier],
                invalid_mean=_mean([s.invalid.value for s in stats]), unsafe_pooled=pooled_stats.unsafe,
                invalid_pooled=pooled_stats.invalid, reference=paper_reference(scenario, "en" if tier == "baseline" else tier),
            ))
        high = means.get("high")
        ratios[scenario] = {
            "LRL/HRL": (means["low"] / high) if high and "low" in means else None,
            "MRL/HRL": (means["medium"] / high) if high and "medium" in means else None,
        }
    return TierReport(tiers, ratios)


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def tiers_markdown(report: TierReport) -> str:
    head = ["scenario", "tier", "languages", "unsafe % (mean)", "unsafe % pooled [95% CI]", "invalid % (mean)",
            *(f"{m} (paper)" for m in REFERENCE_MODELS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for t in report.tiers:
        refs = [f"{t.reference[m]:.2f}" if m in t.reference else "" for m in REFERENCE_MODELS]
        lines.append("| " + " | ".join([t.scenario, TIER_NAMES.get(t.tier, t.tier), ",".join(t.languages),
                                         f"{100 * t.unsafe_mean:.1f}", t.unsafe_pooled.pct(), f"{100 * t.invalid_mean:.1f}", *refs]) + " |")
    ratio_lines = [f"- {scenario}: LRL/HRL {_ratio(r['LRL/HRL'])}, MRL/HRL {_ratio(r['MRL/HRL'])}"
                   + _paper_ratio(scenario) for scenario, r in report.ratios.items()]
    return "\n".join(lines) + "\n\nTier ratios (unsafe, tier means):\n" + "\n".join(ratio_lines)


def _paper_ratio(scenario: str) -> str:
    parts = []
    for model in REFERENCE_MODELS:
        ref = PAPER_TABLE1.get((model, scenario))
        if ref:
            parts.append(f"{model} {ref['low'] / ref['high']:.2f}x")
    return f" (paper LRL/HRL: {', '.join(parts)})" if parts else ""


def is_multilingual(rows: Sequence[ResultRow]) -> bool:
    return len({r.language for r in rows if r.language in LANGUAGES}) > 1


@RENDERERS.register("tiers", summary="Markdown: unsafe/invalid rate per resource tier, tier ratios, paper reference.")
def _tiers_md():
    def render(data: ReportInput) -> str:
        return f"## {data.run.name}: resource tiers\n\n" + tiers_markdown(tier_report(data.rows))

    return render


@RENDERERS.register("tiers-json", summary="JSON: the tier table and ratios, machine-readable.")
def _tiers_json():
    def render(data: ReportInput) -> str:
        return json.dumps({"run": data.run.name, "task": data.run.task, "model": data.run.model, "judge": data.run.judge,
                           **tier_report(data.rows).to_dict()}, indent=2, ensure_ascii=False)

    return render
