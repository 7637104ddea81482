"""What a stored run declares about itself, as reports read it: its judge's description and its benchmark's
reference figures. Reports know plugins only through these declarations, never by their names.

- The judge's description (`Judge.describe().to_dict()`) is stored with the run by the runner. A run stored by an
  older polysafe has none: it is described from its data (see `engine.store_migrate.legacy_description`).
- The benchmark's declarations (`Benchmark.declare`: its reference figures with their comparability verdicts, how
  its prompts were translated) are stored with the run under `benchmark` when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..engine.store import ResultRow, RunRecord
from ..engine.store_migrate import LEGACY_SCALE, legacy_description
from ..types import JudgeDescription, Metric


def judge_description(run: RunRecord, rows: Sequence[ResultRow] | None = None) -> JudgeDescription:
    stored = (run.config or {}).get("judge_description")
    if stored:
        return JudgeDescription.from_dict(stored)
    return legacy_description(run.judge, any(r.scale == LEGACY_SCALE for r in rows or ()))


def rate_metric(description: JudgeDescription) -> Metric | None:
    """The first declared metric that is a rate (a label rate or a share at a threshold)."""
    return next((m for m in description.metrics if m.kind != "mean_score"), None)


def counts(metric: Metric, row: ResultRow) -> bool | None:
    """Whether a row counts towards a rate metric: True / False for a judged row, None when it is not counted
    (an error or pending item, or an unscored verdict for a threshold metric)."""
    if row.label not in ("safe", "unsafe", "invalid"):
        return None
    if metric.kind == "label_rate":
        return row.label == metric.label
    if row.score is None:
        return None
    return metric.threshold is not None and row.score >= metric.threshold


def rate_of(metric: Metric, rows: Sequence[ResultRow]):
    """The metric's rate over the rows it counts, with a Wilson 95% interval."""
    from .metrics import Rate

    hits = [hit for hit in (counts(metric, r) for r in rows) if hit is not None]
    return Rate.of(sum(hits), len(hits))


@dataclass(frozen=True)
class Comparability:
    scenario: str
    comparable: bool
    reasons: tuple[str, ...] = ()
    assumption: str | None = None  # what polysafe could not check itself

    def line(self) -> str:
        if not self.comparable:
            return f"{self.scenario}: not comparable with the paper: {'; '.join(self.reasons)}"
        return f"{self.scenario}: comparable with the paper's setup" + (f" ({self.assumption})" if self.assumption else "")


@dataclass(frozen=True)
class Reference:
    """A paper's figures as the benchmark declared them with the run.

    `figures[scenario][cell][model]`, in %, where a cell is a language code, a tier name, "avg" or "adaptive";
    `covers[cell]` lists the languages a cell's figure covers (a run's cell is comparable only with the same ones);
    `ratios[scenario][model]`: the paper's LRL/HRL ratio."""

    source: str
    models: tuple[str, ...]
    figures: dict[str, dict[str, dict[str, float]]]
    covers: dict[str, tuple[str, ...]]
    comparability: dict[str, Comparability]
    ratios: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Reference":
        return cls(source=data["source"], models=tuple(data.get("models") or ()), figures=data.get("figures") or {},
                   covers={k: tuple(v) for k, v in (data.get("covers") or {}).items()},
                   comparability={s: Comparability(s, bool(c["comparable"]), tuple(c.get("reasons") or ()),
                                                   c.get("assumption"))
                                  for s, c in (data.get("comparability") or {}).items()},
                   ratios=data.get("ratios") or {})

    def comparable(self, scenario: str) -> bool:
        verdict = self.comparability.get(scenario)
        return verdict is not None and verdict.comparable

    def cell(self, scenario: str, key: str, languages: Sequence[str]) -> dict[str, float]:
        """The paper's figures for a cell, or {} unless the scenario is comparable and the cell covers exactly the
        paper's languages for it."""
        if not self.comparable(scenario) or set(languages) != set(self.covers.get(key, ())):
            return {}
        return dict(self.figures.get(scenario, {}).get(key, {}))


def reference(run: RunRecord) -> Reference | None:
    declared = ((run.config or {}).get("benchmark") or {}).get("reference")
    return Reference.from_dict(declared) if declared else None
