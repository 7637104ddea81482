"""The comparison heatmap (group x run), as a PNG sized for a paper column and as colours for the HTML page.

One colour ramp serves both, so the page and the figure read the same: light yellow at 0%, dark red at 100%.
Each cell shows the rate; cells of later runs also show the difference to the first run, marked `*` when it
is significant after the correction the comparison names.
"""

from __future__ import annotations

import io
import textwrap

from ..terminal import printable
from .compare import Cell, Comparison, signed_pp

# Sequential yellow-orange-red (ColorBrewer YlOrRd stops): ordered in lightness, readable in grey print.
RAMP = ((0.0, (255, 255, 204)), (0.25, (254, 217, 118)), (0.5, (253, 141, 60)), (0.75, (227, 26, 28)), (1.0, (128, 0, 38)))
MISSING = (230, 230, 230)
PAPER_WIDTH_IN = 6.5


def ramp_rgb(value: float) -> tuple[int, int, int]:
    value = min(1.0, max(0.0, value))
    for (x0, c0), (x1, c1) in zip(RAMP, RAMP[1:]):
        if value <= x1:
            t = (value - x0) / (x1 - x0)
            return tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return RAMP[-1][1]


# Diverging blue-white-red (ColorBrewer RdBu stops) for differences: blue = safer than the reference, red = less safe.
DIVERGING = ((-1.0, (33, 102, 172)), (-0.5, (103, 169, 207)), (-0.15, (209, 229, 240)), (0.0, (247, 247, 247)),
             (0.15, (253, 219, 199)), (0.5, (239, 138, 98)), (1.0, (178, 24, 43)))


def diverging_rgb(delta: float) -> tuple[int, int, int]:
    """A difference in [-1, 1] (a share; ±100 pp at the ends) on the diverging ramp."""
    delta = min(1.0, max(-1.0, delta))
    for (x0, c0), (x1, c1) in zip(DIVERGING, DIVERGING[1:]):
        if delta <= x1:
            t = (delta - x0) / (x1 - x0)
            return tuple(round(a + (b - a) * t) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return DIVERGING[-1][1]


def css_delta_colours(delta: float | None) -> tuple[str, str]:
    """(background, text) CSS colours for a difference; None is a missing cell."""
    rgb = MISSING if delta is None else diverging_rgb(delta)
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", "#fff" if is_dark(rgb) else "#1a1a1a"


def is_dark(rgb: tuple[int, int, int]) -> bool:
    r, g, b = (c / 255 for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5


def css_colours(value: float | None) -> tuple[str, str]:
    """(background, text) CSS colours for a rate in [0, 1]; None is a missing cell."""
    rgb = MISSING if value is None else ramp_rgb(value)
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", "#fff" if is_dark(rgb) else "#1a1a1a"


def cell_lines(cell: Cell) -> tuple[str, str]:
    """The rate, and the signed difference to the first run (with `*` when significant)."""
    if cell.rate is None or not cell.rate.total:
        return "n/a", ""
    diff = "" if cell.diff is None else signed_pp(cell.diff.value) + ("*" if cell.significant else "")
    return f"{100 * cell.rate.value:.1f}", diff


def heatmap_png(comparison: Comparison) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure

    rows, runs = comparison.rows, comparison.runs
    cmap = LinearSegmentedColormap.from_list("polysafe", [(x, tuple(c / 255 for c in rgb)) for x, rgb in RAMP])
    cmap = cmap.with_extremes(bad=tuple(c / 255 for c in MISSING))
    values = [[cell.rate.value * 100 if cell.rate and cell.rate.total else float("nan") for cell in row.cells] for row in rows]
    fig = Figure(figsize=(PAPER_WIDTH_IN, 1.6 + 0.34 * len(rows)), dpi=200, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap=cmap, norm=Normalize(0, 100), aspect="auto", interpolation="nearest")
    for i, row in enumerate(rows):
        for j, cell in enumerate(row.cells):
            rate, diff = cell_lines(cell)
            colour = "white" if cell.rate and cell.rate.total and is_dark(ramp_rgb(cell.rate.value)) else "#1a1a1a"
            ax.text(j, i - (0.13 if diff else 0), rate, ha="center", va="center", fontsize=8.5, color=colour, weight="bold")
            if diff:
                ax.text(j, i + 0.22, diff, ha="center", va="center", fontsize=6.5, color=colour)
    ax.set_xticks(range(len(runs)), ["\n".join(textwrap.wrap(_short(r.name, 60), 22)) for r in runs], fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), [_short(row.label, 36) for row in rows], fontsize=7.5)
    ax.tick_params(which="both", length=0)
    ax.set_xticks([x - 0.5 for x in range(1, len(runs))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    for side in ax.spines.values():
        side.set_visible(False)
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(f"{comparison.metric} (%)", fontsize=7.5)
    bar.ax.tick_params(labelsize=7)
    notes = [comparison.truncation_note()] + ([comparison.differences_note()] if comparison.differences else [])
    ax.set_xlabel(f"small figures: Δ pp vs. {_short(runs[0].name, 40)}; * significant after "
                  f"{'Holm' if comparison.correction == 'holm' else 'Benjamini-Hochberg'}, α = {comparison.alpha:g}\n"
                  + "\n".join(textwrap.fill(_short(note, 600), 110) for note in notes), fontsize=6.5)
    buffer = io.BytesIO()
    # The notes, whole, also as the PNG's text (`Description`): readable where the drawn copy is cut short.
    fig.savefig(buffer, format="png", metadata={"Description": "\n".join(printable(note) for note in notes)})
    return buffer.getvalue()


def _short(text: str, limit: int) -> str:
    """Labels longer than a figure can hold keep their start and end (run names differ at the end); control
    characters are shown as escapes (they have no glyph)."""
    text = printable(text)
    return text if len(text) <= limit else text[: limit // 2 - 1] + "…" + text[-(limit - limit // 2):]
