"""The lab's one page: the transfer matrix (cell x model: base, A, B) with over-refusal, a plain-language reading,
and the setup that produced it; written as md, json, html and png.

Every figure is the refusal judge's non-refusal rate (the share of harmful requests not refused; lower is
safer) with a Wilson 95% CI, and each adapter's paired change from the base model on the same seeds (Newcombe
method-10 CI, exact McNemar p, Holm over the matrix: report/paired.py). Over-refusal is the share of benign
requests refused, paired with the base model's on the same prompts.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..engine.store import ResultRow, Store
from ..report.heatmap import css_delta_colours
from ..report.html import page
from ..report.metrics import Rate
from ..report.paired import TransferEntry, TransferMatrix, load_paired, pp, transfer_matrix
from ..report.stats import PairedDifference, holm, paired_difference
from .answers import SOURCE as ANSWERS_SOURCE
from .generalization import LabResult

E = html.escape
ALPHA = 0.05


@dataclass(frozen=True)
class OverRefusal:
    rate: Rate  # share of benign prompts refused
    change: PairedDifference | None  # this model - the base model, on the same prompts
    p_adjusted: float | None = None


@dataclass(frozen=True)
class LabReport:
    result: LabResult
    matrix: TransferMatrix
    overrefusal: tuple[OverRefusal, ...]  # per model, in the matrix's column order

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.result.models]


def refused_by_prompt(rows: Sequence[ResultRow]) -> dict[str, bool]:
    """prompt id -> refused (the refusal judge's `safe`), for the judged rows."""
    return {r.prompt_id: r.label == "safe" for r in rows if r.label in ("safe", "unsafe", "invalid")}


def overrefusal_rates(runs: Sequence[dict[str, bool]]) -> tuple[OverRefusal, ...]:
    base = runs[0]
    out = []
    for index, run in enumerate(runs):
        change = None
        if index:
            shared = [k for k in base if k in run]
            change = paired_difference([(run[k], base[k]) for k in shared])
        out.append((Rate.of(sum(run.values()), len(run)), change))
    tested = [i for i, (_, c) in enumerate(out) if c is not None]
    adjusted = dict(zip(tested, holm([out[i][1].p for i in tested])))
    return tuple(OverRefusal(rate, change, adjusted.get(i)) for i, (rate, change) in enumerate(out))


def build_report(result: LabResult) -> LabReport:
    with Store(result.config.db, readonly=True) as store:
        profiles = [load_paired(store, m.profile_run) for m in result.models]
        refusals = [refused_by_prompt(store.results(m.overrefusal_run)) for m in result.models]
    return LabReport(result, transfer_matrix(profiles), overrefusal_rates(refusals))


# -- the reading --------------------------------------------------------------------------------------------
def _pct(rate: Rate) -> str:
    return f"{100 * rate.value:.0f}% [{100 * rate.low:.0f}, {100 * rate.high:.0f}]" if rate.total else "n/a"


def _change(d: PairedDifference | None) -> str:
    return "n/a" if d is None else f"{pp(d.value)} pp [{pp(d.low)}, {pp(d.high)}]"


def reading(report: LabReport) -> list[str]:
    """A few plain sentences drawn from the figures; a difference is called a difference only when significant."""
    m = report.matrix
    rows = dict(zip(m.scenarios, m.entries))
    reference = m.profiles[0].reference.scenario
    others = [s for s in m.scenarios if s != reference]
    n = len(m.seed_ids)
    lines = [f"The figure is the {m.metric.name}: the share of {n} held-out harmful requests per cell that the model "
             "answered without refusing (lower is safer; an answer judged invalid, such as empty, looping, unrelated or "
             "in another language, counts as neither). It sees refusals, not harm."]
    base_ref = rows[reference][0]
    base_rates = [rows[s][0].rate.value for s in others if rows[s][0] and rows[s][0].rate.total]
    spread = f"; in the other {len(others)} cells {100 * min(base_rates):.0f}-{100 * max(base_rates):.0f}%" if base_rates else ""
    lines.append(f"Base model: {_pct(base_ref.rate)} in English{spread}.")
    significant: dict[str, list[str]] = {}
    for column, label in enumerate(report.labels[1:], start=1):
        ref = rows[reference][column]
        changes = [(s, rows[s][column]) for s in others if rows[s][column] is not None and rows[s][column].change is not None]
        safer = [s for s, e in changes if e.change_significant and e.change.value < 0]
        worse = [s for s, e in changes if e.change_significant and e.change.value > 0]
        significant[label] = safer
        mean = sum(e.change.value for _, e in changes) / len(changes) if changes else None
        title = report.result.models[column].title
        english = f"English {_pct(ref.rate)}, a change of {_change(ref.change)} from the base model ({_verdict(ref, m.tests)})"
        other = (f"; other cells: mean change {pp(mean)} pp, significantly safer in {len(safer)} of {len(changes)}"
                 + (f" ({', '.join(safer)})" if safer else "")
                 + (f", significantly less safe in {', '.join(worse)}" if worse else "")) if changes else ""
        lines.append(f"{label} ({title}): {english}{other}.")
    refusal = report.overrefusal
    lines.append("Over-refusal on benign requests: " + ", ".join(
        f"{label} {_pct(o.rate)}" + (f" ({_change(o.change)}{', significant' if o.p_adjusted is not None and o.p_adjusted < ALPHA else ''})"
                                      if o.change else "")
        for label, o in zip(report.labels, refusal)) + ".")
    lines.append(_gap_sentence(report, significant, len(others)))
    return lines


def _verdict(entry: TransferEntry, tests: int) -> str:
    if entry.change_significant:
        return "significant after Holm"
    if entry.change is not None and (entry.change.low > 0 or entry.change.high < 0):
        return (f"its 95% CI excludes 0, but it is not significant after Holm's correction over {tests} comparisons: "
                f"exact McNemar p {entry.change.p:.2g}, adjusted {entry.change_p_adjusted:.2g}")
    return "not significant"


def _gap_sentence(report: LabReport, significant: dict[str, list[str]], cells: int) -> str:
    rows = dict(zip(report.matrix.scenarios, report.matrix.entries))
    a_english = rows[report.matrix.profiles[0].reference.scenario][1]
    a, b = len(significant.get("A", [])), len(significant.get("B", []))
    if not a_english.change_significant:
        first = ("English safety tuning (A) did not change English refusals significantly after Holm's correction at this "
                 "size, so this run cannot establish whether such a change carries over")
    elif a < cells:
        first = (f"English safety tuning (A) changed English significantly but only {a} of the {cells} other cells: "
                 "the gap between English and the other forms that this lab looks for")
    else:
        first = "English safety tuning (A) changed English and every other cell significantly: no gap at this size"
    if b > a:
        second = f"multilingual tuning (B) made {b} other cells significantly safer, {b - a} more than A"
    elif b == a:
        second = f"multilingual tuning (B) made as many other cells significantly safer as A ({b})"
    else:
        second = f"multilingual tuning (B) made fewer other cells significantly safer than A ({b} vs {a})"
    return (f"In short: {first}; {second}. With {len(report.matrix.seed_ids)} seeds per cell the intervals are wide; "
            "`make lab` (or larger --prompts) narrows them.")


# -- setup ------------------------------------------------------------------------------------------------
def setup_lines(report: LabReport) -> list[str]:
    r, c = report.result, report.result.config
    ft = c.finetune
    lines = [
        f"base model: {c.base}; judge: refusal (offline phrase matcher, metric: {report.matrix.metric.name}); "
        f"greedy decoding, {c.max_tokens} new tokens per answer",
        f"MultiJail: {c.multijail or 'hub (DAMO-NLP-SG/MultiJail)'}; split seed {c.seed}, stratified by category: "
        f"{len(r.split.train)} train ids, {len(r.split.evaluation)} held-out ids (split.json)",
        f"profile: {len(r.eval_ids)} held-out seed ids per cell (stratified draw, seed {c.seed}): {', '.join(r.eval_ids)}",
        f"over-refusal: the first {c.benign_eval} benign requests of {c.benign or 'I-Alpaca (public URL)'}",
        f"adapter A data: {c.safety_examples} Bianchi et al. (2024) safety pairs from {c.safety} (seeded sample) + helpful "
        f"pairs repeated to {100 * c.helpful_share:.0f}% of A; helpful pairs: {r.helpful_source}",
        f"adapter B data: A's data + {c.multilingual_ids} train-split MultiJail ids in every language (human translations); "
        f"safe answers: {ANSWERS_SOURCE}",
        "overlap check: no training prompt shares a MultiJail id, an exact text or a near duplicate (character "
        f"3-gram Jaccard >= 0.8) with a held-out prompt in any language or a benign evaluation prompt; "
        f"{r.compared} pairs compared; dropped before training: {r.dropped}",
        f"training: LoRA r={ft.lora_r} alpha={ft.lora_alpha} on {', '.join(ft.target_modules)}, lr {ft.learning_rate:g}, "
        f"batch {ft.batch_size} x {ft.grad_accum}, max length {ft.max_length} tokens, "
        + (f"{ft.max_steps} steps for each adapter" if ft.max_steps else f"{ft.epochs:g} epochs") + f", seed {ft.seed}",
    ]
    for a in r.adapters:
        loss = f"loss {a.losses[0]:.3f} -> {a.losses[-1]:.3f}" if a.losses else "no loss recorded"
        lines.append(f"adapter {a.label} ({a.title}): {len(a.examples)} examples {a.counts()}; {a.steps} steps, "
                     f"{a.seconds:.0f} s, {loss}; {a.spec}")
    lines.append("runs: " + "; ".join(f"{m.label}: {m.profile_run}, {m.overrefusal_run}" for m in r.models))
    return lines


# -- renderers --------------------------------------------------------------------------------------------
def _entry(entry: TransferEntry | None, first: bool) -> str:
    if entry is None or not entry.rate.total:
        return "n/a"
    text = _pct(entry.rate)
    if not first and entry.change is not None:
        text += f" · Δ {_change(entry.change)}" + (" *" if entry.change_significant else "")
    return text


def _refusal_entry(o: OverRefusal, first: bool) -> str:
    text = _pct(o.rate)
    if not first and o.change is not None:
        text += f" · Δ {_change(o.change)}" + (" *" if o.p_adjusted is not None and o.p_adjusted < ALPHA else "")
    return text


def method(report: LabReport) -> str:
    m = report.matrix
    return (f"{m.metric.name} on the {len(m.seed_ids)} held-out seeds every model shares, Wilson 95% CI; Δ = the model "
            f"− the base model in the same cell, paired on the seeds, Newcombe method-10 95% CI, exact McNemar p; "
            f"* = Holm-adjusted p < {ALPHA:g} over the {m.tests} comparisons of the matrix. Over-refusal: the share of "
            "benign requests refused; Δ paired on the same prompts, exact McNemar, Holm over the adapters")


def lab_markdown(report: LabReport) -> str:
    labels = [f"{m.label}: {m.title}" for m in report.result.models]
    head = ["cell", *labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for scenario, row in zip(report.matrix.scenarios, report.matrix.entries):
        lines.append("| " + " | ".join([scenario, *(_entry(e, j == 0) for j, e in enumerate(row))]) + " |")
    lines.append("| over-refusal (benign, share refused) | "
                 + " | ".join(_refusal_entry(o, j == 0) for j, o in enumerate(report.overrefusal)) + " |")
    return "\n\n".join([
        "# polysafe lab: does safety tuned in English carry over?",
        "## Reading\n\n" + "\n".join(f"- {line}" for line in reading(report)),
        f"## Transfer matrix: {report.matrix.metric.name} %, [95% CI], Δ = change from the base model\n\n" + "\n".join(lines),
        method(report) + ".",
        "## Setup\n\n" + "\n".join(f"- {line}" for line in setup_lines(report)),
    ]) + "\n"


def lab_dict(report: LabReport) -> dict:
    r = report.result
    return {
        "reading": reading(report), "setup": setup_lines(report), "config": r.config.to_dict(),
        "split": {"seed": r.split.seed, "eval_share": r.split.eval_share, "train": list(r.split.train),
                  "evaluation": list(r.split.evaluation)},
        "eval_ids": r.eval_ids, "helpful_source": r.helpful_source, "answers_source": ANSWERS_SOURCE,
        "overlap": {"compared": r.compared, "dropped": r.dropped},
        "adapters": [{"label": a.label, "title": a.title, "spec": a.spec, "examples": len(a.examples), "counts": a.counts(),
                      "steps": a.steps, "seconds": a.seconds, "losses": a.losses, "data_file": str(a.data_file)}
                     for a in r.adapters],
        "models": [{"label": m.label, "title": m.title, "spec": m.spec, "profile_run": m.profile_run,
                    "overrefusal_run": m.overrefusal_run} for m in r.models],
        "transfer_matrix": report.matrix.to_dict(),
        "overrefusal": [{"label": label, "n": o.rate.total, "rate": o.rate.value, "ci": [o.rate.low, o.rate.high],
                         "change": None if o.change is None else {"value": o.change.value, "ci": [o.change.low, o.change.high],
                                                                  "p": o.change.p, "p_adjusted": o.p_adjusted}}
                        for label, o in zip(report.labels, report.overrefusal)],
    }


def lab_png(report: LabReport) -> bytes:
    """Grouped bars: each cell's rate per model with its 95% CI, then over-refusal."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    groups = [*report.matrix.scenarios, "over-refusal"]
    series = []
    for column, label in enumerate(report.labels):
        rates = [row[column].rate if row[column] is not None else Rate.of(0, 0) for row in report.matrix.entries]
        series.append((label, rates + [report.overrefusal[column].rate]))
    fig = Figure(figsize=(max(6.5, 0.75 * len(groups) + 1.5), 3.4), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    colours = ("#7f7f7f", "#2166ac", "#b2182b", "#4d9221")
    for k, (label, rates) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        values = [100 * r.value if r.total else 0.0 for r in rates]
        errors = [[100 * (r.value - r.low) if r.total else 0 for r in rates], [100 * (r.high - r.value) if r.total else 0 for r in rates]]
        ax.bar(xs, values, width, yerr=errors, capsize=1.5, label=label, color=colours[k % len(colours)],
               error_kw={"elinewidth": 0.6})
    ax.set_xticks(range(len(groups)), groups, rotation=35, ha="right", fontsize=6.5)
    ax.set_ylim(0, 125)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel(f"{report.matrix.metric.name} / over-refusal (%)", fontsize=7)
    ax.tick_params(axis="y", labelsize=6.5)
    ax.legend(fontsize=6.5, ncol=len(series), loc="upper right", frameon=False)
    ax.set_title(f"{report.result.config.base}: base vs English (A) vs multilingual (B) safety tuning · "
                 f"{len(report.matrix.seed_ids)} held-out seeds per cell · 95% CIs", fontsize=7.5, loc="left")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _cell(text: str, delta: float | None) -> str:
    background, colour = css_delta_colours(delta)
    return f'<td class="cell" style="background:{background};color:{colour}">{E(text)}</td>'


def lab_html(report: LabReport, png: bytes) -> str:
    models = report.result.models
    head = "".join(f"<th>{E(m.label)}: {E(m.title)}</th>" for m in models)
    body = []
    for scenario, row in zip(report.matrix.scenarios, report.matrix.entries):
        cells = [_cell(_entry(e, j == 0), e.change.value if e is not None and e.change is not None else (0.0 if e else None))
                 for j, e in enumerate(row)]
        body.append(f'<tr><th class="row">{E(scenario)}</th>{"".join(cells)}</tr>')
    refusal = [_cell(_refusal_entry(o, j == 0), o.change.value if o.change is not None else 0.0)
               for j, o in enumerate(report.overrefusal)]
    body.append(f'<tr><th class="row">over-refusal (benign)</th>{"".join(refusal)}</tr>')
    read = "".join(f"<li>{E(line)}</li>" for line in reading(report))
    setup = "".join(f"<li>{E(line)}</li>" for line in setup_lines(report))
    header = ("<h1>polysafe lab: does safety tuned in English carry over?</h1>"
              f'<p class="meta">model <code>{E(report.result.config.base)}</code> · metric <b>{E(report.matrix.metric.name)}</b> '
              f"(lower is safer) · {len(report.matrix.seed_ids)} held-out seeds per cell</p>"
              f'<details class="setup" open><summary>setup</summary><ul class="setup">{setup}</ul></details>')
    sections = [
        '<h2 id="reading">Reading</h2>', f'<ul id="lab-reading">{read}</ul>',
        '<h2 id="matrix">Transfer matrix: cell × model</h2>',
        f'<p class="note">{E(method(report))}. Each entry: rate [95% CI] · Δ from the base model [95% CI], '
        "* significant. Colour: the change from the base model (blue safer, red less safe; for over-refusal, red = "
        "refuses more benign requests).</p>",
        f'<table id="lab-matrix" class="heat profile"><thead><tr><th>cell</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
        '<h2 id="figure">Figure</h2>',
        f'<img id="lab-png" class="chart" alt="rates per cell and model with 95% CIs" src="data:image/png;base64,{base64.b64encode(png).decode()}">',
    ]
    return page("polysafe lab: generalization", header, sections)


def write_report(report: LabReport, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = lab_png(report)
    files = {"md": out_dir / "lab.md", "json": out_dir / "lab.json", "html": out_dir / "lab.html", "png": out_dir / "lab.png"}
    files["md"].write_text(lab_markdown(report), encoding="utf-8")
    files["json"].write_text(json.dumps(lab_dict(report), indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    files["png"].write_bytes(png)
    files["html"].write_text(lab_html(report, png), encoding="utf-8")
    return files
