"""The `png` format: a bar chart of the headline rate per language (grouped by tier) and scenario.

The rate is the headline rate the run's judge declares (an unsafe rate, a non-refusal rate, a share of scores at a
threshold such as an ASR). Error bars are Wilson 95% intervals. With a single language the bars are the scenarios.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..languages import LANGUAGES, TIERED_LANGUAGES, TIERS, tier_of
from ..engine.store import ResultRow
from .base import RENDERERS, ReportInput
from ..types import UNSAFE_RATE, Metric
from .declared import rate_of
from .metrics import Rate
from .setup import describe_setup
from .tiers import headline_metric, tier_label

TIER_COLOURS = {"english": "#7f7f7f", "high": "#1f77b4", "medium": "#ff7f0e", "low": "#d62728", "other": "#9467bd"}
SCENARIO_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


@dataclass(frozen=True)
class Bar:
    scenario: str
    language: str
    rate: Rate


def metric_name(metric: Metric | None = None) -> str:
    return (metric or UNSAFE_RATE).name


def language_order(codes: Sequence[str]) -> list[str]:
    """The tiered languages in order (en, then high, medium, low tiers), then any other languages alphabetically."""
    known = [c for c in TIERED_LANGUAGES if c in codes]
    tier_rank = {t: i for i, t in enumerate(TIERS)}
    return known + sorted((c for c in codes if c not in known), key=lambda c: (tier_rank.get(tier_of(c), 9), c))


def bars(rows: Sequence[ResultRow], metric: Metric | None = None) -> list[Bar]:
    groups: dict[tuple[str, str], list[ResultRow]] = {}
    for row in rows:
        groups.setdefault((row.scenario, row.language), []).append(row)
    return [Bar(scenario, language, rate_of(metric or UNSAFE_RATE, members))
            for (scenario, language), members in groups.items()]


def chart_png(rows: Sequence[ResultRow], title: str = "", subtitle: str = "", description: str = "",
              metric: Metric | None = None) -> bytes:
    """The chart as PNG bytes; `description` (e.g. the setup block) goes into the PNG's Description text chunk."""
    buffer = io.BytesIO()
    chart_figure(rows, title, subtitle, metric).savefig(buffer, format="png", metadata={"Title": title, "Description": description or subtitle})
    return buffer.getvalue()


def chart_figure(rows: Sequence[ResultRow], title: str = "", subtitle: str = "", metric: Metric | None = None):
    """The bar chart as a matplotlib Figure; `subtitle` (the run's setup, report/setup.py) is printed at its foot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..terminal import printable, printable_text

    title, subtitle = printable(title), printable_text(subtitle)  # a control character is no glyph (and would reach
    # the terminal through matplotlib's missing-glyph warning)

    data = bars(rows, metric)
    scenarios = list(dict.fromkeys(b.scenario for b in data))
    languages = language_order(list(dict.fromkeys(b.language for b in data)))
    by_key = {(b.scenario, b.language): b.rate for b in data}
    single_language = len(languages) == 1
    groups = scenarios if single_language else languages
    series = [languages[0]] if single_language else scenarios

    subtitle_lines = subtitle.count("\n") + 1 if subtitle else 0
    fig = Figure(figsize=(max(6.0, 0.6 * len(groups) * max(1, len(series)) ** 0.5 + 2), 4.2 + 0.15 * subtitle_lines), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(series))
    for s_index, name in enumerate(series):
        xs, values, lows, highs = [], [], [], []
        for g_index, group in enumerate(groups):
            rate = by_key.get((group, name) if single_language else (name, group))
            if rate is None or not rate.total:
                continue
            xs.append(g_index + (s_index - (len(series) - 1) / 2) * width)
            values.append(100 * rate.value)
            lows.append(100 * (rate.value - rate.low))
            highs.append(100 * (rate.high - rate.value))
        colour = SCENARIO_COLOURS[s_index % len(SCENARIO_COLOURS)]
        ax.bar(xs, values, width=width, color=colour, label=name, yerr=[lows, highs], capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    ax.set_xticks(range(len(groups)))
    if single_language:
        ax.set_xticklabels(groups, rotation=30 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
    else:
        ax.set_xticklabels([f"{c}\n{tier_label(tier_of(c))}" for c in groups])
        for label, code in zip(ax.get_xticklabels(), groups):
            label.set_color(TIER_COLOURS.get(tier_of(code), "black"))
        _tier_separators(ax, groups)
    ax.set_ylabel(f"{metric_name(metric)} (%)")
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1 or not single_language:
        # outside the axes, so it never hides the first bars
        ax.legend(title="language" if single_language else "scenario", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(title or f"{metric_name(metric)} with Wilson 95% CI", fontsize=10)
    if subtitle:
        fig.text(0.5, 0.005, subtitle, ha="center", va="bottom", fontsize=7, color="#444444")
    fig.tight_layout(rect=(0, 0.03 * subtitle_lines + (0.01 if subtitle else 0), 1, 1))
    return fig


def _tier_separators(ax, codes: Sequence[str]) -> None:
    for index in range(1, len(codes)):
        if tier_of(codes[index]) != tier_of(codes[index - 1]):
            ax.axvline(index - 0.5, color="#bbbbbb", linewidth=0.8, linestyle="--")


def safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120] or "run"


@RENDERERS.register("png", summary="PNG bar chart: the judge's headline rate by language/tier and scenario.")
def _png():
    def render(data: ReportInput) -> str:
        data.out_dir.mkdir(parents=True, exist_ok=True)
        path = Path(data.out_dir) / f"{safe_filename(data.run.name)}.png"
        setup = describe_setup(data.run, data.rows)
        path.write_bytes(chart_png(data.rows, title=f"{data.run.model} · {data.run.task}", subtitle=setup.subtitle(),
                                   description="\n".join(setup.lines()), metric=headline_metric(setup)))
        return str(path)

    return render


__all__ = ["chart_png", "chart_figure", "bars", "language_order", "LANGUAGES"]
