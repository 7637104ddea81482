"""CTRL beam search on a scripted reviser and a fake scorer: it keeps exactly what the objective dictates."""

from __future__ import annotations

import asyncio
import random

import pytest

from polysafe.defenses.ctrl.beam import BeamConfig, Scores, beam_search, rank


class ScriptedReviser:
    def __init__(self, script: dict[str, list[str]]):
        self.script = script
        self.asked: list[list[str]] = []  # the beam texts of each round, in order

    async def revise(self, query, answers):
        self.asked.append(list(answers))
        return [list(self.script.get(a, [])) for a in answers]


class FakeScorer:
    def __init__(self, table: dict[str, tuple[float, float]]):
        self.table = table
        self.scored: list[str] = []

    async def score(self, query, answers):
        self.scored.extend(answers)
        return [Scores(*self.table[a]) for a in answers]


# text: (perplexity, helpfulness). The original's helpfulness is 4, so the floor 0.9 needs >= 3.6.
TABLE = {
    "o": (10, 4.0),
    "a": (12, 4.0), "b": (8, 4.0), "c": (15, 3.8), "d": (20, 1.0), "e": (11, 4.5),
    "c1": (30, 4.0), "c2": (5, 4.0), "a1": (18, 3.7), "a2": (25, 2.0),
    "b1": (3, 4.0), "b2": (9, 4.0), "e1": (7, 3.9), "e2": (1, 3.0),
}
SCRIPT = {"o": ["a", "b", "c", "d", "e"], "c": ["c1", "c2"], "a": ["a1", "a2", "c"], "b": ["b1", "b2"], "e": ["e1", "e2", "b"]}


def search(objective, width=2, rounds=2, script=SCRIPT):
    reviser, scorer = ScriptedReviser(script), FakeScorer(TABLE)
    result = asyncio.run(beam_search("q", "o", reviser, scorer, BeamConfig(width=width, rounds=rounds, objective=objective)))
    return result, reviser, scorer


def texts(candidates):
    return [c.text for c in candidates]


def test_max_ppl_keeps_the_highest_perplexities_above_the_floor():
    result, reviser, scorer = search("max_ppl")
    # Round 1: d (ppl 20) is under the floor; of a 12, b 8, c 15, e 11 the two highest are c and a.
    assert texts(result.beams[0]) == ["c", "a"]
    # Round 2 revises exactly the kept beam; a2 (ppl 25) is under the floor, c was already seen.
    assert reviser.asked == [["o"], ["c", "a"]]
    assert texts(result.beams[1]) == ["c1", "a1"]
    assert result.best.text == "c1" and result.best.round == 2 and result.best.parent == "c"
    assert result.dropped == 2  # d and a2
    assert scorer.scored.count("c") == 1  # a text proposed twice is scored once


def test_min_ppl_keeps_the_lowest_perplexities_above_the_floor():
    result, reviser, _ = search("min_ppl")
    assert texts(result.beams[0]) == ["b", "e"]
    assert reviser.asked == [["o"], ["b", "e"]]
    # e2 (ppl 1) fails the floor; b is not new; b1 3, e1 7, b2 9 -> b1, e1.
    assert texts(result.beams[1]) == ["b1", "e1"]
    assert result.best.text == "b1"
    assert result.dropped == 2  # d and e2


def test_width_and_rounds_bound_the_search():
    result, reviser, _ = search("max_ppl", width=3, rounds=1)
    assert len(result.beams) == 1 and len(reviser.asked) == 1
    assert texts(result.beams[0]) == ["c", "a", "e"]
    assert result.best.text == "c"


def test_no_candidate_above_the_floor_keeps_the_original():
    result, reviser, _ = search("max_ppl", script={"o": ["d"]})
    assert not result.revised and result.best.text == "o"
    assert reviser.asked == [["o"], ["o"]]  # the unchanged beam is revised again next round
    assert result.dropped == 1


@pytest.mark.parametrize("objective", ["max_ppl", "min_ppl"])
def test_random_scripts_match_brute_force(objective):
    rng = random.Random(7 if objective == "max_ppl" else 11)
    for trial in range(20):
        table = {"o": (rng.uniform(2, 20), 3.0)}
        script = {}
        frontier = ["o"]
        for depth in range(3):  # every text of depth d has 4 revisions of depth d+1
            nxt = []
            for parent in frontier:
                kids = [f"{parent}.{i}" for i in range(4)]
                script[parent] = kids
                for kid in kids:
                    table[kid] = (rng.uniform(2, 20), rng.uniform(1.5, 5))
                nxt.extend(kids)
            frontier = nxt
        reviser, scorer = ScriptedReviser(script), FakeScorer(table)
        result = asyncio.run(beam_search("q", "o", reviser, scorer, BeamConfig(width=3, rounds=3, objective=objective, floor=0.9)))
        beam = ["o"]
        for round_ in range(3):
            pool = [k for p in beam for k in script[p] if table[k][1] >= 0.9 * 3.0]
            if pool:
                sign = -1 if objective == "max_ppl" else 1
                beam = sorted(pool, key=lambda t: (sign * table[t][0], -table[t][1], t))[:3]
            assert texts(result.beams[round_]) == beam, f"trial {trial} round {round_}"
        kept = [c for b in result.beams for c in b]
        assert result.best == rank(kept, objective)[0]
