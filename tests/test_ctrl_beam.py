"""CTRL beam search on a scripted reviser and a fake scorer: it keeps exactly what the objective dictates."""

from __future__ import annotations

import asyncio

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


# A deeper script worked out by hand (floor 0.9 x 3.0 = 2.7), width 2, three rounds.
#   round 1, from o:        p (9, 3.0)  q (14, 2.0: under)  r (6, 2.7: exactly the floor)  s (2, 4.0)
#   max_ppl keeps p, r; round 2 revises them: p -> p1 (5, 3.5) p2 (7, 2.9); r -> r1 (4, 2.8) r2 (30, 1.0: under)
#     the round-2 beam is p2, p1 (both below p's 9); round 3 revises p2, p1: p2 -> x (8, 3.0), p1 -> y (8, 3.2)
#     ties at ppl 8 go to the more helpful: y, x. Best of all kept: p (9), from round 1.
#   min_ppl keeps s, r; round 2: s -> s1 (1, 2.6: under) s2 (3, 3.1); r -> r1 (4, 2.8) r2 (under)
#     beam s2, r1; round 3: s2 -> z (3, 3.3); r1 -> r, seen before, so neither scored nor kept
#     the beam is z alone; best of all: s (2), from round 1.
DEEP = {
    "o": (10, 3.0), "p": (9, 3.0), "q": (14, 2.0), "r": (6, 2.7), "s": (2, 4.0),
    "p1": (5, 3.5), "p2": (7, 2.9), "r1": (4, 2.8), "r2": (30, 1.0), "s1": (1, 2.6), "s2": (3, 3.1),
    "x": (8, 3.0), "y": (8, 3.2), "z": (3, 3.3),
}
DEEP_SCRIPT = {"o": ["p", "q", "r", "s"], "p": ["p1", "p2"], "r": ["r1", "r2"], "s": ["s1", "s2"],
               "p2": ["x"], "p1": ["y"], "s2": ["z"], "r1": ["r"]}


def deep(objective):
    reviser, scorer = ScriptedReviser(DEEP_SCRIPT), FakeScorer(DEEP)
    result = asyncio.run(beam_search("q", "o", reviser, scorer, BeamConfig(width=2, rounds=3, objective=objective)))
    return result, reviser


def test_max_ppl_hand_worked_three_rounds():
    result, reviser = deep("max_ppl")
    assert [texts(b) for b in result.beams] == [["p", "r"], ["p2", "p1"], ["y", "x"]]
    assert reviser.asked == [["o"], ["p", "r"], ["p2", "p1"]]
    assert result.best.text == "p" and result.best.round == 1  # the best may come from an earlier round
    assert result.dropped == 2  # q, r2


def test_min_ppl_hand_worked_three_rounds():
    result, reviser = deep("min_ppl")
    assert [texts(b) for b in result.beams] == [["s", "r"], ["s2", "r1"], ["z"]]
    assert reviser.asked == [["o"], ["s", "r"], ["s2", "r1"]]  # r1's revision "r" was seen before: not rescored
    assert result.best.text == "s" and result.best.parent == "o"
    assert result.dropped == 3  # q, s1, r2


def test_rank_breaks_ties_by_helpfulness_then_text():
    from polysafe.defenses.ctrl.beam import Candidate

    tied = [Candidate("b", 8, 3.0, 1), Candidate("a", 8, 3.0, 1), Candidate("c", 8, 3.5, 1), Candidate("d", 9, 1.0, 1)]
    assert texts(rank(tied, "max_ppl")) == ["d", "c", "a", "b"]
    assert texts(rank(tied, "min_ppl")) == ["c", "a", "b", "d"]
