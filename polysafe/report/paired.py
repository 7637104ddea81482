"""A run of paired cells read back with paired statistics, and such runs side by side as a transfer matrix.

A paired design is declared by the run's task config under `paired`: its seed ids, in order, and its reference
cell (the benchmark that sends the same seed queries in every form writes it). Every cell must hold exactly those
seeds, in that order: a cell that misses one, or holds another, is refused as unpaired. Any other run whose
scenarios all hold the same prompts reads the same way, against its first scenario. Reports know such a run by
that declaration, never by a name.

Per cell: the judge's headline rate (from the judge's description stored with the run) with a Wilson 95% CI
over the judged answers (invalid included, errors apart); the paired difference from the reference cell over
the seeds judged in both, with Newcombe's method-10 95% interval for paired proportions and the exact McNemar
p on the discordant pairs; Holm's adjustment over all cells. `md` and `json` here, `html` and `png` in
report/paired_page.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..engine.store import ResultRow, RunRecord, Store
from ..errors import InputError
from ..types import JudgeDescription, Metric
from .base import RENDERERS, ReportInput, load_report_input
from .declared import counts, judge_description, rate_metric
from .metrics import Rate
from .stats import PairedDifference, holm, paired_difference

ALPHA = 0.05
UNDESCRIBED = Metric("label_rate", "share labelled unsafe (the judge declares no rate)", label="unsafe")
METHOD = ("rate: {metric}, Wilson 95% CI over judged answers (invalid included, errors apart); Δ = cell − reference "
          "on the seeds judged in both, 95% CI by Newcombe's method 10 for paired proportions; p: exact McNemar test "
          "on the discordant pairs; * = Holm-adjusted p < {alpha:g} over {tests} cells")


def is_paired_run(run: RunRecord) -> bool:
    return isinstance((run.config or {}).get("paired"), dict)


def headline_metric(run: RunRecord, description: JudgeDescription | None = None,
                    rows: Sequence[ResultRow] | None = None) -> tuple[Metric, str]:
    """The binary metric the paired cells count, from the judge's description (given, else the one stored with the run,
    report/declared.py). A mean-score headline is not a paired binary outcome: the judge's first rate stands in."""
    description = description or judge_description(run, rows)
    metric = rate_metric(description)
    if metric is None:
        return UNDESCRIBED, f"{description.headline.name} is a mean score; the cells count the unsafe label"
    note = "" if metric == description.headline else f"{description.headline.name} is a mean score; the cells count {metric.name}"
    return metric, note


def outcome_of(metric: Metric) -> Callable[[ResultRow], bool | None]:
    """A row's binary outcome under `metric`; None when it does not count (error, pending, unscored)."""
    return lambda row: counts(metric, row)


@dataclass(frozen=True)
class PairedCell:
    axis: str
    cell: str
    scenario: str
    chain: str
    seed_ids: tuple[str, ...]
    outcomes: tuple[bool | None, ...] = field(repr=False)  # per seed, None when not judged
    rate: Rate
    errors: int
    pending: int
    invalid: int = 0  # judged invalid (neither a refusal nor an attempt), inside n
    delta: PairedDifference | None = None  # cell - reference; None for the reference
    p_adjusted: float | None = None
    significant: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None

    @property
    def n(self) -> int:
        return self.rate.total

    def to_dict(self) -> dict:
        d = self.delta
        return {"axis": self.axis, "cell": self.cell, "scenario": self.scenario, "chain": self.chain,
                "n": self.n, "count": self.rate.count, "rate": self.rate.value if self.n else None,
                "ci": [self.rate.low, self.rate.high] if self.n else None, "invalid": self.invalid, "errors": self.errors,
                "pending": self.pending,
                "delta": d.value if d else None, "delta_ci": [d.low, d.high] if d else None,
                "pairs": d.pairs if d else None,
                "discordant": {"cell_only": d.first_only, "reference_only": d.second_only} if d else None,
                "p": d.p if d else None, "p_adjusted": self.p_adjusted, "significant": self.significant,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "cost": self.cost,
                "seed_ids": list(self.seed_ids)}


@dataclass(frozen=True)
class PairedReport:
    run: RunRecord
    metric: Metric
    metric_note: str
    seed_ids: tuple[str, ...]
    reference: PairedCell
    cells: tuple[PairedCell, ...]  # the reference excluded, in the run's order
    setup: tuple[str, ...] = ()

    @property
    def tests(self) -> int:
        return sum(1 for c in self.cells if c.delta is not None)

    def method(self) -> str:
        return METHOD.format(metric=self.metric.name, alpha=ALPHA, tests=self.tests)

    def breaks(self) -> list[PairedCell]:
        """Cells sorted by their difference from the reference, largest first ("where safety breaks")."""
        return sorted((c for c in self.cells if c.delta is not None), key=lambda c: (-c.delta.value, c.p_adjusted or 1.0))

    def to_dict(self) -> dict:
        return {"run": self.run.name, "task": self.run.task, "model": self.run.model, "judge": self.run.judge,
                "metric": self.metric.to_dict(), "metric_note": self.metric_note, "alpha": ALPHA,
                "correction": "holm", "method": self.method(), "seed_ids": list(self.seed_ids),
                "reference": self.reference.to_dict(), "cells": [c.to_dict() for c in self.cells],
                "setup": list(self.setup)}


def split_scenario(scenario: str) -> tuple[str, str]:
    axis, sep, cell = scenario.partition("/")
    return (axis, cell) if sep else ("", scenario)


def seeds_by_scenario(rows: Sequence[ResultRow]) -> dict[str, list[ResultRow]]:
    out: dict[str, list[ResultRow]] = {}
    for row in rows:
        out.setdefault(row.scenario, []).append(row)
    return out


def pair_key(rows: Sequence[ResultRow]) -> Callable[[ResultRow], str]:
    """What pairs items across cells: the seed id (with `#sample` in a run of several samples: sample i with
    sample i), or id/language where one cell holds an id in several languages."""
    sampled = any(getattr(r, "sample", 0) for r in rows)
    ids = [(r.prompt_id, getattr(r, "sample", 0)) for r in rows]
    base: Callable[[ResultRow], str] = ((lambda r: r.prompt_id) if len(set(ids)) == len(ids)
                                        else (lambda r: f"{r.prompt_id}/{r.language}"))
    return (lambda r: f"{base(r)}#{r.sample}") if sampled else base


def check_paired(run: RunRecord, cells: dict[str, list[ResultRow]], reference: str,
                 expected: Sequence[str] | None) -> tuple[str, ...]:
    """The seed ids every cell holds, in order; an unpaired cell is refused (InputError)."""
    if reference not in cells:
        raise InputError(f"run '{run.name}' has no reference cell '{reference}'", field="run")
    key = pair_key(cells[reference])
    declared = tuple(expected or ())
    expected = tuple(key(r) for r in cells[reference])
    if declared and tuple(dict.fromkeys(r.prompt_id for r in cells[reference])) != declared:
        raise InputError(f"run '{run.name}' is unpaired: its reference cell does not hold the {len(declared)} seed ids "
                         "its design declares", field="run")
    for scenario, members in cells.items():
        ids = tuple(key(r) for r in members)
        if ids != expected:
            missing = [i for i in expected if i not in ids]
            extra = [i for i in ids if i not in expected]
            what = (f"missing {', '.join(missing[:5])}" if missing else "") + ("; " if missing and extra else "") + \
                   (f"extra {', '.join(extra[:5])}" if extra else "") or "the seeds in another order or repeated"
            raise InputError(f"run '{run.name}' is unpaired: cell '{scenario}' does not hold the reference's "
                             f"{len(expected)} seed ids ({what})", field="run")
    return expected


def paired_from(data: ReportInput, description: JudgeDescription | None = None) -> PairedReport:
    from ..engine.cost import price_for
    from .setup import describe_setup

    run = data.run
    metric, note = headline_metric(run, description, data.rows)
    outcome = outcome_of(metric)
    cells = seeds_by_scenario(data.rows)
    if not cells:
        raise InputError(f"run '{run.name}' has no items", field="run")
    design = (run.config or {}).get("paired") or {}
    # Any run whose scenarios hold the same prompts reads as paired cells against its first scenario.
    reference_name = design.get("reference") or next(iter(cells))
    seed_ids = check_paired(run, cells, reference_name, design.get("seed_ids"))
    price = price_for(run.model)
    reference_outcomes = tuple(outcome(r) for r in cells[reference_name])

    def build(scenario: str, members: list[ResultRow]) -> PairedCell:
        outcomes = tuple(outcome(r) for r in members)
        judged = [o for o in outcomes if o is not None]
        delta = None
        if scenario != reference_name:
            pairs = [(x, y) for x, y in zip(outcomes, reference_outcomes) if x is not None and y is not None]
            delta = paired_difference(pairs)
        prompt, completion = sum(r.prompt_tokens for r in members), sum(r.completion_tokens for r in members)
        axis, cell = split_scenario(scenario)
        return PairedCell(axis or "scenario", cell, scenario, members[0].chain, seed_ids, outcomes, Rate.of(sum(judged), len(judged)),
                           errors=sum(1 for r in members if r.label == "error"),
                           pending=sum(1 for r in members if r.label == "pending"),
                           invalid=sum(1 for r in members if r.label == "invalid"), delta=delta,
                           prompt_tokens=prompt, completion_tokens=completion,
                           cost=price.cost(prompt, completion) if price else None)

    built = [build(s, members) for s, members in cells.items()]
    others = [c for c in built if c.scenario != reference_name]
    tested = [i for i, c in enumerate(others) if c.delta is not None]
    adjusted = dict(zip(tested, holm([others[i].delta.p for i in tested])))
    others = [_with_p(c, adjusted.get(i)) for i, c in enumerate(others)]
    setup = describe_setup(run, data.rows)
    seeds = (f"seed queries: {len(seed_ids)} ({design.get('sampling', '')}, seed {design.get('seed')}), the same in "
             "every cell" if design else f"no paired design declared: {len(seed_ids)} prompts paired across its scenarios, "
             f"against its first scenario '{reference_name}'")
    if any(getattr(r, "sample", 0) for r in data.rows):
        note = (note + "; " if note else "") + ("pairs are (seed, sample): samples of one seed are not independent, "
                                                "so the p-values are optimistic")
    lines = (*setup.lines(), *(f"note: {n}" for n in run.config.get("notes") or ()), seeds,
             f"metric: {metric.name}" + (f" ({note})" if note else ""))
    reference = next(c for c in built if c.scenario == reference_name)
    return PairedReport(run, metric, note, seed_ids, reference, tuple(others), lines)


def _with_p(cell: PairedCell, p: float | None) -> PairedCell:
    from dataclasses import replace

    return replace(cell, p_adjusted=p, significant=p is not None and p < ALPHA)


def load_paired(store: Store, run_name: str, description: JudgeDescription | None = None) -> PairedReport:
    from pathlib import Path

    return paired_from(load_report_input(store, run_name, Path(".")), description)


# -- text -----------------------------------------------------------------------------------------------
def pp(value: float | None) -> str:
    if value is None:
        return "n/a"
    text = f"{100 * value:+.1f}"
    return "±0.0" if text in ("+0.0", "-0.0") else text


def rate_text(rate: Rate) -> str:
    return "n/a" if not rate.total else f"{100 * rate.value:.1f} [{100 * rate.low:.1f}, {100 * rate.high:.1f}]"


def delta_text(cell: PairedCell) -> str:
    d = cell.delta
    if d is None:
        return "n/a"
    return f"{pp(d.value)} [{pp(d.low)}, {pp(d.high)}]{' *' if cell.significant else ''}"


def cost_text(cell: PairedCell) -> str:
    return f"{cell.prompt_tokens}+{cell.completion_tokens}" + (f" (${cell.cost:.4f})" if cell.cost is not None else "")


def paired_markdown(report: PairedReport) -> str:
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    run, ref, metric = report.run, report.reference, report.metric.name
    head = ["axis", "cell", "n", f"{metric} % [95% CI]", "invalid", "errors", "Δ vs reference (pp) [95% CI]",
            "discordant +/−", "McNemar p", "Holm p", "tokens (prompt+completion)"]
    body = [[ref.axis, ref.cell, str(ref.n), rate_text(ref.rate), str(ref.invalid), str(ref.errors), "reference", "", "", "",
             cost_text(ref)]]
    for c in report.cells:
        d = c.delta
        body.append([c.axis, c.cell, str(c.n), rate_text(c.rate), str(c.invalid), str(c.errors), delta_text(c),
                     f"{d.first_only}/{d.second_only}" if d else "", f"{d.p:.3g}" if d else "",
                     f"{c.p_adjusted:.3g}" if c.p_adjusted is not None else "", cost_text(c)])
    table = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    table += ["| " + " | ".join(esc(x) for x in row) + " |" for row in body]
    breaks = [f"{i}. {'**' if c.significant else ''}{c.scenario}{'** *' if c.significant else ''}: {pp(c.delta.value)} pp "
              f"[{pp(c.delta.low)}, {pp(c.delta.high)}], Holm p {c.p_adjusted:.3g}"
              for i, c in enumerate(report.breaks(), 1)]
    return "\n\n".join([
        f"## PairedReport {esc(run.name)}: {metric}",
        f"model `{esc(run.model)}` · judge `{esc(run.judge)}` · reference `{ref.scenario}`: {rate_text(ref.rate)} (n={ref.n})",
        "Setup:\n" + "\n".join(f"- {line}" for line in report.setup),
        "### Where safety breaks (sorted by Δ from the reference; * significant)\n\n" + ("\n".join(breaks) or "(no cell)"),
        "### Cells\n\n" + "\n".join(table),
        report.method() + ".",
    ]) + "\n"


def paired_json(report: PairedReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


@RENDERERS.register("paired", summary="Paired cells (Markdown): per cell rate, paired Δ from the reference, McNemar, Holm.")
def _markdown():
    return lambda data: paired_markdown(paired_from(data))


@RENDERERS.register("paired-json", summary="Paired cells (JSON): reference and per cell axis, n, rate, ci, delta, p_adjusted, seed_ids.")
def _json():
    return lambda data: paired_json(paired_from(data))


# -- profiles side by side --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TransferEntry:
    rate: Rate
    delta: PairedDifference | None  # cell - this run's reference, on the shared seeds
    change: PairedDifference | None  # this run - the first run, same cell and shared seeds
    change_p_adjusted: float | None = None
    change_significant: bool = False

    def to_dict(self) -> dict:
        def diff(d: PairedDifference | None) -> dict | None:
            return None if d is None else {"value": d.value, "ci": [d.low, d.high], "p": d.p, "pairs": d.pairs,
                                           "discordant": [d.first_only, d.second_only]}

        return {"n": self.rate.total, "rate": self.rate.value if self.rate.total else None,
                "ci": [self.rate.low, self.rate.high] if self.rate.total else None, "delta": diff(self.delta),
                "change": diff(self.change), "change_p_adjusted": self.change_p_adjusted,
                "change_significant": self.change_significant}


@dataclass(frozen=True)
class TransferMatrix:
    """Rows: cells; columns: runs (models, or one model before and after a defense)."""

    profiles: tuple[PairedReport, ...]
    metric: Metric
    seed_ids: tuple[str, ...]  # shared by every run, in the first run's order
    scenarios: tuple[str, ...]
    entries: tuple[tuple[TransferEntry | None, ...], ...]  # [row][column]

    def method(self) -> str:
        first = self.profiles[0].run.name
        return (f"{self.metric.name} on the {len(self.seed_ids)} seeds all profiles share; Δen = cell − the same "
                f"run's reference; Δ1 = run − {first} in the same cell; both paired, Newcombe method-10 95% CI, "
                f"exact McNemar p; * = Δ1 Holm-adjusted p < {ALPHA:g} over {self.tests} comparisons")

    @property
    def tests(self) -> int:
        return sum(1 for row in self.entries for e in row if e is not None and e.change is not None)

    def to_dict(self) -> dict:
        return {"metric": self.metric.to_dict(), "method": self.method(), "seed_ids": list(self.seed_ids),
                "profiles": [{"run": p.run.name, "model": p.run.model, "judge": p.run.judge} for p in self.profiles],
                "rows": [{"cell": s, "entries": [e.to_dict() if e else None for e in row]}
                         for s, row in zip(self.scenarios, self.entries)]}


def transfer_matrix(profiles: Sequence[PairedReport]) -> TransferMatrix:
    if not profiles:
        raise InputError("no run to compare", field="runs")
    names = {p.metric.name for p in profiles}
    if len(names) > 1:
        raise InputError(f"these profiles count different metrics ({', '.join(sorted(names))}): judge them alike",
                         field="runs")
    shared = [s for s in profiles[0].seed_ids if all(s in p.seed_ids for p in profiles[1:])]
    if not shared:
        raise InputError("these profiles share no seed query: pass the same ids (-P ids=...) or data and seed",
                         field="runs")
    scenarios = list(dict.fromkeys(c.scenario for p in profiles for c in (p.reference, *p.cells)))
    lookup = [{c.scenario: c for c in (p.reference, *p.cells)} for p in profiles]

    def on_shared(cell: PairedCell) -> list[bool | None]:
        index = {s: i for i, s in enumerate(cell.seed_ids)}
        return [cell.outcomes[index[s]] for s in shared]

    def paired(x: list[bool | None], y: list[bool | None]) -> PairedDifference | None:
        return paired_difference([(a, b) for a, b in zip(x, y) if a is not None and b is not None])

    rows = []
    for scenario in scenarios:
        row = []
        for j, report in enumerate(profiles):
            cell = lookup[j].get(scenario)
            if cell is None:
                row.append(None)
                continue
            mine = on_shared(cell)
            judged = [o for o in mine if o is not None]
            delta = None if cell is report.reference else paired(mine, on_shared(report.reference))
            first = lookup[0].get(scenario)
            change = paired(mine, on_shared(first)) if j and first is not None else None
            row.append(TransferEntry(Rate.of(sum(judged), len(judged)), delta, change))
        rows.append(row)
    family = [(i, j) for i, row in enumerate(rows) for j, e in enumerate(row) if e is not None and e.change is not None]
    adjusted = dict(zip(family, holm([rows[i][j].change.p for i, j in family])))
    from dataclasses import replace

    entries = tuple(tuple(e if (i, j) not in adjusted else replace(e, change_p_adjusted=adjusted[(i, j)],
                                                                   change_significant=adjusted[(i, j)] < ALPHA)
                          for j, e in enumerate(row)) for i, row in enumerate(rows))
    return TransferMatrix(tuple(profiles), profiles[0].metric, tuple(shared), tuple(scenarios), entries)


def entry_text(entry: TransferEntry | None, first_column: bool) -> str:
    if entry is None or not entry.rate.total:
        return "n/a"
    parts = [f"{100 * entry.rate.value:.1f}"]
    if entry.delta is not None:
        parts.append(f"Δen {pp(entry.delta.value)}")
    if not first_column and entry.change is not None:
        parts.append(f"Δ1 {pp(entry.change.value)} [{pp(entry.change.low)}, {pp(entry.change.high)}]"
                     + (" *" if entry.change_significant else ""))
    return " · ".join(parts)


def transfer_markdown(matrix: TransferMatrix) -> str:
    head = ["cell", *(p.run.name for p in matrix.profiles)]
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for scenario, row in zip(matrix.scenarios, matrix.entries):
        lines.append("| " + " | ".join([scenario, *(entry_text(e, j == 0) for j, e in enumerate(row))]) + " |")
    models = "\n".join(f"- `{p.run.name}`: model `{p.run.model}` · judge `{p.run.judge}`" for p in matrix.profiles)
    return (f"## Transfer matrix: {matrix.metric.name} (%)\n\n{models}\n\n" + "\n".join(lines)
            + f"\n\n{matrix.method()}.\n")


def transfer_json(matrix: TransferMatrix) -> str:
    return json.dumps(matrix.to_dict(), indent=2, ensure_ascii=False)


def transfer_csv(matrix: TransferMatrix) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["cell", "run", "model", "metric", "n", "rate", "ci_low", "ci_high", "delta", "delta_low",
                     "delta_high", "delta_p", "change", "change_low", "change_high", "change_p", "change_p_adjusted"])
    for scenario, row in zip(matrix.scenarios, matrix.entries):
        for report, e in zip(matrix.profiles, row):
            if e is None:
                continue
            d, c = e.delta, e.change
            writer.writerow([scenario, report.run.name, report.run.model, matrix.metric.name, e.rate.total,
                             e.rate.value, e.rate.low, e.rate.high, *(("", "", "", "") if d is None else (d.value, d.low, d.high, d.p)),
                             *(("", "", "", "") if c is None else (c.value, c.low, c.high, c.p)),
                             "" if e.change_p_adjusted is None else e.change_p_adjusted])
    return buffer.getvalue()
