"""The page and figure of paired cells: a heatmap of axes x cells coloured by the difference from the reference, the
"where safety breaks" list, the cell table and the setup block; and the transfer matrix of several profiles.

The HTML page is the explorer's shell (report/html.py): one self-contained file, every text escaped, and a
Content-Security-Policy that runs only the page's own script. Colours: blue = safer than the reference (English
plain), red = less safe, on one diverging ramp shared by the page and the PNG.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

from ..engine.store import ResultRow
from .base import RENDERERS, ReportInput
from .chart import safe_filename
from .heatmap import css_delta_colours, diverging_rgb, is_dark
from .html import RunRows, page, responses_link, responses_section, table, td
from .paired import (PairedReport, PairedCell, TransferMatrix, cost_text, delta_text, entry_text, pp, paired_from,
                      rate_text)

E = html.escape
AXIS_ORDER = ("reference", "language", "jailbreak", "code", "cipher", "compose")
EXTRA_STYLE = """
table.paired td.cell{min-width:5.6rem;text-align:center;vertical-align:middle;padding:0;border:2px solid #fff}
table.paired td.cell a{display:block;padding:.35rem .4rem;color:inherit;text-decoration:none}
table.paired td.empty{border:none;background:none}
table.paired .name{display:block;font-size:.74rem;opacity:.85;white-space:nowrap}
table.paired .big{display:block;font-size:1.02rem;font-weight:650;font-variant-numeric:tabular-nums}
table.paired .small{display:block;font-size:.76rem;font-variant-numeric:tabular-nums}
ol.breaks li{margin:.12rem 0;font-variant-numeric:tabular-nums}
ol.breaks li.sig{font-weight:650}
.legend{display:inline-block;width:14rem;height:.7rem;vertical-align:middle;border:1px solid #ccd;
 background:linear-gradient(90deg,rgb(33,102,172),rgb(247,247,247),rgb(178,24,43))}
"""


def axis_rows(report: PairedReport) -> list[tuple[str, list[PairedCell]]]:
    rows: dict[str, list[PairedCell]] = {}
    for cell in (report.reference, *report.cells):
        rows.setdefault(cell.axis, []).append(cell)
    return sorted(rows.items(), key=lambda kv: (AXIS_ORDER.index(kv[0]) if kv[0] in AXIS_ORDER else len(AXIS_ORDER), kv[0]))


def _tile(cell: PairedCell, reference: bool) -> str:
    delta = None if reference or cell.delta is None else cell.delta.value
    background, colour = css_delta_colours(0.0 if reference else delta)
    rate = "n/a" if not cell.n else f"{100 * cell.rate.value:.1f}%"
    small = "reference" if reference else (f"{pp(delta)}{' *' if cell.significant else ''}" if delta is not None else "n/a")
    title = (f"{cell.scenario}: {rate_text(cell.rate)} (n={cell.n})"
             + ("" if reference else f"; Δ {delta_text(cell)}; Holm p {cell.p_adjusted if cell.p_adjusted is not None else 'n/a'}"))
    return (f'<td class="cell" style="background:{background};color:{colour}" title="{E(title)}">'
            f'<a href="{E(responses_link(scenario=cell.scenario))}"><span class="name">{E(cell.cell)}</span>'
            f'<span class="big">{E(rate)}</span><span class="small">{E(small)}</span></a></td>')


def heat_table(report: PairedReport) -> str:
    rows = axis_rows(report)
    width = max(len(cells) for _, cells in rows)
    body = []
    for axis, cells in rows:
        tiles = [_tile(c, c is report.reference) for c in cells] + ['<td class="empty"></td>'] * (width - len(cells))
        body.append(f'<tr><th class="row">{E(axis)}</th>{"".join(tiles)}</tr>')
    return f'<table id="paired-heat" class="heat paired"><tbody>{"".join(body)}</tbody></table>'


def breaks_list(report: PairedReport) -> str:
    items = []
    for cell in report.breaks():
        d = cell.delta
        items.append(f'<li class="{"sig" if cell.significant else ""}">{E(cell.scenario)}: {E(pp(d.value))} pp '
                     f'[{E(pp(d.low))}, {E(pp(d.high))}], {E(rate_text(cell.rate))} vs {E(rate_text(report.reference.rate))}, '
                     f'Holm p {cell.p_adjusted:.3g}{" *" if cell.significant else ""}</li>')
    return f'<ol id="breaks" class="breaks">{"".join(items) or "<li>no cell</li>"}</ol>'


def cell_table(report: PairedReport) -> str:
    head = ["axis", "cell", "n", f"{report.metric.name} %", "95% CI", "invalid", "errors", "Δ (pp)", "Δ 95% CI",
            "discordant +/−", "McNemar p", "Holm p", "tokens", "cost $"]
    body = []
    for cell in (report.reference, *report.cells):
        d = cell.delta
        rate = [td(f"{100 * cell.rate.value:.1f}", sort=cell.rate.value, cls="num"),
                td(f"[{100 * cell.rate.low:.1f}, {100 * cell.rate.high:.1f}]", sort=cell.rate.low, cls="ci")] if cell.n else \
               [td("n/a", sort="", cls="num"), td("", sort="", cls="ci")]
        diff = ([td(pp(d.value) + (" *" if cell.significant else ""), sort=d.value, cls="num sig" if cell.significant else "num"),
                 td(f"[{pp(d.low)}, {pp(d.high)}]", sort=d.low, cls="ci"), td(f"{d.first_only}/{d.second_only}", cls="num"),
                 td(f"{d.p:.3g}", sort=d.p, cls="num"), td(f"{cell.p_adjusted:.3g}", sort=cell.p_adjusted, cls="num")]
                if d else [td("reference" if cell is report.reference else "n/a", sort="")] + [td("", sort="")] * 4)
        body.append([td(cell.axis), td(cell.cell), td(str(cell.n), sort=cell.n, cls="num"), *rate,
                     td(str(cell.invalid), sort=cell.invalid, cls="num"), td(str(cell.errors), sort=cell.errors, cls="num"), *diff,
                     td(f"{cell.prompt_tokens + cell.completion_tokens}", sort=cell.prompt_tokens + cell.completion_tokens, cls="num"),
                     td("" if cell.cost is None else f"{cell.cost:.4f}", sort="" if cell.cost is None else cell.cost, cls="num")])
    return table(head, body, table_id="cells")


def render_paired_html(report: PairedReport, rows: Sequence[ResultRow] = ()) -> str:
    run, ref = report.run, report.reference
    png = base64.b64encode(paired_png(report)).decode()
    setup = "".join(f"<li>{E(line)}</li>" for line in report.setup)
    header = (f"<h1>{E('polysafe: where safety breaks, ' + run.name)}</h1>"
              f'<p class="meta">model <code>{E(run.model)}</code> · judge <code>{E(run.judge)}</code> · metric '
              f"<b>{E(report.metric.name)}</b> · {len(report.seed_ids)} seed queries in every cell · reference "
              f"<code>{E(ref.scenario)}</code>: {E(rate_text(ref.rate))}</p>"
              f'<details class="setup" open><summary>setup</summary><ul class="setup">{setup}</ul></details>'
              '<nav class="sections"><a href="#heat">heatmap</a><a href="#where">where safety breaks</a>'
              '<a href="#cells-section">cells</a><a href="#responses-section">responses</a></nav>')
    sections = [
        f"<style>{EXTRA_STYLE}</style>",
        f'<h2 id="heat">{E(report.metric.name)} by axis and cell, coloured by the difference from the reference</h2>',
        f'<p class="note">Each tile: the cell, its rate, and Δ in percentage points from <code>{E(ref.scenario)}</code> '
        f'(* significant after Holm). <span class="legend"></span> −100 pp (safer) … +100 pp (less safe).</p>',
        heat_table(report),
        '<h2 id="where">Where safety breaks</h2><p class="note">Cells sorted by Δ from the reference, largest first; '
        "bold with * = significant (Holm-adjusted exact McNemar p &lt; 0.05). Click a tile for its responses.</p>",
        breaks_list(report),
        '<h2 id="cells-section">Cells</h2>', f'<p class="note">{E(report.method())}.</p>',
        f'<div class="wide">{cell_table(report)}</div>',
        f'<details><summary>the heatmap as a figure (PNG)</summary><img id="paired-png" class="chart" alt="heatmap of the cells" '
        f'src="data:image/png;base64,{png}"></details>',
    ]
    if rows:
        sections.append(responses_section([RunRows(None, rows)]))
    return page(f"polysafe: where safety breaks, {run.name}", header, sections)


# -- figures --------------------------------------------------------------------------------------------
def _grid_png(rows: Sequence[tuple[str, Sequence[tuple[str, str, str, float | None]]]], title: str, note: str) -> bytes:
    """Tiles (name, big, small, delta) per labelled row, drawn on the diverging ramp."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    width = max(len(tiles) for _, tiles in rows)
    fig = Figure(figsize=(max(6.5, 1.05 * width + 1.3), 0.9 + 0.62 * len(rows)), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, (_, tiles) in enumerate(rows):
        for j, (name, big, small, delta) in enumerate(tiles):
            rgb = (230, 230, 230) if delta is None else diverging_rgb(delta)
            ax.add_patch(Rectangle((j, i), 0.96, 0.94, color=tuple(c / 255 for c in rgb)))
            colour = "white" if is_dark(rgb) else "#1a1a1a"
            ax.text(j + 0.48, i + 0.2, name[:16], ha="center", va="center", fontsize=5.5, color=colour)
            ax.text(j + 0.48, i + 0.48, big, ha="center", va="center", fontsize=7.5, color=colour, weight="bold")
            ax.text(j + 0.48, i + 0.76, small, ha="center", va="center", fontsize=6, color=colour)
    ax.set_xlim(0, width)
    ax.set_ylim(len(rows), 0)
    ax.set_yticks([i + 0.47 for i in range(len(rows))], [label for label, _ in rows], fontsize=7)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=8, loc="left")
    ax.set_xlabel(note, fontsize=6)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Title": title, "Description": note})
    return buffer.getvalue()


def paired_png(report: PairedReport) -> bytes:
    rows = []
    for axis, cells in axis_rows(report):
        tiles = []
        for c in cells:
            reference = c is report.reference
            delta = 0.0 if reference else (c.delta.value if c.delta else None)
            small = "reference" if reference else (pp(delta) + (" *" if c.significant else "") if delta is not None else "n/a")
            tiles.append((c.cell, "n/a" if not c.n else f"{100 * c.rate.value:.0f}%", small, delta))
        rows.append((axis, tiles))
    run = report.run
    return _grid_png(rows, f"{run.model} · {report.metric.name} · {len(report.seed_ids)} seeds per cell",
                     f"colour and small figures: Δ pp from {report.reference.scenario} (blue safer, red less safe); "
                     "* Holm-adjusted exact McNemar p < 0.05")


def write_paired(data: ReportInput, suffix: str, content: str | bytes) -> Path:
    data.out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(data.out_dir) / f"{safe_filename(data.run.name)}-cells.{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@RENDERERS.register("paired-html", summary="PairedReport page (HTML): heatmap of axes x cells by Δ from English, where safety breaks, setup.")
def _html():
    return lambda data: str(write_paired(data, "html", render_paired_html(paired_from(data), data.rows)))


@RENDERERS.register("paired-png", summary="PairedReport heatmap (PNG): axes x cells coloured by the paired Δ from English.")
def _png():
    return lambda data: str(write_paired(data, "png", paired_png(paired_from(data))))


# -- the transfer matrix ----------------------------------------------------------------------------------
def transfer_png(matrix: TransferMatrix) -> bytes:
    names = [p.run.name for p in matrix.profiles]
    rows = []
    for scenario, entries in zip(matrix.scenarios, matrix.entries):
        tiles = []
        for j, e in enumerate(entries):
            if e is None or not e.rate.total:
                tiles.append((names[j], "n/a", "", None))
                continue
            small = "reference" if e.delta is None else f"Δen {pp(e.delta.value)}"
            if j and e.change is not None:
                small += f" Δ1 {pp(e.change.value)}{'*' if e.change_significant else ''}"
            tiles.append((names[j], f"{100 * e.rate.value:.0f}%", small, 0.0 if e.delta is None else e.delta.value))
        rows.append((scenario, tiles))
    return _grid_png(rows, f"transfer matrix · {matrix.metric.name} · {len(matrix.seed_ids)} shared seeds",
                     f"colour: Δ from each run's own reference; Δ1: change from {names[0]} in the same cell "
                     "(* Holm-adjusted exact McNemar p < 0.05)")


def render_transfer_html(matrix: TransferMatrix) -> str:
    names = [p.run.name for p in matrix.profiles]
    head = "".join(f"<th>{E(n)}</th>" for n in names)
    body = []
    for scenario, entries in zip(matrix.scenarios, matrix.entries):
        cells = [f'<th class="row">{E(scenario)}</th>']
        for j, e in enumerate(entries):
            delta = None if e is None or not e.rate.total else (0.0 if e.delta is None else e.delta.value)
            background, colour = css_delta_colours(delta)
            cells.append(f'<td class="cell" style="background:{background};color:{colour}">'
                         f'<span class="small">{E(entry_text(e, j == 0))}</span></td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    png = base64.b64encode(transfer_png(matrix)).decode()
    runs = "".join(f"<li><b>{E(p.run.name)}</b>: model <code>{E(p.run.model)}</code> · judge <code>{E(p.run.judge)}</code></li>"
                   for p in matrix.profiles)
    header = (f"<h1>{E('polysafe transfer matrix: ' + ' vs '.join(names))}</h1>"
              f'<p class="meta">metric <b>{E(matrix.metric.name)}</b> · {len(matrix.seed_ids)} shared seed queries</p><ul>{runs}</ul>')
    sections = [f"<style>{EXTRA_STYLE}</style>", '<h2 id="matrix">cell × run</h2>',
                f'<p class="note">{E(matrix.method())}. Colour: Δen (blue safer, red less safe than the reference).</p>',
                f'<table id="transfer" class="heat paired"><thead><tr><th>cell</th>{head}</tr></thead>'
                f'<tbody>{"".join(body)}</tbody></table>',
                f'<details><summary>as a figure (PNG)</summary><img class="chart" alt="transfer matrix" '
                f'src="data:image/png;base64,{png}"></details>']
    return page("polysafe transfer matrix", header, sections)


__all__ = ["render_paired_html", "paired_png", "render_transfer_html", "transfer_png", "cost_text"]
