"""What reports say about the judge itself: its checks (kappa and agreement against a second judge or human
labels, with the disagreeing items) and, for a judge that declares categories (Llama Guard's S1-S14), how often
each category was named.

Checks are stored with the run (`engine/judge_check.py`, config `judge_checks`). Categories come from the judge's
declared metadata (`JudgeDescription.traits["categories"]`, stored as the run's `judge_description`) and from the
codes each verdict keeps in `parts["categories"]`; a judge's name is never read.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from ..engine.store import ResultRow, RunRecord


def stored_checks(run: RunRecord) -> list[dict]:
    return list((run.config or {}).get("judge_checks") or [])


def check_line(check: dict) -> str:
    """One line for the setup block, the CLI summary and compare."""
    against = f"judge {check['against']}" if check["kind"] == "judge" else f"human labels {check['against']}"
    if check.get("kappa") is None:
        return f"judge check vs {against}: no answer to compare ({check['left_out']} left out)"
    left_out = f", {check['left_out']} left out (errors or unmatched)" if check["left_out"] else ""
    return (f"judge check vs {against}: Cohen's kappa {check['kappa']:.2f}, agreement {100 * check['agreement']:.1f}% "
            f"over {check['compared']} answers, {check['disagreeing']} disagree{left_out}"
            + "".join(f"; {note}" for note in check.get("notes") or ()))


def kappa_text(run: RunRecord) -> str:
    """Each check's kappa in a few words, for compare (empty when the run has none)."""
    return "; ".join(f"κ {c['kappa']:.2f} vs {c['against']} (n={c['compared']})" if c.get("kappa") is not None
                     else f"κ n/a vs {c['against']}" for c in stored_checks(run))


def checks_markdown(run: RunRecord) -> str:
    """A section per check: its figures, then its disagreeing items (run position, id, both labels)."""
    parts = []
    for check in stored_checks(run):
        other = "second judge" if check["kind"] == "judge" else "human"
        lines = [f"### {check_line(check).split(':', 1)[0]}", "", check_line(check)]
        if check["disagreements"]:
            lines += ["", f"| # | id | language | scenario | run's judge | {other} |", "|---|---|---|---|---|---|"]
            lines += [f"| {d['position'] + 1} | {_cell(d['prompt_id'])} | {d['language']} | {_cell(d['scenario'])} | "
                      f"{d['run_label']} | {d['other_label']} |" for d in check["disagreements"]]
            if check["disagreeing"] > len(check["disagreements"]):
                lines.append(f"\n({check['disagreeing'] - len(check['disagreements'])} more not listed)")
        parts.append("\n".join(lines))
    return ("## Judge checks\n\n" + "\n\n".join(parts)) if parts else ""


def declared_categories(run: RunRecord) -> dict[str, str]:
    description = (run.config or {}).get("judge_description") or {}
    return dict((description.get("traits") or {}).get("categories") or {})


def category_counts(run: RunRecord, rows: Sequence[ResultRow]) -> list[dict]:
    """For a judge that declares categories: how many judged answers named each (an answer may name several)."""
    declared = declared_categories(run)
    if not declared:
        return []
    counts: Counter = Counter()
    for row in rows:
        for code in ((getattr(row, "parts", None) or {}).get("categories") or ()):
            counts[code] += 1
    unsafe = sum(1 for row in rows if row.label == "unsafe")
    return [{"category": code, "name": name, "count": counts[code], "unsafe_answers": unsafe}
            for code, name in declared.items()]


def categories_markdown(run: RunRecord, rows: Sequence[ResultRow]) -> str:
    counts = category_counts(run, rows)
    if not counts:
        return ""
    lines = ["## Categories named by the judge", "",
             f"Over {counts[0]['unsafe_answers']} answers judged unsafe (an answer may name several categories).", "",
             "| category | name | answers |", "|---|---|---|"]
    lines += [f"| {c['category']} | {c['name']} | {c['count']} |" for c in counts]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


__all__ = ["stored_checks", "check_line", "kappa_text", "checks_markdown", "category_counts", "categories_markdown",
           "declared_categories"]
