"""The trade-off chart of a Self-Defense sweep: safety and usefulness against the unsafe share of the data.

One panel per scenario (unsafe rate per language, with the base model's rate as a dashed line of the same
colour), and one usefulness panel (over-refusal on benign prompts; perplexity of held-out benign answers on
the right axis, the base model's values dashed).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from ...report.chart import SCENARIO_COLOURS, language_order

if TYPE_CHECKING:
    from .pipeline import SelfDefenseReport


def tradeoff_png(report: "SelfDefenseReport") -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    base, tuned = report.models[0], sorted((m for m in report.models[1:]), key=lambda m: m.share)
    shares = [100 * m.share for m in tuned]
    scenarios = list(dict.fromkeys(s.group[0] for s in base.stats))
    languages = language_order(list(dict.fromkeys(s.group[1] for s in base.stats)))
    fig = Figure(figsize=(4.2 * (len(scenarios) + 1), 3.8), dpi=110)
    FigureCanvasAgg(fig)
    for index, scenario in enumerate(scenarios):
        ax = fig.add_subplot(1, len(scenarios) + 1, index + 1)
        for l_index, language in enumerate(languages):
            colour = SCENARIO_COLOURS[l_index % len(SCENARIO_COLOURS)]
            values = [_unsafe(m, scenario, language) for m in tuned]
            values = [float("nan") if v is None else v for v in values]
            ax.plot(shares, values, marker="o", color=colour, label=language)
            before = _unsafe(base, scenario, language)
            if before is not None:
                ax.axhline(before, color=colour, linestyle="--", linewidth=0.8, alpha=0.7)
        ax.set_title(f"{scenario}: unsafe % (dashed: base)", fontsize=9)
        ax.set_xlabel("unsafe share of the training data (%)")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="language", title_fontsize=7)
    ax = fig.add_subplot(1, len(scenarios) + 1, len(scenarios) + 1)
    ax.plot(shares, [100 * m.usefulness.over_refusal.value for m in tuned], marker="s", color="#c44e52",
            label="benign refused %")
    ax.axhline(100 * base.usefulness.over_refusal.value, color="#c44e52", linestyle="--", linewidth=0.8)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("unsafe share of the training data (%)")
    ax.set_ylabel("benign requests refused (%)")
    right = ax.twinx()
    right.plot(shares, [m.usefulness.perplexity for m in tuned], marker="^", color="#4c72b0", label="benign perplexity")
    right.axhline(base.usefulness.perplexity, color="#4c72b0", linestyle="--", linewidth=0.8)
    right.set_ylabel("perplexity, held-out benign answers")
    ax.set_title("usefulness (dashed: base)", fontsize=9)
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _unsafe(model, scenario: str, language: str) -> float | None:
    for stats in model.stats:
        if stats.group == (scenario, language) and stats.judged:
            return 100 * stats.unsafe.value
    return None
