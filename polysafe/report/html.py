"""The `html` format: a results explorer, one self-contained page per run or per comparison of runs.

A page opens from disk with no server: styles and the one script are inline, charts are data: URIs. It has
sortable tables (click a header), a language x scenario pivot and a heatmap whose cells link to their responses,
and the responses themselves with filters by run, language, scenario, label and free text. Each response row
shows the English source, the query as it stands inside the prompt (the full prompt folds out), the response,
the text the judge read when it differs (an extraction or a back-translation) and the judge's rationale.

Model output and prompts are data: every one goes through `html.escape`, and the page's Content-Security-Policy
allows only its own script (by hash), so even a missed escape could not run injected code.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence
from urllib.parse import quote, urlencode

from ..engine.store import ResultRow, RunRecord
from .base import RENDERERS, ReportInput
from ..types import UNSAFE_RATE, Metric
from .chart import chart_png, language_order, safe_filename
from .compare import Comparison, diff_text, rate_text, signed_pp, tier_name
from .explorer_assets import SCRIPT, STYLE
from .heatmap import cell_lines, css_colours, heatmap_png
from .judge_checks import category_counts, check_line, stored_checks
from .metrics import GroupStats, Rate, by_scenario_language, summarize
from .setup import Setup, describe_setup
from .declared import judge_description, rate_metric, rate_of
from .samples import is_sampled, sample_summaries
from .tiers import (headline_metric, is_multilingual, reference_models, shows_reference, summaries_markdown,
                    tier_report)

E = html.escape
TEMPLATE_MIN = 24  # shorter shared text is more likely a shared first word than a template
PAGE = 100  # response rows laid out at first (the script's PAGE); a long table is shown page by page


# -- page shell -----------------------------------------------------------------------------------------
def page(title: str, header: str, sections: Sequence[str]) -> str:
    script_hash = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{E(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{E(title)}</title><style>{STYLE}</style></head><body>",
        f'<header class="top">{header}</header><main>', *sections, "</main>", f"<script>{SCRIPT}</script>", "</body></html>",
    ])


def _setup_block(run: RunRecord, rows: Sequence[ResultRow] | None = None) -> str:
    """The run's setup (report/setup.py): what ran, and whether the paper's figures are comparable."""
    setup = describe_setup(run, rows)
    items = "".join(f"<li>{E(line)}</li>" for line in setup.lines())
    return f'<details class="setup" open><summary>setup</summary><ul class="setup">{items}</ul></details>'


def _nav(*targets: tuple[str, str]) -> str:
    return '<nav class="sections">' + "".join(f'<a href="#{E(anchor)}">{E(name)}</a>' for anchor, name in targets) + "</nav>"


def td(text: str, *, sort: str | float | None = None, cls: str = "", style: str = "", raw: bool = False) -> str:
    attrs = (f' class="{E(cls)}"' if cls else "") + (f' style="{E(style)}"' if style else "")
    if sort is not None:
        attrs += f' data-v="{E(str(sort))}"'
    return f"<td{attrs}>{text if raw else E(text)}</td>"


def table(head: Sequence[str], rows: Sequence[Sequence[str]], *, table_id: str = "", cls: str = "sortable") -> str:
    """rows hold ready <td> cells (see `td`)."""
    ident = f' id="{E(table_id)}"' if table_id else ""
    head_html = "".join(f"<th>{E(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f'<table{ident} class="{E(cls)}"><thead><tr>{head_html}</tr></thead><tbody>{body}</tbody></table>'


def rate_cells(rate: Rate | None) -> list[str]:
    """A rate as two sortable cells: the value in %, and its 95% interval."""
    if rate is None or not rate.total:
        return [td("n/a", sort="", cls="num"), td("", sort="", cls="ci")]
    return [td(f"{100 * rate.value:.1f}", sort=rate.value, cls="num"),
            td(f"[{100 * rate.low:.1f}, {100 * rate.high:.1f}]", sort=rate.low, cls="ci")]


def responses_link(**filters: str) -> str:
    return "#responses?" + urlencode(filters, quote_via=quote)


# -- the query inside the prompt ------------------------------------------------------------------------
def template_bounds(rows: Sequence[ResultRow]) -> tuple[int, int]:
    """Lengths of the text all prompts share before and after the query (a jailbreak or code template).

    Cut at whitespace, and never past where a row's English query visibly starts or ends, so queries that
    happen to start alike ("How do I ...") keep their shared words."""
    prompts = [row.prompt for row in rows]
    if len(set(prompts)) < 2:
        return 0, 0
    prefix = os.path.commonprefix(prompts)
    suffix = os.path.commonprefix([p[::-1] for p in prompts])[::-1]
    head = len(prefix)
    while head and not prefix[head - 1].isspace():
        head -= 1
    start = 0
    while start < len(suffix) and not suffix[start].isspace():
        start += 1
    tail = len(suffix) - start
    for row in rows:
        found = row.prompt.find(row.query) if row.query else -1
        if found >= 0:
            head, tail = min(head, found), min(tail, len(row.prompt) - found - len(row.query))
    head = head if head >= TEMPLATE_MIN else 0
    tail = tail if tail >= TEMPLATE_MIN else 0
    return head, min(tail, min(len(p) for p in prompts) - head)


def query_in_prompts(rows: Sequence[ResultRow]) -> list[str]:
    """For each row, the part of its prompt that holds the query: the prompt without the template that the
    other prompts of its scenario share; else the English query when it appears verbatim; else the prompt."""
    by_scenario: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_scenario.setdefault(row.scenario, []).append(index)
    out = [row.prompt for row in rows]
    for indexes in by_scenario.values():
        head, tail = template_bounds([rows[i] for i in indexes])
        for i in indexes:
            prompt = rows[i].prompt
            core = prompt[head: len(prompt) - tail].strip() if head or tail else ""
            if core:
                first, _, rest = core.partition("\n")  # the cut removed the first line's indent: drop the others'
                out[i] = first + ("\n" + textwrap.dedent(rest) if rest else "")
            elif rows[i].query and rows[i].query in prompt:
                out[i] = rows[i].query
    return out


# -- the responses explorer -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRows:
    name: str | None  # set on comparison pages, where rows of several runs are mixed
    rows: Sequence[ResultRow]
    marks: dict = field(default_factory=dict)  # item position -> extra filter attributes (judge-check disagreements)


def _select(name: str, values: Sequence[str], label: str | None = None) -> str:
    options = "".join(f'<option value="{E(v)}">{E(v)}</option>' for v in values)
    return (f'<label>{E(label or name)} <select data-filter="{E(name)}"><option value="">all</option>'
            f"{options}</select></label>")


def _text(text: str, cls: str = "text") -> str:
    return f'<td class="{cls}"><div dir="auto" class="clip">{E(text)}</div></td>'


def responses_section(groups: Sequence[RunRows]) -> str:
    rows = [row for group in groups for row in group.rows]
    comparing = any(g.name is not None for g in groups)
    scored = any(r.score is not None for r in rows)
    judged_text = any(r.extracted is not None and r.extracted != r.response for r in rows)
    categories = sorted({r.category for r in rows if r.category})
    head = [*(["run"] if comparing else []), "#", "id", "language", "scenario", "label", *(["score"] if scored else []),
            "English source", "query in prompt", "response", "finish · tokens", *(["judged text"] if judged_text else []),
            "judge rationale"]
    body = []
    for group in groups:
        for index, (row, focus) in enumerate(zip(group.rows, query_in_prompts(group.rows)), 1):
            body.append(_response_row(group.name, index, row, focus, scored, judged_text, hidden=len(body) >= PAGE,
                                      marks=group.marks.get(row.position)))
    marked = {name for g in groups for marks in g.marks.values() for name in marks}
    filters = [
        *([_select("run", [g.name for g in groups if g.name])] if comparing else []),
        _select("language", language_order(list(dict.fromkeys(r.language for r in rows)))),
        _select("tier", list(dict.fromkeys(tier_name(c) for c in language_order(list({r.language for r in rows}))))),
        _select("scenario", list(dict.fromkeys(r.scenario for r in rows))),
        *([_select("category", categories)] if categories else []),
        _select("label", list(dict.fromkeys(r.label for r in rows))),
        _select("finish", list(dict.fromkeys(r.finish_reason or "pending" for r in rows))),
        *(_select(name, [DISAGREES], CHECK_FILTERS[name]) for name in CHECK_FILTERS if name in marked),
        '<label>text <input type="search" id="search" placeholder="search prompts, responses, rationales"></label>',
        '<button type="button" id="reset">reset</button>',
        f'<span class="count"><span id="paged"></span><span id="shown">{len(rows)}</span> of {len(rows)} match '
        f'<button type="button" id="more" hidden>show {5 * PAGE} more</button></span>',
    ]
    head_html = "".join(f"<th>{E(h)}</th>" for h in head)
    return (f'<section id="responses-section"><h2>Responses</h2><p class="note">Click a column header to sort; filters and sorting apply to all rows, shown a page at a time. '
            "“query in prompt” is the part of the prompt that differs between items (the template around it is "
            "folded into “full prompt”); “judged text” is what the judge read when it differs from the response "
            "(code extraction or back-translation).</p>"
            f'<div class="bar">{"".join(filters)}</div>'
            f'<table id="responses" class="sortable"><thead><tr>{head_html}</tr></thead><tbody>{"".join(body)}</tbody>'
            "</table></section>")


def _response_row(run: str | None, index: int, row: ResultRow, focus: str, scored: bool, judged_text: bool, *,
                  hidden: bool, marks: dict | None = None) -> str:
    attrs = {"run": run, "language": row.language, "tier": tier_name(row.language), "scenario": row.scenario,
             "category": row.category, "label": row.label, "finish": row.finish_reason or "pending", **(marks or {})}
    data = "".join(f' data-{k}="{E(v)}"' for k, v in attrs.items() if v is not None)
    cells = [*([td(run)] if run is not None else []), td(str(index), sort=index, cls="num"), td(row.prompt_id),
             td(row.language), td(row.scenario),
             td(f'<span class="pill {E(row.label)}">{E(row.label)}</span>', sort=row.label, raw=True)]
    if scored:
        parts = ", ".join(f"{k}={v}" for k, v in (row.parts or {}).items())
        cells.append(td("" if row.score is None else f"{row.score:g}" + (f" ({parts})" if parts else ""),
                        sort="" if row.score is None else row.score, cls="num"))
    cells.append(_text(row.query))
    prompt = "" if focus == row.prompt else (f"<details><summary>full prompt ({len(row.prompt)} characters)</summary>"
                                             f"<pre dir=\"auto\">{E(row.prompt)}</pre></details>")
    code = " code" if "\n" in focus else ""
    cells.append(f'<td class="text query"><div dir="auto" class="clip{code}">{E(focus)}</div>{prompt}</td>')
    if row.response is not None:
        cells.append(_text(row.response))
    else:
        cells.append(_text(f"(no response: {row.error or 'pending'})", "text muted"))
    finish = row.finish_reason or "pending"
    cut = " cut" if finish == "length" else ""
    cells.append(td(f'<span class="finish{cut}">{E(finish)}</span><br><span class="tokens">{row.completion_tokens} tokens'
                    "</span>", sort=row.completion_tokens, raw=True, cls="num"))
    if judged_text:
        shown = row.extracted if row.extracted is not None and row.extracted != row.response else ""
        cells.append(_text(shown))
    cells.append(_text(row.rationale or ""))
    return f"<tr{data}{' hidden' if hidden else ''}>" + "".join(cells) + "</tr>"


# -- judge checks and declared categories ----------------------------------------------------------------
DISAGREES = "disagrees"
CHECK_FILTERS = {"judgecheck": "second judge", "labelcheck": "human labels"}


def check_marks(run: RunRecord) -> dict[int, dict[str, str]]:
    """Item position -> the response filters that pick it out as a disagreement of the run's checks."""
    marks: dict[int, dict[str, str]] = {}
    for check in stored_checks(run):
        name = "judgecheck" if check["kind"] == "judge" else "labelcheck"
        for d in check["disagreements"]:
            marks.setdefault(d["position"], {})[name] = DISAGREES
    return marks


def checks_section(run: RunRecord) -> str:
    """Each check's figures and its disagreeing items, each linked to its response below."""
    out = []
    for check in stored_checks(run):
        name = "judgecheck" if check["kind"] == "judge" else "labelcheck"
        rows = [[td(str(d["position"] + 1), sort=d["position"], cls="num"),
                 td(f'<a href="{E(responses_link(**{name: DISAGREES}, language=d["language"], scenario=d["scenario"], text=d["prompt_id"]))}">'
                    f'{E(d["prompt_id"])}</a>', sort=d["prompt_id"], raw=True),
                 td(d["language"]), td(d["scenario"]), td(d["run_label"]), td(d["other_label"])]
                for d in check["disagreements"]]
        every = (f' <a href="{E(responses_link(**{name: DISAGREES}))}">show all {check["disagreeing"]} disagreeing '
                 "responses</a>" if check["disagreements"] else "")
        out.append(f'<p class="note">{E(check_line(check))}.{every}</p>'
                   + (table(["#", "id", "language", "scenario", "run's judge", CHECK_FILTERS[name]], rows) if rows else ""))
    return ('<h2 id="judge-checks">Judge checks</h2>' + "".join(out)) if out else ""


def categories_section(run: RunRecord, rows: Sequence[ResultRow]) -> str:
    counts = category_counts(run, rows)
    if not counts:
        return ""
    body = [[td(c["category"]), td(c["name"]), td(str(c["count"]), sort=c["count"], cls="num")] for c in counts]
    return (f'<h2 id="categories">Categories named by the judge</h2><p class="note">Over {counts[0]["unsafe_answers"]} '
            "answers judged unsafe (an answer may name several).</p>" + table(["category", "name", "answers"], body))


# -- the run page ---------------------------------------------------------------------------------------
def summary_table(stats: Sequence[GroupStats]) -> str:
    """The judge's declared figures per scenario and language: a rate's value and Wilson CI, a mean's value and CI."""
    declared = next((s.figures for s in stats if s.figures), ())
    head = ["scenario", "language", "tier", "n"]
    for f in declared:
        unit = "" if f.metric.kind == "mean_score" else " %"
        head += [f"{f.metric.name}{unit}", f"{f.metric.name} 95% CI"]
    head.append("error %")
    body = []
    for s in stats:
        scenario, language = s.group
        cells = [td(scenario), td(language), td(tier_name(language)), td(str(s.judged), sort=s.judged, cls="num")]
        for f in s.figures:
            if f.metric.kind == "mean_score":
                m = f.mean
                cells += [td("n/a" if m is None else f"{m.value:.2f}", sort="" if m is None else m.value, cls="num"),
                          td("" if m is None else f"[{m.low:.2f}, {m.high:.2f}]")]
            else:
                cells += rate_cells(f.rate)
        cells.append(td(f"{100 * s.error.value:.1f}", sort=s.error.value, cls="num"))
        body.append(cells)
    return table(head, body, table_id="languages")


def tier_table(rows: Sequence[ResultRow], setup: Setup | None = None) -> str:
    """Tiers, ratios, Avg and adaptive; the paper's columns only where the setup is comparable (report/setup.py)."""
    report = tier_report(rows, setup)
    with_reference = shows_reference(setup)
    models = reference_models(setup) if with_reference else ()
    name = report.metric.name
    head = ["scenario", "tier", "languages", f"{name} % (mean)", f"{name} % pooled", "pooled 95% CI", "invalid % (mean)",
            *(f"{m} (paper)" for m in models)]
    body = [[td(t.scenario), td(t.label), td(",".join(t.languages)),
             td(f"{100 * t.rate_mean:.1f}", sort=t.rate_mean, cls="num"), *rate_cells(t.rate_pooled),
             td(f"{100 * t.invalid_mean:.1f}", sort=t.invalid_mean, cls="num"),
             *(td(f"{t.reference[m]:.2f}", sort=t.reference[m], cls="num") if m in t.reference else td("", sort="")
               for m in models)]
            for t in report.tiers]
    ratios = "".join(f"<li>{E(s)}: LRL/HRL {E(_x(r['LRL/HRL']))}, MRL/HRL {E(_x(r['MRL/HRL']))}</li>"
                     for s, r in report.ratios.items())
    summaries = summaries_markdown(report.scenarios, models, name) if report.scenarios else ""
    hidden = "" if with_reference else ("<p class=\"note\">The paper's figures are hidden: no scenario's setup is "
                                        "comparable with the paper's (see setup).</p>")
    return (table(head, body, table_id="tiers") + f'<ul class="ratios">{ratios}</ul>' + hidden
            + (f'<pre class="summaries">{E(summaries)}</pre>' if summaries else ""))


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def pivot_table(rows: Sequence[ResultRow], metric: Metric | None = None) -> str:
    """Language x scenario, each cell coloured by its headline rate and linked to its responses."""
    metric = metric or UNSAFE_RATE
    languages = language_order(list(dict.fromkeys(r.language for r in rows)))
    scenarios = list(dict.fromkeys(r.scenario for r in rows))
    head = "".join(f"<th>{E(s)}</th>" for s in scenarios)
    body = []
    for language in languages:
        cells = [f'<th class="row">{E(language)}<span class="tier">{E(tier_name(language))}</span></th>']
        for scenario in scenarios:
            members = [r for r in rows if r.scenario == scenario and r.language == language]
            rate = rate_of(metric, members) if members else None
            cells.append(_heat_cell(rate, "", responses_link(language=language, scenario=scenario),
                                    f"{language} · {scenario}: {rate_text(rate)}"))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table id="pivot" class="heat"><thead><tr><th>language</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _heat_cell(rate: Rate | None, small: str, link: str, title: str) -> str:
    value = rate.value if rate is not None and rate.total else None
    background, colour = css_colours(value)
    big = "n/a" if value is None else f"{100 * value:.1f}"
    small_html = f'<span class="small">{E(small)}</span>' if small else ""
    return (f'<td class="cell" style="background:{background};color:{colour}" title="{E(title)}">'
            f'<a href="{E(link)}"><span class="big">{E(big)}</span>{small_html}</a></td>')


def _run_header(title: str, runs: Sequence[RunRecord], nav: str, extra: str = "",
                rows_of: dict[str, Sequence[ResultRow]] | None = None) -> str:
    rows_of = rows_of or {}
    meta = "".join(f'<div class="run-meta"><p class="meta">{"<b>" + E(r.name) + "</b> · " if len(runs) > 1 else ""}'
                   f"task <code>{E(r.task)}</code> · model <code>{E(r.model)}</code> · judge <code>{E(r.judge)}</code>"
                   f"</p>{_setup_block(r, rows_of.get(r.name))}</div>" for r in runs)
    return f"<h1>{E(title)}</h1>{meta}{extra}{nav}"


def render_html(data: ReportInput) -> str:
    rows, run = data.rows, data.run
    setup = describe_setup(run, rows)
    headline = headline_metric(setup)
    metric = headline.name
    header = _run_header(f"polysafe report: {run.name}", [run],
                         _nav(("pivot", "overview"), ("summary", "tables"), ("responses-section", "responses")),
                         f'<p class="meta">{len(rows)} items</p>', {run.name: rows})
    chart = ""
    if rows:
        png = base64.b64encode(chart_png(rows, title=f"{run.model} · {run.task}", subtitle=setup.subtitle(),
                                         metric=headline)).decode()
        chart = f'<img id="chart" class="chart" alt="{E(metric)} chart" src="data:image/png;base64,{png}">'
    sections = [f'<h2 id="pivot">{E(metric)}: language × scenario</h2>',
                '<p class="note">Click a cell to see its responses. Bars: Wilson 95% intervals.</p>',
                f'<div class="overview">{pivot_table(rows, headline)}{chart}</div>',
                '<h2 id="summary">Per scenario and language</h2>',
                '<p class="note">The judge\'s declared figures: rates over judged answers (invalid included, errors '
                'apart) with Wilson 95% intervals, mean scores with normal 95% intervals.</p>',
                summary_table(summarize(rows, by_scenario_language, setup.description))]
    if is_multilingual(rows):
        sections += ["<h2>Per resource tier</h2><p class=\"note\">Tier figure = plain mean of its languages' rates "
                     "(as the papers do); pooled = all the tier's responses together.</p>", tier_table(rows, setup)]
    if is_sampled(rows):
        sections.append(samples_table(sample_summaries(rows, rate_metric(judge_description(run, rows)))))
    sections += [s for s in (categories_section(run, rows), checks_section(run)) if s]
    sections.append(responses_section([RunRows(None, rows, check_marks(run))]))
    return page(f"polysafe report: {run.name}", header, sections)


def samples_table(summaries) -> str:
    k = summaries[0].samples
    head = ["scenario", "per-sample rate %", "prompt-clustered 95% CI", f"any-of-{k} %", "Wilson 95% CI", "prompts",
            "lowest sample %", "highest sample %", "sd (pp)"]
    body = []
    for s in summaries:
        spread = s.spread
        body.append([td(s.group), td(f"{100 * s.per_sample.value:.1f}", sort=s.per_sample.value, cls="num"),
                     td(f"{100 * s.per_sample.low:.1f} – {100 * s.per_sample.high:.1f}"), *rate_cells(s.any_of_k),
                     td(str(s.any_of_k.total), sort=s.any_of_k.total, cls="num"),
                     *(td(f"{100 * v:.1f}", sort=v, cls="num") if spread else td("n/a") for v in (spread or (0, 0, 0)))])
    return (f'<h2 id="sampling">Sampling: {k} answers per prompt</h2><p class="note">Per-sample rate over every '
            "answer, its interval clustered by prompt; any-of-K: prompts with at least one flagged answer; the "
            "spread is over the rates of the sample indexes (sample i drawn with seed + i).</p>"
            + table(head, body, table_id="samples"))


def write_html(data: ReportInput) -> Path:
    data.out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(data.out_dir) / f"{safe_filename(data.run.name)}.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path


# -- the comparison page --------------------------------------------------------------------------------
def heatmap_table(comparison: Comparison) -> str:
    head = "".join(f"<th>{E(r.name)}</th>" for r in comparison.runs)
    body = []
    for row in comparison.rows:
        cells = [f'<th class="row">{E(row.label)}</th>']
        for run, cell in zip(comparison.runs, row.cells):
            _, small = cell_lines(cell)
            title = f"{run.name} · {row.label}: {rate_text(cell.rate)}" + (f"; Δ {diff_text(cell)}" if cell.diff else "")
            cells.append(_heat_cell(cell.rate, small, responses_link(run=run.name, **row.filters(comparison.by)), title))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table id="heatmap" class="heat"><thead><tr><th>{E(comparison.group_title())}</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def comparison_table(comparison: Comparison) -> str:
    first = comparison.runs[0].name
    head = [comparison.group_title()]
    for index, run in enumerate(comparison.runs):
        head += [f"{run.name} %", "95% CI", "n"]
        if index:
            head += [f"Δ vs {first} (pp)", "Δ 95% CI", f"p ({comparison.correction})"]
    body = []
    for row in comparison.rows:
        cells = [td(row.label, cls="nowrap")]
        for index, cell in enumerate(row.cells):
            total = cell.rate.total if cell.rate else ""
            cells += [*rate_cells(cell.rate), td(str(total), sort=total, cls="num")]
            if index:
                d = cell.diff
                if d is None:
                    cells += [td("n/a", sort="", cls="num"), td("", sort="", cls="ci"), td("", sort="", cls="num")]
                else:
                    mark = " *" if cell.significant else ""
                    cells += [td(f"{signed_pp(d.value)}{mark}", sort=d.value, cls="num sig" if cell.significant else "num"),
                              td(f"[{signed_pp(d.low)}, {signed_pp(d.high)}]", sort=d.low, cls="ci"),
                              td(f"{cell.p_adjusted:.3g}", sort=cell.p_adjusted, cls="num")]
        body.append(cells)
    return table(head, body, table_id="comparison")


def render_comparison_html(comparison: Comparison, inputs: Sequence[ReportInput]) -> str:
    runs = [data.run for data in inputs]
    title = f"polysafe comparison: {' vs '.join(r.name for r in runs)}"
    header = _run_header(title, runs, _nav(("heatmap-section", "heatmap"), ("table-section", "table"),
                                           ("responses-section", "responses")))
    png = base64.b64encode(heatmap_png(comparison)).decode()
    sections = [
        f'<h2 id="heatmap-section">{E(comparison.metric)} by {E(comparison.by)}</h2>',
        f'<p class="note">{E(comparison.method())}. Small figures: Δ in percentage points. Click a cell to see its '
        "responses.</p>", f'<p class="note">{E(comparison.truncation_note())}.</p>',
        *([f'<p class="note warning" id="setup-differences"><strong>Not like for like:</strong> '
           f'{E("; ".join(comparison.differences))}.</p>'] if comparison.differences else []),
        heatmap_table(comparison),
        f'<details><summary>heatmap as a figure (PNG, {6.5:g} in wide)</summary>'
        f'<img id="heatmap-png" class="chart" alt="heatmap" src="data:image/png;base64,{png}"></details>',
        '<h2 id="table-section">Rates and differences</h2>', f'<div class="wide">{comparison_table(comparison)}</div>',
        responses_section([RunRows(data.run.name, data.rows, check_marks(data.run)) for data in inputs]),
    ]
    return page(title, header, sections)


@RENDERERS.register("html", summary="Self-contained HTML explorer: sortable tables, pivot, filterable responses (all escaped).")
def _html():
    def render(data: ReportInput) -> str:
        return str(write_html(data))

    return render


__all__ = ["render_html", "write_html", "render_comparison_html", "query_in_prompts"]
