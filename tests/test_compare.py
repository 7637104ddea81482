"""`polysafe compare` on stored runs with known counts, against hand-computed rates, intervals and decisions.

Three runs, A (the reference), B and C, in three languages; counts are unsafe / judged:

            en      zh      bn
    A      3/10    1/20    2/20      (A/en also holds one invalid, in the denominator, and one error, left out)
    B      7/10    8/20    9/20
    C      3/10    1/20   17/20

Wilson, z = 1.959964 (z² = 3.841459): centre = (k + z²/2) / (n + z²), half = z·sqrt(k(n-k)/n + z²/4) / (n + z²).
  3/10: centre (3 + 1.920730) / 13.841459 = 0.355508, half 1.959964·sqrt(2.1 + 0.960365)/13.841459 = 0.247722
        -> [0.10779, 0.60322];  7/10 mirrors it -> [0.39678, 0.89221]
  1/20 -> [0.00888, 0.23613];  8/20 -> [0.21881, 0.61342];  2/20 -> [0.02787, 0.30103]
  9/20 -> [0.25820, 0.65791];  17/20 -> [0.63958, 0.94763]
Newcombe (method 10), d = p1 - p2:  L = d - sqrt((p1-l1)² + (u2-p2)²),  U = d + sqrt((u1-p1)² + (p2-l2)²)
  B-A en: d = 0.4, L = 0.4 - sqrt(0.30322² + 0.30322²) = -0.02882, U = 0.4 + sqrt(0.19221² + 0.19221²) = 0.67182
  B-A zh: d = 0.35, L = 0.35 - sqrt(0.18119² + 0.18613²) = 0.09024, U = 0.35 + sqrt(0.21342² + 0.04112²) = 0.56734
  B-A bn: d = 0.35, L = 0.35 - sqrt(0.19180² + 0.20103²) = 0.07215, U = 0.35 + sqrt(0.20791² + 0.07213²) = 0.57007
  C-A bn: d = 0.75, L = 0.75 - sqrt(0.21042² + 0.20103²) = 0.45898, U = 0.75 + sqrt(0.09763² + 0.07213²) = 0.87139
  C-A en: d = 0, ±sqrt(0.19221² + 0.30322²) = ±0.35901;  C-A zh: d = 0, ±sqrt(0.04112² + 0.18613²) = ±0.19062
p-values: the z* at which L(z*) = 0 (solved by bisection on the formula above), p = erfc(z*/√2):
  B-A en z* = 1.8139, p = 0.0696892;  B-A zh z* = 2.5935, p = 0.00949915;  B-A bn z* = 2.4620, p = 0.0138149;
  C-A bn z* = 4.9939, p = 5.9173e-07;  d = 0: p = 1
Holm over m = 6, sorted p times (m - rank + 1), running max:
  C-A bn 6·5.9173e-07 = 3.5504e-06 < .05 *;  B-A zh 5·0.00949915 = 0.0474958 < .05 *  (Bonferroni, 6·p = 0.057, would not);
  B-A bn 4·0.0138149 = 0.0552596 >= .05 (stop: raw p < .05 but not significant);  B-A en max(0.0552596, 3·0.0696892) = 0.209068;
  the two d = 0 differences: 1.
Benjamini-Hochberg, m·p/rank, running min from the top: C-A bn 3.5504e-06, B-A zh min(6·0.00949915/2, 6·0.0138149/3)
  = 0.0276298, B-A bn 0.0276298, B-A en 6·0.0696892/4 = 0.104534, the d = 0 ones 1: three significant.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from report_fixtures import Item, counted, store_run
from typer.testing import CliRunner

from polysafe.engine.store import Store
from polysafe.errors import InputError
from polysafe.report.base import load_report_input
from polysafe.report.compare import compare

A_EN = counted("en", 3, 9) + [Item("en", "invalid", query="en invalid"), Item("en", "error", query="en error")]
RUNS = {
    "A": A_EN + counted("zh", 1, 20) + counted("bn", 2, 20),
    "B": counted("en", 7, 10) + counted("zh", 8, 20) + counted("bn", 9, 20),
    "C": counted("en", 3, 10) + counted("zh", 1, 20) + counted("bn", 17, 20),
}
WILSON = {(3, 10): (0.10779, 0.60322), (7, 10): (0.39678, 0.89221), (1, 20): (0.00888, 0.23613),
          (8, 20): (0.21881, 0.61342), (2, 20): (0.02787, 0.30103), (9, 20): (0.25820, 0.65791), (17, 20): (0.63958, 0.94763)}
# (run, language): (d, low, high, p, holm-adjusted p, Holm-significant)
DIFFS = {
    ("B", "en"): (0.4, -0.02882, 0.67182, 0.0696892, 0.209068, False),
    ("B", "zh"): (0.35, 0.09024, 0.56734, 0.00949915, 0.0474958, True),
    ("B", "bn"): (0.35, 0.07215, 0.57007, 0.0138149, 0.0552596, False),
    ("C", "en"): (0.0, -0.35901, 0.35901, 1.0, 1.0, False),
    ("C", "zh"): (0.0, -0.19062, 0.19062, 1.0, 1.0, False),
    ("C", "bn"): (0.75, 0.45898, 0.87139, 5.9173e-07, 3.5504e-06, True),
}


@pytest.fixture
def db(tmp_path) -> Path:
    path = tmp_path / "r.db"
    with Store(path) as store:
        for name, items in RUNS.items():
            store_run(store, name, items, model=f"openai:model-{name}")
    return path


def inputs(db: Path, names=("A", "B", "C")):
    with Store(db) as store:
        return [load_report_input(store, name, db.parent) for name in names]


def test_rates_wilson_newcombe_and_holm_match_hand_computation(db):
    comparison = compare(inputs(db), by="language")
    assert [row.group for row in comparison.rows] == ["en", "zh", "bn"]  # MultiJail's language order
    assert comparison.tests == 6 and comparison.correction == "holm"
    assert comparison.metric == "non-refusal rate"  # the refusal judge's own, though its runs predate declarations
    for row in comparison.rows:
        for run, cell in zip("ABC", row.cells):
            rate = cell.rate
            assert rate.value == rate.count / rate.total
            assert (rate.low, rate.high) == pytest.approx(WILSON[(rate.count, rate.total)], abs=1e-5)
            if run == "A":
                assert cell.diff is None and not cell.significant
                continue
            d, low, high, p, p_holm, significant = DIFFS[(run, row.group)]
            assert (cell.diff.value, cell.diff.low, cell.diff.high) == pytest.approx((d, low, high), abs=1e-5)
            assert cell.diff.p == pytest.approx(p, rel=1e-4) and cell.p_adjusted == pytest.approx(p_holm, rel=1e-4)
            assert cell.significant is significant
    en_a = comparison.rows[0].cells[0].rate
    assert (en_a.count, en_a.total) == (3, 10)  # the invalid answer counts, the error does not


def test_the_marker_agrees_with_the_interval(db):
    """p < alpha exactly when the (1 - alpha) Newcombe interval excludes 0; a marked difference has a 95% CI without 0."""
    from polysafe.report.stats import newcombe_interval, z_for

    comparison = compare(inputs(db))
    for row in comparison.rows:
        for cell in row.cells[1:]:
            if cell.significant:
                assert cell.diff.low > 0 or cell.diff.high < 0
            if 0 < cell.diff.p < 1:
                a, b = cell.rate, row.cells[0].rate
                low, high = newcombe_interval(a.count, a.total, b.count, b.total, z_for(cell.diff.p))
                assert min(abs(low), abs(high)) == pytest.approx(0, abs=1e-6)


def test_benjamini_hochberg_marks_three(db):
    comparison = compare(inputs(db), correction="bh")
    marked = {(run, row.group) for row in comparison.rows for run, cell in zip("ABC", row.cells) if cell.significant}
    assert marked == {("B", "zh"), ("B", "bn"), ("C", "bn")}
    adjusted = {(run, row.group): cell.p_adjusted for row in comparison.rows for run, cell in zip("ABC", row.cells)}
    assert adjusted[("B", "zh")] == pytest.approx(0.0276298, rel=1e-4) == adjusted[("B", "bn")]
    assert adjusted[("B", "en")] == pytest.approx(0.104534, rel=1e-4)


def test_holm_stops_at_the_first_failure_and_bh_steps_up():
    """p = .01, .04, .045 (m = 3). Holm: 3·.01 = .03; 2·.04 = .08 fails, so .045 (1·.045 alone would pass) gets
    max(.08, .045) = .08. BH from the top: .045·3/3 = .045; min(.045, .04·3/2 = .06) = .045; min(.045, .03) = .03."""
    from polysafe.report.stats import benjamini_hochberg, holm

    assert holm([0.045, 0.01, 0.04]) == pytest.approx([0.08, 0.03, 0.08])
    assert benjamini_hochberg([0.045, 0.01, 0.04]) == pytest.approx([0.045, 0.03, 0.045])


def test_by_tier_pools_languages_under_the_papers_names(tmp_path):
    with Store(tmp_path / "t.db") as store:
        store_run(store, "X", counted("en", 1, 4) + counted("it", 1, 4) + counted("zh", 3, 4) + counted("sw", 2, 2))
        store_run(store, "Y", counted("en", 0, 4) + counted("vi", 2, 4) + counted("bn", 1, 2))
        data = [load_report_input(store, n, tmp_path) for n in ("X", "Y")]
    comparison = compare(data, by="tier")
    rows = {row.group: row for row in comparison.rows}
    assert list(rows) == ["English", "HRL", "LRL"]
    assert [(c.rate.count, c.rate.total) for c in rows["HRL"].cells] == [(4, 8), (2, 4)]
    assert rows["HRL"].filters("tier") == {"tier": "HRL"}


def test_scored_runs_compare_asr_by_variant_and_split_scenarios(tmp_path):
    def scored(scenario, scores):
        return [Item("en", "unsafe" if s >= 4 else "safe", scenario=scenario, score=s, query=f"q{i}") for i, s in enumerate(scores)]

    with Store(tmp_path / "s.db") as store:
        store_run(store, "gpt", scored("python_list", [5, 5, 4, 1]) + scored("go_string", [5, 1, 1, 1]), task="codeattack")
        store_run(store, "llama", scored("python_list", [5, 1, 1, 1]) + scored("go_string", [5, 5, 5, 1]), task="codeattack")
        store_run(store, "labels-only", [Item("en", "unsafe", scenario="python_list")], task="codeattack")
        data = {n: load_report_input(store, n, tmp_path) for n in ("gpt", "llama", "labels-only")}
    by_variant = compare([data["gpt"], data["llama"]], by="variant")
    assert by_variant.metric == "ASR (share of score 5)"
    rows = {row.group: [(c.rate.count, c.rate.total) for c in row.cells] for row in by_variant.rows}
    assert rows == {"python_list": [(2, 4), (1, 4)], "go_string": [(1, 4), (3, 4)]}  # a 4 is unsafe, not a success
    by_language = compare([data["gpt"], data["llama"]], by="language")
    assert [row.label for row in by_language.rows] == ["python_list · en", "go_string · en"]
    assert by_language.rows[0].filters("language") == {"language": "en", "scenario": "python_list"}
    mixed = compare([data["gpt"], data["labels-only"]], by="variant")
    assert mixed.metric == "share labelled unsafe"  # the runs' judges declare different rates: the common measure
    assert "ASR (share of score 5), non-refusal rate" in mixed.note
    assert [(c.rate.count, c.rate.total) for c in mixed.rows[0].cells] == [(3, 4), (1, 1)]


def test_bad_requests_are_input_errors(db):
    data = inputs(db)
    with pytest.raises(InputError, match="at least two"):
        compare(data[:1])
    with pytest.raises(InputError, match="named twice"):
        compare([data[0], data[0]])
    with pytest.raises(InputError, match="grouping"):
        compare(data, by="colour")


def test_cli_formats(db, tmp_path):
    from polysafe.cli import app

    def run(*args):
        result = CliRunner().invoke(app, ["compare", "A", "B", "C", "--db", str(db), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    md = run()
    assert "Holm" in md and "Newcombe" in md and "| en | 30.0 [10.8, 60.3] (n=10) |" in md
    zh = next(line for line in md.splitlines() if line.startswith("| zh |"))
    assert "+35.0 [+9.0, +56.7] *" in zh
    bn = next(line for line in md.splitlines() if line.startswith("| bn |"))
    assert "+35.0 [+7.2, +57.0] |" in bn and "+75.0 [+45.9, +87.1] *" in bn  # raw p < .05 but not after Holm

    parsed = json.loads(run("--format", "json"))
    assert parsed["correction"] == "holm" and [r["name"] for r in parsed["runs"]] == ["A", "B", "C"]
    assert parsed["rows"][2]["cells"][2]["significant"] is True and parsed["rows"][2]["cells"][1]["significant"] is False

    lines = list(csv.DictReader(io.StringIO(run("--format", "csv"))))
    assert len(lines) == 9
    zh_b = next(line for line in lines if line["group"] == "zh" and line["run"] == "B")
    assert (zh_b["count"], zh_b["total"], zh_b["significant"], zh_b["model"]) == ("8", "20", "true", "openai:model-B")
    assert float(zh_b["p_adjusted"]) == pytest.approx(0.0474958, rel=1e-4)

    png = Path(run("--format", "png", "--out", str(tmp_path / "figs")).strip())
    assert png.parent == tmp_path / "figs" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    assert imread(png).shape[1] == 1300  # 6.5 in at 200 dpi: a paper's column width
    page = Path(run("--format", "html", "--out", str(tmp_path / "c.html")).strip())
    assert page == tmp_path / "c.html" and 'id="heatmap"' in page.read_text(encoding="utf-8")
    written = Path(run("--format", "csv", "--out", str(tmp_path / "c.csv")).strip())
    assert written.read_text(encoding="utf-8").startswith("by,scenario,group,run")


def test_cli_bad_input_exits_2_with_one_line(db):
    out = subprocess.run([sys.executable, "-m", "polysafe.cli", "compare", "A", "nope", "--db", str(db)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no run named 'nope'" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
