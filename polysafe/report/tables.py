"""Markdown and JSON tables of grouped stats."""

from __future__ import annotations

import json
from typing import Callable, Sequence

from .metrics import GroupStats

# An extra column: (header, cell text for a group's stats).
ExtraColumn = tuple[str, Callable[[GroupStats], str]]


def markdown_table(stats: Sequence[GroupStats], columns: Sequence[str] = ("scenario", "language"),
                   extra: Sequence[ExtraColumn] = ()) -> str:
    scored = any(s.asr is not None for s in stats)
    head = [*columns, "n", "unsafe % [95% CI]", "invalid % [95% CI]", "error %"]
    if scored:
        head += ["ASR (score 5) % [95% CI]", "mean score"]
    head += [name for name, _ in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for s in stats:
        cells = [*(cell.replace("|", "\\|") for cell in s.group), str(s.judged), s.unsafe.pct(), s.invalid.pct(), f"{100 * s.error.value:.1f}"]
        if scored:
            cells += [s.asr.pct() if s.asr else "n/a", f"{s.mean_score:.2f}" if s.mean_score is not None else "n/a"]
        cells += [cell(s) for _, cell in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def json_table(stats: Sequence[GroupStats], columns: Sequence[str] = ("scenario", "language"),
               row_extra: Callable[[GroupStats], dict] | None = None, **meta) -> str:
    rows = []
    for s in stats:
        row = dict(zip(columns, s.group))
        row.update({k: v for k, v in s.to_dict().items() if k != "group"})
        if row_extra is not None:
            row.update(row_extra(s))
        rows.append(row)
    return json.dumps({**meta, "columns": list(columns), "rows": rows}, indent=2, ensure_ascii=False)
