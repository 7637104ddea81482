"""Curation end to end on scripted revisions and scores: it keeps the most (or least) perplexing revision that
clears the helpfulness floor; a failed rating is an error that is retried, never a 0; the offline rater must be
asked for explicitly with max_ppl."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from fakes import last_user_text
from test_ctrl_perplexity import load_tiny, tiny_llama_dir
from typer.testing import CliRunner

from polysafe.data.ctrl_sets import CleanText
from polysafe.defenses.ctrl.beam import BeamConfig, Scores
from polysafe.defenses.ctrl.curate import CachedReviser, CachedScorer, CurationConfig, curate, curation_meta, write_curated
from polysafe.defenses.ctrl.revise import load_seed_phrases
from polysafe.defenses.ctrl.scoring import Helpfulness, HelpfulnessRater, RatingCache
from polysafe.engine.store import Store
from polysafe.errors import BackendError, InputError
from polysafe.models import ModelOptions, load_model

TEMPERATURES = (0.2, 0.6, 1.0)  # one revision per temperature
# Revisions of each answer, one per temperature, and (perplexity, helpfulness) of every text.
# The original O rates 4.0, so the floor 0.9 needs 3.6.
REVISIONS = {"O": ["A", "B", "C"], "B": ["B1", "B2", "B3"], "C": ["C1", "C2", "C3"]}
SCORES = {
    "O": (10, 4.0),
    "A": (40, 2.0),  # the most perplexing of round 1, garbled: under the floor
    "B": (25, 3.9), "C": (12, 4.4),
    "B1": (60, 1.0), "B2": (22, 3.7), "B3": (35, 3.59),  # B3 misses the floor by 0.01
    "C1": (30, 3.6),  # exactly at the floor: kept
    "C2": (9, 4.6), "C3": (3, 2.0),  # C3 would be the least perplexing, but is under the floor
}


def scripted_revision(body: dict) -> str:
    answer = re.search(r"Answer: (.*?)\n\nRules:", last_user_text(body), re.DOTALL).group(1)
    return "Revised answer: " + REVISIONS[answer][TEMPERATURES.index(body["temperature"])]


class ScriptedScorer:
    def __init__(self):
        self.scored: list[str] = []

    async def score(self, query, answers):
        self.scored += answers
        return [Scores(*SCORES[a]) for a in answers]  # an unscripted text fails the test


@pytest.mark.parametrize("objective, width, expected", [
    ("max_ppl", 2, "C1"),  # highest ppl clearing the floor: C1 30 (A 40, B1 60, B3 35 are under it)
    ("max_ppl", 1, "B"),  # a beam of one revises only B (25): B2 22 is lower, so B from round 1 stays best
    ("min_ppl", 2, "C2"),  # lowest clearing the floor: C2 9 (C3 3 is under it)
    ("min_ppl", 1, "C2"),  # a beam of one revises only C (12): C2 9
])
def test_curation_keeps_the_right_revision_that_clears_the_floor(fake_openai, tmp_path, objective, width, expected):
    server = fake_openai(scripted_revision)
    config = CurationConfig(BeamConfig(width=width, rounds=2, objective=objective, floor=0.9), temperatures=TEMPERATURES,
                            top_ps=(0.9,), max_tokens=32)
    with Store(tmp_path / "s.db") as store:
        reviser = CachedReviser(load_model(f"openai:fake@{server.url}", ModelOptions(max_retries=0)), store,
                                load_seed_phrases(), config)
        scorer = ScriptedScorer()
        [item] = asyncio.run(curate([CleanText("t", "Q?", "O")], reviser, scorer, config))
    out = tmp_path / "curated.jsonl"
    write_curated(out, [item], {"objective": objective})
    row = json.loads(out.read_text())
    assert row["messages"][1]["content"] == expected  # what training will read
    assert row["curated"]["perplexity"] == SCORES[expected][0] and row["revised"] is True
    assert row["original"]["helpfulness"] == 4.0
    assert len(scorer.scored) == len(set(scorer.scored))  # each text scored once


class FlakyRater(HelpfulnessRater):
    """Fails (None) for the texts in `failing`, `times` times each (forever when times is None), else 4.0."""

    identity = "helpfulness/flaky"
    method = "llm"

    def __init__(self, failing: set[str], times: int | None = 1):
        self.failing, self.times = failing, times
        self.asked: list[str] = []

    async def rate(self, pairs):
        out = []
        for _, answer in pairs:
            self.asked.append(answer)
            fails = answer in self.failing and (self.times is None or self.asked.count(answer) <= self.times)
            out.append(None if fails else Helpfulness(4.0, {"relevance": 4.0}, "llm"))
        return out


def test_a_failed_rating_is_retried_not_scored_zero(tmp_path):
    with Store(tmp_path / "s.db") as store:
        rater = FlakyRater({"original"}, times=2)
        [rating] = asyncio.run(RatingCache(rater, store, attempts=3).rate([("q", "original")]))
        assert rating.mean == 4.0 and rater.asked == ["original"] * 3  # two failures, then a reading


def test_a_rating_that_keeps_failing_stops_curation_and_is_never_stored(fake_openai, tmp_path):
    target = load_tiny()
    texts = [CleanText("t", "How do I keep basil fresh?", "original")]
    config = CurationConfig(BeamConfig(width=1, rounds=1, floor=0.9), temperatures=(0.5,), top_ps=(1.0,))
    server = fake_openai(lambda body: "a garbled revision")

    with Store(tmp_path / "s.db") as store:
        def reviser():
            return CachedReviser(load_model(f"openai:fake@{server.url}"), store, load_seed_phrases(), config)

        broken = FlakyRater({"original"}, times=None)
        with pytest.raises(BackendError, match="no readable rating for 1 of 1 answers after 3 attempts"):
            asyncio.run(curate(texts, reviser(), CachedScorer(target, broken, store), config))
        assert broken.asked == ["original"] * 3
        assert not store.memo_get_many("ctrl-help", [store_key(broken, "original")])  # nothing cached as 0

        # An entry an earlier version stored for a failure (mean 0, no rubrics) is not trusted either.
        healthy = FlakyRater(set())
        store.memo_put("ctrl-help", store_key(healthy, "original"), json.dumps({"mean": 0.0, "rubrics": None}))
        rated = {"original": 4.0, "a garbled revision": 1.0}

        class Picky(FlakyRater):
            async def rate(self, pairs):
                self.asked += [a for _, a in pairs]
                return [Helpfulness(rated[a], {"relevance": rated[a]}, "llm") for _, a in pairs]

        picky = Picky(set())
        [item] = asyncio.run(curate(texts, reviser(), CachedScorer(target, picky, store), config))
    assert "original" in picky.asked  # re-rated, so the floor is 0.9 x 4.0, not 0
    assert item.original.helpfulness == 4.0 and item.curated.text == "original" and item.dropped == 1


def store_key(rater, answer):
    from polysafe.keys import content_key

    return content_key("ctrl-help", rater.identity, "How do I keep basil fresh?", answer)


def test_max_ppl_with_the_offline_rater_needs_the_flag(fake_openai, tmp_path):
    from polysafe.cli import app

    server = fake_openai(lambda body: "Revised answer: Keep the stems in water, away from the cold.")
    texts = tmp_path / "texts.jsonl"
    texts.write_text(json.dumps({"instruction": "How do I keep basil fresh?", "output": "Put it in water."}) + "\n")
    args = ["defend", "ctrl", "curate", "--texts", str(texts), "--out", str(tmp_path / "c.jsonl"),
            "--target", f"hf:{tiny_llama_dir()}", "--reviser", f"openai:fake@{server.url}", "--db", str(tmp_path / "s.db"),
            "--beam-width", "1", "--rounds", "1", "--temperatures", "0.5", "--top-ps", "1.0", "--max-tokens", "16"]
    refused = CliRunner().invoke(app, args)
    assert isinstance(refused.exception, InputError) and refused.exception.exit_code == 2
    assert "--allow-offline-rater" in str(refused.exception) and server.received == 0  # stopped before any call
    assert not (tmp_path / "c.jsonl").exists()

    allowed = CliRunner().invoke(app, args + ["--allow-offline-rater"])
    assert allowed.exit_code == 0, allowed.output
    assert "warning: max_ppl curation with the offline heuristic rater" in allowed.output
    row = json.loads((tmp_path / "c.jsonl").read_text())
    assert row["helpfulness"] == "heuristic" and "blind to correctness" in row["helpfulness_note"]

    lowest = CliRunner().invoke(app, args + ["--objective", "min_ppl", "--out", str(tmp_path / "m.jsonl")])
    assert lowest.exit_code == 0 and "warning" not in lowest.output  # min_ppl does not chase perplexity
    meta = curation_meta(CurationConfig(), target="t", reviser="r", helpfulness=FlakyRater(set()))
    assert "helpfulness_note" not in meta
