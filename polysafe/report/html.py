"""The `html` format: one self-contained page with the tables, the chart and every response, browsable.

Model output and prompts are data: every one goes through `html.escape`, and the page's Content-Security-Policy
allows only its own script (by hash), so even a missed escape could not run injected code.
"""

from __future__ import annotations

import base64
import hashlib
import html
from pathlib import Path
from typing import Sequence

from ..engine.store import ResultRow
from .base import RENDERERS, ReportInput
from .chart import chart_png, language_order, metric_name, safe_filename
from .metrics import GroupStats, by_scenario_language, summarize
from .tables import markdown_table
from .tiers import REFERENCE_MODELS, is_multilingual, tier_report

E = html.escape

FILTER_SCRIPT = """
(function () {
  var selects = document.querySelectorAll('select[data-filter]');
  var rows = document.querySelectorAll('#responses tbody tr');
  var counter = document.getElementById('shown');
  function apply() {
    var wanted = {};
    selects.forEach(function (s) { if (s.value) wanted[s.dataset.filter] = s.value; });
    var shown = 0;
    rows.forEach(function (r) {
      var ok = Object.keys(wanted).every(function (k) { return r.dataset[k] === wanted[k]; });
      r.hidden = !ok;
      if (ok) shown++;
    });
    counter.textContent = String(shown);
  }
  selects.forEach(function (s) { s.addEventListener('change', apply); });
  apply();
})();
"""

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;text-align:left}
th{background:#f3f3f3}
td.text{white-space:pre-wrap;max-width:40rem;word-break:break-word}
.label-unsafe{background:#fde2e1}.label-safe{background:#e3f4e1}.label-invalid{background:#fff4d6}.label-error{background:#eee}
.filters label{margin-right:1rem}
img{max-width:100%}
"""


def _table(head: Sequence[str], body: Sequence[Sequence[str]], *, table_id: str = "") -> str:
    ident = f' id="{E(table_id)}"' if table_id else ""
    cells = "".join(f"<th>{E(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(f"<td>{E(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table{ident}><thead><tr>{cells}</tr></thead><tbody>{rows}</tbody></table>"


def language_table(stats: Sequence[GroupStats]) -> str:
    scored = any(s.asr is not None for s in stats)
    head = ["scenario", "language", "n", "unsafe % [95% CI]", "invalid % [95% CI]", "error %"]
    if scored:
        head += ["ASR (score 5) % [95% CI]", "mean score"]
    body = []
    for s in stats:
        row = [*s.group, str(s.judged), s.unsafe.pct(), s.invalid.pct(), f"{100 * s.error.value:.1f}"]
        if scored:
            row += [s.asr.pct() if s.asr else "n/a", f"{s.mean_score:.2f}" if s.mean_score is not None else "n/a"]
        body.append(row)
    return _table(head, body, table_id="languages")


def tier_table(rows: Sequence[ResultRow]) -> str:
    report = tier_report(rows)
    head = ["scenario", "tier", "languages", "unsafe % (mean)", "unsafe % pooled [95% CI]", "invalid % (mean)",
            *(f"{m} (paper)" for m in REFERENCE_MODELS)]
    body = [[t.scenario, t.tier, ",".join(t.languages), f"{100 * t.unsafe_mean:.1f}", t.unsafe_pooled.pct(),
             f"{100 * t.invalid_mean:.1f}", *(f"{t.reference[m]:.2f}" if m in t.reference else "" for m in REFERENCE_MODELS)]
            for t in report.tiers]
    ratios = "".join(f"<li>{E(s)}: LRL/HRL {E(_x(r['LRL/HRL']))}, MRL/HRL {E(_x(r['MRL/HRL']))}</li>" for s, r in report.ratios.items())
    return _table(head, body, table_id="tiers") + f"<ul>{ratios}</ul>"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _select(name: str, values: Sequence[str]) -> str:
    options = "".join(f'<option value="{E(v)}">{E(v)}</option>' for v in values)
    return f'<label>{E(name)} <select data-filter="{E(name)}"><option value="">all</option>{options}</select></label>'


def responses_table(rows: Sequence[ResultRow]) -> str:
    scored = any(r.score is not None for r in rows)
    extracted = any(r.extracted is not None and r.extracted != r.response for r in rows)
    head = ["#", "id", "language", "scenario", "label", *(["score"] if scored else []), "prompt sent", "response",
            *(["extracted"] if extracted else []), "judge rationale"]
    out = []
    for index, r in enumerate(rows, 1):
        response = r.response if r.response is not None else f"(no response: {r.error or 'pending'})"
        cells = [f"<td>{index}</td>", f"<td>{E(r.prompt_id)}</td>", f"<td>{E(r.language)}</td>", f"<td>{E(r.scenario)}</td>",
                 f"<td>{E(r.label)}</td>"]
        if scored:
            cells.append(f"<td>{E('' if r.score is None else str(r.score))}</td>")
        cells.append(f'<td class="text"><details><summary>{E(_short(r.prompt))}</summary>{E(r.prompt)}</details></td>')
        cells.append(f'<td class="text">{E(response)}</td>')
        if extracted:
            cells.append(f'<td class="text">{E(r.extracted or "")}</td>')
        cells.append(f'<td class="text">{E(r.rationale or "")}</td>')
        out.append(f'<tr class="label-{E(r.label)}" data-language="{E(r.language)}" data-scenario="{E(r.scenario)}" '
                   f'data-label="{E(r.label)}">' + "".join(cells) + "</tr>")
    head_html = "".join(f"<th>{E(h)}</th>" for h in head)
    return f'<table id="responses"><thead><tr>{head_html}</tr></thead><tbody>{"".join(out)}</tbody></table>'


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_html(data: ReportInput) -> str:
    rows = data.rows
    run = data.run
    stats = summarize(rows, by_scenario_language)
    languages = language_order(list(dict.fromkeys(r.language for r in rows)))
    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    labels = list(dict.fromkeys(r.label for r in rows))
    chart = base64.b64encode(chart_png(rows, title=f"{run.model} · {run.task}")).decode() if rows else ""
    script_hash = base64.b64encode(hashlib.sha256(FILTER_SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{E(csp)}">',
        f"<title>polysafe report: {E(run.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>polysafe report: {E(run.name)}</h1>",
        f"<p>task <code>{E(run.task)}</code> · model <code>{E(run.model)}</code> · judge <code>{E(run.judge)}</code> · "
        f"{len(rows)} items</p>",
        "<h2>Per language and scenario</h2>", language_table(stats),
    ]
    if is_multilingual(rows):
        parts += ["<h2>Per resource tier</h2><p>Tier figure = plain mean of its languages' rates (as the paper); "
                  "pooled = all the tier's responses together.</p>", tier_table(rows)]
    if chart:
        parts += [f"<h2>{E(metric_name(rows))}</h2>", f'<img id="chart" alt="{E(metric_name(rows))} chart" src="data:image/png;base64,{chart}">']
    parts += [
        "<h2>Responses</h2>", '<div class="filters">', _select("language", languages), _select("scenario", scenarios),
        _select("label", labels), f' shown: <span id="shown">{len(rows)}</span></div>', responses_table(rows),
        f"<script>{FILTER_SCRIPT}</script>", "</body></html>",
    ]
    return "\n".join(parts)


def write_html(data: ReportInput) -> Path:
    data.out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(data.out_dir) / f"{safe_filename(data.run.name)}.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path


@RENDERERS.register("html", summary="Self-contained HTML: tables, chart, browsable responses (all output escaped).")
def _html():
    def render(data: ReportInput) -> str:
        return str(write_html(data))

    return render


__all__ = ["render_html", "write_html", "markdown_table"]
