"""Scores for curation: perplexity under the defended model, and helpfulness.

Perplexity is that of the answer's tokens given the query, under the target model's chat template, batched
(`polysafe.models.scoring.perplexity`). Helpfulness is the mean of four 0-5 rubrics from an LLM judge
(relevance, clarity, comprehensiveness, usefulness). Without a judge model, `heuristic` gives an offline
estimate (`heuristic.py`: fluency, question coverage, substance): it is much weaker than a judge, and every
output that used it says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from ...keys import content_key
from ...engine.store import Store
from ...errors import BackendError
from ...judges.base import Judge, load_judge
from ...models.base import ModelOptions
from ...types import JudgeInput
from . import heuristic

RUBRICS = ("relevance", "clarity", "comprehensiveness", "usefulness")
HEURISTIC = "heuristic"
HEURISTIC_NOTE = ("helpfulness by the offline heuristic (fluency, question coverage, substance): much weaker than an "
                  "LLM judge, and blind to correctness")


def target_perplexities(backend, pairs: Sequence[tuple[str, str]], *, batch_size: int = 16) -> list[float]:
    """Perplexity of each answer given its query, answer tokens only."""
    from ...models.scoring import perplexity

    return perplexity(backend, list(pairs), batch_size=batch_size, chat=True)


@dataclass(frozen=True)
class Helpfulness:
    mean: float  # 0-5
    rubrics: dict[str, float]
    method: str  # "llm" or "heuristic"


class HelpfulnessRater:
    identity: str
    method: str
    note: str | None = None  # a caveat every output that used this rater must carry

    async def rate(self, pairs: Sequence[tuple[str, str]]) -> list[Helpfulness | None]:
        """One rating per pair; None where the rating failed or could not be read (see RatingCache)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class RatingCache:
    """Ratings kept in the store's memo table: each (rater, query, answer) is rated once, ever.

    A failed or unreadable rating is an error, never a score: it is asked again, up to `attempts` times in all,
    and never stored. If it still fails, BackendError names how many failed; the ratings that did come are
    stored, so a rerun asks only for the rest. (A failure stored as 0 would, for an original text, set the
    helpfulness floor to 0 and let every candidate through.)
    """

    namespace = "ctrl-help"

    def __init__(self, rater: HelpfulnessRater, store: Store, *, attempts: int = 3):
        self.rater, self.store, self.attempts = rater, store, max(1, attempts)
        self.asked = 0  # ratings requested from the rater in this process, retries included

    async def rate(self, pairs: Sequence[tuple[str, str]]) -> list[Helpfulness]:
        keys = [content_key(self.namespace, self.rater.identity, q, a) for q, a in pairs]
        wanted = dict(zip(keys, pairs))
        failed: list[str] = []

        async def rate_missing(missing: list[str]) -> dict[str, str]:
            rated: dict[str, str] = {}
            for _ in range(self.attempts):
                if not missing:
                    break
                self.asked += len(missing)
                ratings = await self.rater.rate([wanted[k] for k in missing])
                rated.update({k: json.dumps({"mean": r.mean, "rubrics": r.rubrics}) for k, r in zip(missing, ratings) if r})
                missing = [k for k, r in zip(missing, ratings) if r is None]
            failed.extend(missing)
            return rated

        stored = await self.store.amemoize(self.namespace, keys, rate_missing)
        legacy = [k for k in dict.fromkeys(keys) if k in stored and not json.loads(stored[k]).get("rubrics")]
        if legacy:  # a failure an earlier version kept as 0: never trusted, rated again
            fresh = await rate_missing(legacy)
            self.store.memo_put_many(self.namespace, fresh)
            stored.update(fresh)
        if failed:
            raise BackendError(f"helpfulness rater {self.rater.identity} gave no readable rating for {len(failed)} of "
                               f"{len(pairs)} answers after {self.attempts} attempts (nothing was scored 0; every "
                               "rating that came is cached: run again to retry the rest)")
        values = {key: json.loads(value) for key, value in stored.items()}
        return [Helpfulness(values[k]["mean"], values[k]["rubrics"], self.rater.method) for k in keys]


class LLMHelpfulness(HelpfulnessRater):
    """An LLM rating through the `helpfulness:<model>` judge (judges/helpfulness.py): fenced, read from its final
    line only; an unreadable answer or a failed call is None (retried by RatingCache), never a 0."""

    method = "llm"

    def __init__(self, judge: Judge):
        self.judge = judge
        self.identity = judge.identity

    async def rate(self, pairs: Sequence[tuple[str, str]]) -> list[Helpfulness | None]:
        verdicts = await self.judge.judge([JudgeInput(query=q, prompt=q, response=a, language="en") for q, a in pairs])
        return [Helpfulness(v.mean, dict(v.rubrics), self.method) if getattr(v, "mean", None) is not None else None
                for v in verdicts]

    async def aclose(self) -> None:
        await self.judge.aclose()


class HeuristicHelpfulness(HelpfulnessRater):
    """Offline estimate (`heuristic.py`): fluency first, then question coverage and substance with diminishing
    returns, so garbled or stuffed text scores below a plain correct answer. It cannot judge correctness."""

    identity = "helpfulness/heuristic-v2"
    method = HEURISTIC
    note = HEURISTIC_NOTE  # said in every output that used it

    @staticmethod
    def rate_one(query: str, answer: str) -> Helpfulness:
        rubrics = heuristic.rubrics(query, answer)
        return Helpfulness(sum(rubrics.values()) / len(rubrics), rubrics, HEURISTIC)

    async def rate(self, pairs: Sequence[tuple[str, str]]) -> list[Helpfulness | None]:
        return [self.rate_one(q, a) for q, a in pairs]


def load_helpfulness(spec: str, options: ModelOptions | None = None) -> HelpfulnessRater:
    """`heuristic` for the offline estimate, otherwise a model spec for the LLM judge."""
    if spec == HEURISTIC:
        return HeuristicHelpfulness()
    return LLMHelpfulness(load_judge(f"helpfulness:{spec}", options or ModelOptions()))
