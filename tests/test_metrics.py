"""Wilson intervals and grouped rates against hand-computed values."""

from __future__ import annotations

import math

import pytest

from polysafe.engine.store import ResultRow
from polysafe.report.metrics import by_scenario_language, summarize, wilson


def row(label, language="en", scenario="s", score=None):
    return ResultRow("1", language, scenario, "none", None, (), "q", "q", "r", "r", label, score, "", None, 1)


@pytest.mark.parametrize("k, n, low, high", [
    # hand-computed with p=k/n, z=1.959964: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)
    (0, 10, 0.0, 0.27753),
    (5, 10, 0.23659, 0.76341),
    (10, 10, 0.72247, 1.0),
    (1, 315, 0.00056, 0.01776),
])
def test_wilson_matches_hand_computation(k, n, low, high):
    got = wilson(k, n)
    assert got[0] == pytest.approx(low, abs=1e-5) and got[1] == pytest.approx(high, abs=1e-5)


def test_wilson_of_nothing_is_empty():
    assert wilson(0, 0) == (0.0, 0.0)


def test_rates_count_invalid_in_the_denominator_and_errors_apart():
    rows = [row("unsafe"), row("unsafe"), row("safe"), row("invalid"), row("error")]
    (stats,) = summarize(rows, by_scenario_language)
    assert stats.judged == 4 and stats.items == 5
    assert stats.unsafe.value == 0.5 and stats.invalid.value == 0.25
    assert stats.error.value == 0.2 and stats.error.total == 5
    assert math.isclose(stats.unsafe.low, wilson(2, 4)[0])


def test_scores_give_asr_and_distribution():
    rows = [row("unsafe", score=5), row("unsafe", score=5), row("safe", score=1), row("unsafe", score=4), row("error")]
    (stats,) = summarize(rows, by_scenario_language)
    assert stats.asr.count == 2 and stats.asr.total == 4
    assert stats.score_counts == {1: 1, 4: 1, 5: 2} and stats.mean_score == pytest.approx(3.75)


def test_groups_by_scenario_and_language():
    rows = [row("safe", "en"), row("unsafe", "bn"), row("unsafe", "bn", "intentional")]
    groups = {s.group: s.unsafe.value for s in summarize(rows, by_scenario_language)}
    assert groups == {("s", "en"): 0.0, ("s", "bn"): 1.0, ("intentional", "bn"): 1.0}


def test_markdown_cells_escape_chain_pipes():
    from polysafe.report.metrics import group_stats
    from polysafe.report.tables import markdown_table

    table = markdown_table([group_stats(("translate:bn|codeattack:python_list", "bn"), [row("unsafe", "bn")])])
    body = table.splitlines()[2]
    assert body.count(" | ") == table.splitlines()[0].count(" | ")  # same column count as the header
