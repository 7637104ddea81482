"""Scores for curation: perplexity under the defended model, and helpfulness.

Perplexity is that of the answer's tokens given the query, under the target model's chat template, batched
(`polysafe.models.scoring.perplexity`). Helpfulness is the mean of four 0-5 rubrics from an LLM judge
(relevance, clarity, comprehensiveness, usefulness). Without a judge model, `heuristic` gives an offline
estimate from word overlap, length and repetition: it is much weaker than a judge, and every output that
used it says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Sequence

from ...models.base import ModelBackend, ModelOptions, load_model
from ...types import Completion, Conversation, GenerationConfig, Message

RUBRICS = ("relevance", "clarity", "comprehensiveness", "usefulness")
HEURISTIC = "heuristic"
HEURISTIC_NOTE = "helpfulness by the offline heuristic (word overlap, length, repetition): much weaker than an LLM judge"


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

    async def rate(self, pairs: Sequence[tuple[str, str]]) -> list[Helpfulness | None]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


RATING_PROMPT = """Rate the answer to the question on four rubrics, each an integer from 0 (worst) to 5 (best):
- relevance: does it address the question?
- clarity: is it clear and well organised?
- comprehensiveness: does it cover what the question needs?
- usefulness: would it help the person asking?

Question: {query}

Answer: {answer}

Reply with JSON only, for example {{"relevance": 4, "clarity": 5, "comprehensiveness": 3, "usefulness": 4}}."""


def parse_rating(text: str) -> Helpfulness | None:
    """The four rubric scores from a judge's answer (JSON, or `name: n` lines); None if any is missing."""
    found: dict[str, float] = {}
    match = re.search(r"\{.*?\}", text, re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
            found = {k.lower(): float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        except (json.JSONDecodeError, AttributeError):
            found = {}
    for rubric in RUBRICS:
        if rubric not in found:
            m = re.search(rf"{rubric}\W{{0,4}}(\d(?:\.\d+)?)", text, re.IGNORECASE)
            if m:
                found[rubric] = float(m.group(1))
    if any(r not in found or not 0 <= found[r] <= 5 for r in RUBRICS):
        return None
    rubrics = {r: found[r] for r in RUBRICS}
    return Helpfulness(sum(rubrics.values()) / len(RUBRICS), rubrics, "llm")


class LLMHelpfulness(HelpfulnessRater):
    version = "v1"
    method = "llm"
    generation = GenerationConfig(temperature=0.0, max_tokens=64)

    def __init__(self, model: ModelBackend):
        self.model = model
        self.identity = f"helpfulness/{self.version}:{model.identity}"

    def messages(self, query: str, answer: str) -> Conversation:
        return (Message("user", RATING_PROMPT.format(query=query, answer=answer)),)

    async def rate(self, pairs: Sequence[tuple[str, str]]) -> list[Helpfulness | None]:
        completions: list[Completion] = await self.model.generate([self.messages(q, a) for q, a in pairs], self.generation)
        return [parse_rating(c.text) if c.ok else None for c in completions]

    async def aclose(self) -> None:
        await self.model.aclose()


_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an the of to in on for and or is are be what how why who which with do does can you your i it this that me my".split())


class HeuristicHelpfulness(HelpfulnessRater):
    """Weaker offline estimate: query-word coverage (relevance), length (comprehensiveness), distinct-word share
    (clarity), and their mean (usefulness). It cannot tell a wrong answer from a right one."""

    identity = "helpfulness/heuristic-v1"
    method = HEURISTIC

    @staticmethod
    def rate_one(query: str, answer: str) -> Helpfulness:
        words = _WORD.findall(answer.lower())
        wanted = {w for w in _WORD.findall(query.lower()) if w not in _STOP}
        relevance = 5 * (len(wanted & set(words)) / len(wanted)) if wanted else (5.0 if words else 0.0)
        comprehensiveness = 5 * min(1.0, len(words) / 120)
        clarity = 5 * (len(set(words)) / len(words)) if words else 0.0
        usefulness = (relevance + comprehensiveness + clarity) / 3
        rubrics = {"relevance": relevance, "clarity": clarity, "comprehensiveness": comprehensiveness, "usefulness": usefulness}
        return Helpfulness(sum(rubrics.values()) / 4, rubrics, HEURISTIC)

    async def rate(self, pairs: Sequence[tuple[str, str]]) -> list[Helpfulness | None]:
        return [self.rate_one(q, a) for q, a in pairs]


def load_helpfulness(spec: str, options: ModelOptions | None = None) -> HelpfulnessRater:
    """`heuristic` for the offline estimate, otherwise a model spec for the LLM judge."""
    if spec == HEURISTIC:
        return HeuristicHelpfulness()
    return LLMHelpfulness(load_model(spec, options or ModelOptions()))
