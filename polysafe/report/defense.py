"""The defenses' tables: Self-Defense's before/after per language with usefulness, and CTRL's per defense.

The before/after safety comparison is `polysafe compare`'s own (report/compare.py): every model's stored run
against the first, with Newcombe intervals for the differences and Holm-adjusted significance. The defenses
pass their results in; nothing here imports them.
"""

from __future__ import annotations

from typing import Sequence

from ..engine.store import Store

from .base import load_report_input
from .compare import Comparison, compare, comparison_markdown


def selfdefense_markdown(report) -> str:
    """`report`: a SelfDefenseReport (models, generation, data_files, comparison)."""
    head = ["scenario", "language", "n"] + [f"unsafe % {m.label}" for m in report.models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_model = [{s.group: s for s in m.stats} for m in report.models]
    for base in sorted(report.models[0].stats, key=lambda s: s.group):
        cells = [base.group[0], base.group[1], str(base.judged)]
        for stats in by_model:
            found = stats.get(base.group)
            cells.append(f"{found.unsafe.pct()} (invalid {100 * found.invalid.value:.1f})" if found else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    n = report.models[0].usefulness.over_refusal.total
    lines.append("| usefulness | benign requests refused % | " + str(n) + " | "
                 + " | ".join(m.usefulness.over_refusal.pct() for m in report.models) + " |")
    lines.append("| usefulness | perplexity, held-out benign answers | | "
                 + " | ".join(f"{m.usefulness.perplexity:.2f}" for m in report.models) + " |")
    lines.append("| training | pairs (unsafe) | | "
                 + " | ".join("-" if m.share is None else f"{m.pairs} ({m.unsafe_pairs})" for m in report.models) + " |")
    g = report.generation
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(g.rejected.items())) or "none"
    lines += ["", f"- unsafe share = share of unsafe-prompt/safe-answer pairs in each language's training set; "
                  f"the rest are general pairs. {g.mix().line()}.",
              f"- pool: {len(g.pool)} checked pairs {dict(sorted(g.counts().items()))}; rejected: {rejected}",
              "- unsafe % = unsafe / judged answers (invalid included in the denominator), Wilson 95% CI"]
    for m in report.models[1:]:
        trained = f"{m.steps} steps, loss {m.losses[0]:.3f} -> {m.losses[-1]:.3f}" if m.steps else "adapter reused"
        lines.append(f"- {m.label}: {m.spec} ({trained}; data {report.data_files.get(m.label, '')})")
    text = "\n".join(lines)
    return text + ("\n\n" + comparison_markdown(report.comparison) if report.comparison else "")


def ctrl_markdown(rows, cfg, rater, sr_note: str, comparison: Comparison | None = None) -> str:
    """CTRL's table: SR, the 1-5 distribution, ASR, over-refusal and helpfulness per defense, then the
    harmful-query runs against `none` (report/compare.py)."""
    scoring = any(r.scores for r in rows)
    head = ["defense", "SR % [95% CI]", "harm 1/2/3/4/5", "ASR % [95% CI]", "safety (6-harm)",
            "over-refusal % [95% CI]", f"helpfulness 0-5 ({rater.method})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        dist = "/".join(str(r.scores[s]) for s in range(1, 6)) if r.scores else "n/a"
        lines.append("| " + " | ".join([
            r.defense, r.sr.pct(), dist, r.asr.pct() if r.asr else "n/a",
            f"{r.mean_safety:.2f}" if r.mean_safety is not None else "n/a", r.over_refusal.pct(),
            f"{r.helpfulness:.2f} ± {r.helpfulness_ci:.2f}",
        ]) + " |")
    notes = [f"base {cfg.base}; attack {len(cfg.attack)} examples; curated texts {len(cfg.curated)} "
             f"(objective {cfg.objective}); harmful queries {len(cfg.harmful)}; benign prompts {len(cfg.benign)}; "
             f"judge {cfg.judge}; epochs {cfg.finetune.epochs}, lr {cfg.finetune.learning_rate}, LoRA r {cfg.finetune.lora_r}"]
    if not scoring:
        notes.append(f"judge '{cfg.judge}' gives no 1-5 harmfulness scores: SR only (use a judge that declares a 1-5 harm scale "
                     "for the distribution and ASR)")
    if getattr(rater, "note", None):
        notes.append(rater.note)
    notes.append(sr_note)
    notes.append("over-refusal = share of benign prompts refused (refusal matcher)")
    text = "\n".join(lines + [""] + [f"- {n}" for n in notes])
    return text + ("\n\n" + comparison_markdown(comparison) if comparison else "")


def before_after(store: Store, runs: Sequence[str], by: str = "language"):
    """Each model's run against the first (the base): the same comparison as `polysafe compare`."""
    unique = list(dict.fromkeys(runs))
    if len(unique) < 2:
        return None
    return compare([load_report_input(store, run, store.path.parent) for run in unique], by=by)
