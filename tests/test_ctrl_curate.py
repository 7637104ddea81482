"""A killed curation resumes from the store with zero repeated model calls (counted at fake OpenAI servers)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter

import pytest
from fakes import Reply, last_user_text
from test_ctrl_perplexity import load_tiny

from polysafe.data.ctrl_sets import CleanText
from polysafe.defenses.ctrl.beam import BeamConfig
from polysafe.defenses.ctrl.curate import CachedReviser, CachedScorer, CurationConfig, curate, curation_meta, write_curated
from polysafe.defenses.ctrl.revise import load_seed_phrases
from polysafe.defenses.ctrl.scoring import load_helpfulness
from polysafe.engine.store import Store
from polysafe.errors import BackendError
from polysafe.models import ModelOptions, load_model

TEXTS = [
    CleanText("t1", "How do I keep basil fresh?", "Put the stems in water on the counter."),
    CleanText("t2", "What is a prime number?", "A number with exactly two divisors."),
    CleanText("t3", "Why is the sky blue?", "Air scatters blue light more than red light."),
]
CONFIG = CurationConfig(BeamConfig(width=2, rounds=2, objective="max_ppl", floor=0.5), temperatures=(0.4, 1.0), top_ps=(0.9,), max_tokens=64)
FAST = ModelOptions(max_retries=1, backoff_base=0.01, concurrency=4)


def revision(body: dict) -> str:
    """A deterministic revision that depends on the answer being revised and on the sampling settings."""
    answer = re.search(r"Answer: (.*?)\n\nRules:", last_user_text(body), re.DOTALL).group(1)
    base = answer.split(" [")[0]
    depth = answer.count("[") + 1
    return f"Revised answer: {base} [responsible {depth} t={body['temperature']} p={body['top_p']}]"


def rating(body: dict) -> str:
    """An honest helpfulness judge: its verdict is its own final line (judges/helpfulness.py)."""
    text = last_user_text(body)
    n = 3 + text.count("responsible") % 3
    return f"Clear and relevant.\nRatings: relevance={n}, clarity=4, comprehensiveness={n}, usefulness=5"


def request_id(body: dict) -> tuple:
    return (last_user_text(body), body["temperature"], body["top_p"])


@pytest.fixture(scope="module")
def target():
    return load_tiny()


def run_curation(store, reviser_url, judge_url, target):
    reviser = CachedReviser(load_model(f"openai:fake@{reviser_url}", FAST), store, load_seed_phrases(), CONFIG)
    rater = load_helpfulness(f"openai:judge@{judge_url}", FAST)
    scorer = CachedScorer(target, rater, store)
    result = asyncio.run(curate(TEXTS, reviser, scorer, CONFIG, parallel=2))
    return result, reviser, scorer


def test_killed_curation_resumes_without_repeating_calls(fake_openai, target, tmp_path):
    # Reference: one uninterrupted curation in its own store.
    clean_reviser, clean_judge = fake_openai(revision), fake_openai(rating)
    with Store(tmp_path / "clean.db") as store:
        reference, _, _ = run_curation(store, clean_reviser.url, clean_judge.url, target)
    total = clean_reviser.received
    assert total > 6

    # The same curation, killed part-way: the reviser fails after 5 answers. The servers stay up across the
    # three runs (their URL is part of the model identity, hence of the cache keys).
    state = {"left": 5}
    answered: list[tuple] = []
    lock = threading.Lock()

    def flaky(body):
        with lock:
            if state["left"] <= 0:
                return Reply(status=500, text="down")
            state["left"] -= 1
            answered.append(request_id(body))
        return revision(body)

    reviser, judge = fake_openai(flaky), fake_openai(rating)
    with Store(tmp_path / "resume.db") as store:
        with pytest.raises(BackendError, match="run again to resume"):
            run_curation(store, reviser.url, judge.url, target)
    ok_before = set(answered)
    judged_before = [last_user_text(b) for b in judge.requests]
    assert len(ok_before) == 5

    # Resume with the reviser healthy again: nothing answered before is asked again.
    state["left"] = 10**6
    answered.clear()
    n_judged = len(judge.requests)
    with Store(tmp_path / "resume.db") as store:
        resumed, _, _ = run_curation(store, reviser.url, judge.url, target)
    asked_after = Counter(answered)
    assert not ok_before & set(asked_after), "a revision answered before the kill was requested again"
    assert all(n == 1 for n in asked_after.values())
    assert not set(judged_before) & {last_user_text(b) for b in judge.requests[n_judged:]}, "a rating was repeated"
    assert len(ok_before) + len(answered) == total  # together: exactly the calls of the uninterrupted run
    assert [r.curated for r in resumed] == [r.curated for r in reference]  # and the same result

    # A third run is served entirely from the store.
    received = (reviser.received, judge.received)
    with Store(tmp_path / "resume.db") as store:
        again, rev3, scorer3 = run_curation(store, reviser.url, judge.url, target)
    assert (reviser.received, judge.received) == received
    assert rev3.calls == 0 and scorer3.perplexity_calls == 0 and scorer3.rating_calls == 0
    assert [r.curated for r in again] == [r.curated for r in reference]


def test_output_records_original_and_curated_versions(fake_openai, target, tmp_path):
    from polysafe.training.lora import load_chat_jsonl

    reviser, judge = fake_openai(revision), fake_openai(rating)
    with Store(tmp_path / "s.db") as store:
        curated, rev, scorer = run_curation(store, reviser.url, judge.url, target)
        meta = curation_meta(CONFIG, target="tiny", reviser="fake", helpfulness=scorer.rater)
    out = tmp_path / "curated.jsonl"
    write_curated(out, curated, meta)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["t1", "t2", "t3"]
    for row, text in zip(rows, TEXTS):
        assert row["original"]["text"] == text.answer
        assert row["messages"][1]["content"] == row["curated"]["text"]
        assert row["objective"] == "max_ppl" and row["helpfulness"] == "llm"
        # The fake judge rates every revision 4.25 against the original's 3.75, so each text is revised.
        assert row["revised"] is True and row["curated"]["round"] in (1, 2)
        assert row["original"]["helpfulness"] == 3.75 and row["curated"]["helpfulness"] == 4.25
        assert row["curated"]["text"].startswith(text.answer + " [responsible ")  # the label "Revised answer:" is cut
    assert len(load_chat_jsonl(out)) == 3  # the training pipeline reads it as chat JSONL
    # Every text was revised with every grid setting, and each prompt names some shipped seed phrases.
    assert {(b["temperature"], b["top_p"]) for b in reviser.requests} == {(0.4, 0.9), (1.0, 0.9)}
    phrases = load_seed_phrases()
    assert all(sum(p in last_user_text(b) for p in phrases) >= 3 for b in reviser.requests)


def test_llm_rater_is_the_helpfulness_judge_and_the_heuristic_is_labelled(fake_openai):
    from polysafe.defenses.ctrl.scoring import HEURISTIC_NOTE, HeuristicHelpfulness

    judge = fake_openai(lambda body: "Quoting: Ratings: relevance=0, clarity=0, comprehensiveness=0, usefulness=0\n"
                                     "Ratings: relevance=5, clarity=4, comprehensiveness=3, usefulness=4")
    rater = load_helpfulness(f"openai:judge@{judge.url}", FAST)
    assert rater.identity.startswith("helpfulness/")
    (rated,) = asyncio.run(rater.rate([("What is a prime?", "A number with exactly two divisors.")]))
    assert rated.mean == 4.0 and rated.rubrics["comprehensiveness"] == 3 and rated.method == "llm"
    unreadable = fake_openai(lambda body: "Ratings: relevance=5, clarity=4, usefulness=4")  # a rubric is missing
    assert asyncio.run(load_helpfulness(f"openai:judge@{unreadable.url}", FAST).rate([("q", "a")])) == [None]
    meta = curation_meta(CONFIG, target="t", reviser="r", helpfulness=HeuristicHelpfulness())
    assert meta["helpfulness"] == "heuristic" and meta["helpfulness_note"] == HEURISTIC_NOTE and "weaker" in HEURISTIC_NOTE