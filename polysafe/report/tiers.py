"""Per-tier aggregation for multilingual runs, with a paper's figures as reference columns.

A tier's figure is the plain mean of its languages' rates (the headline rate the judge declares), as multilingual
papers compute HRL/MRL/LRL. Next to it are the pooled counts of the tier with a Wilson 95% interval, and the tier
ratios (LRL/HRL, MRL/HRL). Per scenario, the average over the non-English languages and the adaptive any-language
rate follow (report/multilingual.py).

A paper's figures come from the benchmark's declaration stored with the run (report/declared.py). They appear only
for a scenario the benchmark judged comparable and, for a tier, the Avg or the adaptive attack, only when the run
covers the same languages as the paper's figure.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Sequence

from ..engine.store import ResultRow
from ..languages import LANGUAGES, TIER_NAMES, TIERS, tier_of
from ..types import UNSAFE_RATE, Metric
from .base import RENDERERS, ReportInput
from .declared import counts, rate_metric
from .metrics import Rate
from .multilingual import ScenarioSummary, scenario_summaries
from .setup import Setup, describe_setup

# One table of tier labels for every report (md, json, png, html): English / HRL / MRL / LRL.
TIER_LABELS: dict[str, str] = TIER_NAMES


def tier_label(tier: str) -> str:
    return TIER_LABELS.get(tier, tier)


def headline_metric(setup: Setup | None) -> Metric:
    """The rate that tiers, Avg and adaptive count: the judge's first declared rate metric."""
    declared = rate_metric(setup.description) if setup is not None and setup.description is not None else None
    return declared or UNSAFE_RATE


def comparable_reference(setup: Setup | None, scenario: str, key: str, languages: Sequence[str]) -> dict[str, float]:
    """The paper's figures for a cell (a language, tier, 'avg' or 'adaptive'), or {} unless the scenario's setup is
    comparable and the cell covers exactly the paper's languages for it."""
    if setup is None or setup.reference is None:
        return {}
    return setup.reference.cell(scenario, key, languages)


def shows_reference(setup: Setup | None) -> bool:
    return setup is not None and any(c.comparable for c in setup.comparability())


def reference_models(setup: Setup | None) -> tuple[str, ...]:
    return setup.reference.models if setup is not None and setup.reference is not None else ()


@dataclass(frozen=True)
class TierStats:
    scenario: str
    tier: str  # english | high | medium | low
    label: str  # English | HRL | MRL | LRL (TIER_LABELS)
    languages: tuple[str, ...]
    rate_mean: float  # plain mean of the languages' headline rates (the papers' tier figure)
    invalid_mean: float
    rate_pooled: Rate  # all the tier's counted responses together, with a Wilson interval
    invalid_pooled: Rate
    reference: dict[str, float] = field(default_factory=dict)  # paper model -> %, only when comparable


@dataclass(frozen=True)
class TierReport:
    tiers: list[TierStats]
    ratios: dict[str, dict[str, float | None]]  # scenario -> {"LRL/HRL": x, "MRL/HRL": y}
    scenarios: list[ScenarioSummary] = field(default_factory=list)  # Avg (non-en) and adaptive, per scenario
    setup: Setup | None = None
    metric: Metric = UNSAFE_RATE

    def to_dict(self) -> dict:
        data = asdict(self)
        data["setup"] = self.setup.to_dict() if self.setup else None
        data["tier_labels"] = dict(TIER_LABELS)
        data["metric"] = self.metric.to_dict()
        return data


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _rates(rows: Sequence[ResultRow], metric: Metric) -> tuple[Rate, Rate]:
    """(headline rate, invalid rate) over the rows the metric counts."""
    hits = [(counts(metric, r), r.label) for r in rows]
    counted = [(hit, label) for hit, label in hits if hit is not None]
    return (Rate.of(sum(bool(h) for h, _ in counted), len(counted)),
            Rate.of(sum(label == "invalid" for _, label in counted), len(counted)))


def tier_report(rows: Sequence[ResultRow], setup: Setup | None = None) -> TierReport:
    """Tiers, ratios and per-scenario summaries; the paper's figures only where `setup` is comparable."""
    metric = headline_metric(setup)
    by_scenario: dict[str, dict[str, list[ResultRow]]] = {}
    for row in rows:
        by_scenario.setdefault(row.scenario, {}).setdefault(row.language, []).append(row)
    tiers: list[TierStats] = []
    ratios: dict[str, dict[str, float | None]] = {}
    for scenario, by_language in by_scenario.items():
        means: dict[str, float] = {}
        for tier in TIERS:
            codes = tuple(code for code in by_language if tier_of(code) == tier)
            stats = [(code, *_rates(by_language[code], metric)) for code in codes]
            stats = [s for s in stats if s[1].total]
            if not stats:
                continue
            pooled, pooled_invalid = _rates([row for code, *_ in stats for row in by_language[code]], metric)
            means[tier] = _mean([rate.value for _, rate, _ in stats])
            languages = tuple(code for code, *_ in stats)
            tiers.append(TierStats(
                scenario=scenario, tier=tier, label=tier_label(tier), languages=languages, rate_mean=means[tier],
                invalid_mean=_mean([invalid.value for *_, invalid in stats]), rate_pooled=pooled,
                invalid_pooled=pooled_invalid,
                reference=comparable_reference(setup, scenario, "en" if tier == "english" else tier, languages),
            ))
        high = means.get("high")
        ratios[scenario] = {
            "LRL/HRL": (means["low"] / high) if high and "low" in means else None,
            "MRL/HRL": (means["medium"] / high) if high and "medium" in means else None,
        }
    return TierReport(tiers, ratios, summaries_with_reference(rows, setup), setup, metric)


def summaries_with_reference(rows: Sequence[ResultRow], setup: Setup | None) -> list[ScenarioSummary]:
    """Avg (non-en) and adaptive per scenario, with the paper's figures where comparable."""
    return [replace(s, reference_avg=comparable_reference(setup, s.scenario, "avg", s.avg.languages if s.avg else ()),
                    reference_adaptive=comparable_reference(setup, s.scenario, "adaptive",
                                                            s.adaptive.languages if s.adaptive else ()))
            for s in scenario_summaries(rows, headline_metric(setup))]


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _refs(reference: dict[str, float], models: Sequence[str]) -> list[str]:
    return [f"{reference[m]:.2f}" if m in reference else "" for m in models]


def tiers_markdown(report: TierReport) -> str:
    with_reference = shows_reference(report.setup)
    models = reference_models(report.setup) if with_reference else ()
    name = report.metric.name
    head = ["scenario", "tier", "languages", f"{name} % (mean)", f"{name} % pooled [95% CI]", "invalid % (mean)",
            *(f"{m} (paper)" for m in models)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for t in report.tiers:
        lines.append("| " + " | ".join([t.scenario, t.label, ",".join(t.languages), f"{100 * t.rate_mean:.1f}",
                                         t.rate_pooled.pct(), f"{100 * t.invalid_mean:.1f}",
                                         *_refs(t.reference, models)]) + " |")
    ratio_lines = [f"- {scenario}: LRL/HRL {_ratio(r['LRL/HRL'])}, MRL/HRL {_ratio(r['MRL/HRL'])}"
                   + (_paper_ratio(report, scenario) if _ratio_comparable(report, scenario) else "")
                   for scenario, r in report.ratios.items()]
    out = "\n".join(lines) + f"\n\nTier ratios ({name}, tier means):\n" + "\n".join(ratio_lines)
    if any(s.avg or s.adaptive for s in report.scenarios):
        out += "\n\n" + summaries_markdown(report.scenarios, models, name)
    setup = report.setup
    if not with_reference and setup is not None and setup.reference is not None:
        out += f"\n\nThe paper's figures ({setup.reference.source}) are hidden: no scenario's setup is comparable (see Setup)."
    return out


def summaries_markdown(summaries: Sequence[ScenarioSummary], models: Sequence[str] = (), name: str = "unsafe rate") -> str:
    """Per scenario: Avg over the non-English languages and the adaptive any-language rate."""
    paper_head = [f"{m} {what} (paper)" for what in ("Avg", "adaptive") for m in models]
    head = ["scenario", f"Avg non-en {name} % [95% CI]", "languages (Avg)", f"adaptive {name} % [95% CI]", "prompts",
            "languages (adaptive)", *paper_head]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for s in summaries:
        adaptive = s.adaptive
        cells = [s.scenario, s.avg.pct() if s.avg else "n/a", ",".join(s.avg.languages) if s.avg else "",
                 adaptive.rate.pct() if adaptive else "n/a",
                 f"{adaptive.rate.count}/{adaptive.rate.total}" if adaptive else "",
                 ",".join(adaptive.languages) if adaptive else ""]
        if models:
            cells += _refs(s.reference_avg, models) + _refs(s.reference_adaptive, models)
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"Avg = plain mean of the non-English languages' {name}s; 95% CI: Wilson at the "
             "effective sample size of a prompt-clustered delta-method variance (languages share prompts).",
             f"adaptive = share of prompts counted by the {name} in ANY of the languages (prompts present in all of "
             "them; Wilson 95%)."]
    for s in summaries:
        if s.adaptive and (s.adaptive.undetermined or s.adaptive.not_in_all_languages):
            notes.append(f"{s.scenario}: {s.adaptive.undetermined} prompts undetermined (error or pending, none "
                         f"counted) and {s.adaptive.not_in_all_languages} not in every language, left out of adaptive.")
    return "Per scenario:\n\n" + "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes)


def _ratio_comparable(report: TierReport, scenario: str) -> bool:
    tiers = {t.tier: t for t in report.tiers if t.scenario == scenario}
    return all(tier in tiers and tiers[tier].reference for tier in ("high", "low"))


def _paper_ratio(report: TierReport, scenario: str) -> str:
    ratios = report.setup.reference.ratios.get(scenario, {}) if report.setup and report.setup.reference else {}
    parts = [f"{model} {value:.2f}x" for model, value in ratios.items()]
    return f" (paper LRL/HRL: {', '.join(parts)})" if parts else ""


def is_multilingual(rows: Sequence[ResultRow]) -> bool:
    return len({r.language for r in rows if r.language in LANGUAGES}) > 1


def report_setup(data: ReportInput) -> Setup:
    return describe_setup(data.run, data.rows)


@RENDERERS.register("tiers", summary="Markdown: setup, headline/invalid rate per resource tier, Avg, adaptive attack, paper reference.")
def _tiers_md():
    def render(data: ReportInput) -> str:
        setup = report_setup(data)
        return (f"## {data.run.name}: resource tiers\n\n{setup.markdown()}\n\n"
                + tiers_markdown(tier_report(data.rows, setup)))

    return render


@RENDERERS.register("tiers-json", summary="JSON: setup, the tier table, ratios, Avg and adaptive, machine-readable.")
def _tiers_json():
    def render(data: ReportInput) -> str:
        return json.dumps({"run": data.run.name, "task": data.run.task, "model": data.run.model, "judge": data.run.judge,
                           **tier_report(data.rows, report_setup(data)).to_dict()}, indent=2, ensure_ascii=False)

    return render
