"""Markdown and JSON tables of grouped stats."""

from __future__ import annotations

import json
from typing import Callable, Sequence

from .metrics import GroupStats

# An extra column: (header, cell text for a group's stats).
ExtraColumn = tuple[str, Callable[[GroupStats], str]]


def markdown_table(stats: Sequence[GroupStats], columns: Sequence[str] = ("scenario", "language"),
                   extra: Sequence[ExtraColumn] = ()) -> str:
    """One row per group: n, then the judge's declared figures (headline first) when the stats carry them, else
    the unsafe and invalid rates; the error rate; extra columns."""
    declared = next((s.figures for s in stats if s.figures), ())
    head = [*columns, "n", *([f.header for f in declared] or ["unsafe % [95% CI]", "invalid % [95% CI]"]), "error %"]
    head += [name for name, _ in extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for s in stats:
        figures = [f.text() for f in s.figures] if declared else [s.unsafe.pct(), s.invalid.pct()]
        cells = [*(cell.replace("|", "\\|") for cell in s.group), str(s.judged), *figures, f"{100 * s.error.value:.1f}"]
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
