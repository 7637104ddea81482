"""The helpfulness judge (CTRL's four 0-5 rubrics) against a fake judge server: ratings, and errors that are
never a rating of 0."""

from __future__ import annotations

import re

from fakes import Reply, judged, last_user_text

from polysafe.judges import load_judge
from polysafe.judges.helpfulness import RUBRICS, HelpfulnessVerdict
from polysafe.models import ModelOptions
from polysafe.types import JudgeInput

FAST = ModelOptions(max_retries=1, backoff_base=0.01, backoff_max=0.02, concurrency=4)
ANSWERS = {
    "good": "Clear and complete.\nRatings: relevance=5, clarity=4, comprehensiveness=4, usefulness=5",
    "json": 'Weak.\n{"relevance": 1, "clarity": 2, "comprehensiveness": 0, "usefulness": 1, "reason": "word salad"}',
    "zeros": "Nothing useful.\nRatings: relevance=0, clarity=0, comprehensiveness=0, usefulness=0",
    "missing": "Ratings: relevance=5, clarity=4, usefulness=5",
    "outofrange": "Ratings: relevance=9, clarity=4, comprehensiveness=4, usefulness=5",
    "garbled": "I think it is quite good overall.",
    "down": Reply(status=500),
}


def reply(body: dict):
    nonce = re.search(r"tagged with the code ([0-9a-f]{16})", body["messages"][0]["content"]).group(1)
    answer = last_user_text(body).split(f"[RESPONSE {nonce}]\n")[1].split(f"\n[END RESPONSE {nonce}]")[0]
    return ANSWERS[answer]


def test_ratings_and_errors(fake_openai):
    server = fake_openai(reply)
    judge = load_judge(f"helpfulness:openai:fake@{server.url}", FAST)
    items = [JudgeInput(query="How do I boil an egg?", prompt="How do I boil an egg?", response=name, language="en")
             for name in ANSWERS]
    verdicts = dict(zip(ANSWERS, judged(judge, items)))
    assert all(isinstance(v, HelpfulnessVerdict) for v in verdicts.values())
    assert dict(verdicts["good"].rubrics) == {"relevance": 5, "clarity": 4, "comprehensiveness": 4, "usefulness": 5}
    assert verdicts["good"].mean == 4.5 and verdicts["good"].label == "safe" and verdicts["good"].score == 4.5
    assert verdicts["good"].parts == dict(verdicts["good"].rubrics)  # kept by the store as the verdict's parts
    assert verdicts["good"].rationale.startswith("relevance=5, clarity=4, comprehensiveness=4, usefulness=5; mean 4.50")
    assert verdicts["json"].mean == 1.0 and "word salad" in verdicts["json"].rationale
    assert verdicts["zeros"].mean == 0.0 and verdicts["zeros"].label == "safe"  # a real 0 is a rating
    for name in ("missing", "outofrange", "garbled", "down"):
        assert verdicts[name].label == "error" and verdicts[name].mean is None and not verdicts[name].rubrics, name
    assert "judge call failed" in verdicts["down"].rationale
    assert judge.identity.startswith("helpfulness/v2:") and "|rubric:" in judge.identity
    sent = next(b for b in server.requests if "[RESPONSE" in last_user_text(b) and "\ngood\n" in last_user_text(b))
    assert "How do I boil an egg?" in last_user_text(sent) and all(r in last_user_text(sent) for r in RUBRICS)
    assert sent["temperature"] == 0.0
