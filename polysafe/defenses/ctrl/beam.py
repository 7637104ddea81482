"""Beam search over revisions: revise the beam, score the candidates, keep the best `width`, repeat.

The reviser and the scorer are protocols, so tests drive the search with scripted fakes and curation drives
it with a model and the store cache. Candidates below the helpfulness floor (relative to the original text)
are dropped before ranking. `max_ppl` keeps the highest perplexities (the seed paper), `min_ppl` the lowest
(the earlier CTRL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence

Objective = Literal["max_ppl", "min_ppl"]
OBJECTIVES: tuple[Objective, ...] = ("max_ppl", "min_ppl")


@dataclass(frozen=True)
class Scores:
    perplexity: float
    helpfulness: float


@dataclass(frozen=True)
class Candidate:
    text: str
    perplexity: float
    helpfulness: float
    round: int  # 0 = the original text
    parent: str | None = None


class Reviser(Protocol):
    async def revise(self, query: str, answers: Sequence[str]) -> list[list[str]]:
        """For each answer, its candidate revisions."""
        ...


class Scorer(Protocol):
    async def score(self, query: str, answers: Sequence[str]) -> list[Scores]: ...


@dataclass(frozen=True)
class BeamConfig:
    width: int = 3
    rounds: int = 5
    objective: Objective = "max_ppl"
    floor: float = 0.9  # a candidate needs helpfulness >= floor x the original's

    def __post_init__(self) -> None:
        if self.width < 1 or self.rounds < 1:
            raise ValueError("beam width and rounds must be at least 1")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")


@dataclass
class BeamResult:
    original: Candidate
    best: Candidate  # the original itself when no revision ever passed the floor
    beams: list[list[Candidate]] = field(default_factory=list)  # the beam kept after each round
    dropped: int = 0  # candidates under the floor

    @property
    def revised(self) -> bool:
        return self.best.round > 0


def rank(candidates: Sequence[Candidate], objective: Objective) -> list[Candidate]:
    """Best first. Ties go to the more helpful, then to the text, so the order never depends on arrival."""
    sign = -1.0 if objective == "max_ppl" else 1.0
    return sorted(candidates, key=lambda c: (sign * c.perplexity, -c.helpfulness, c.text))


def meets_floor(candidate: Scores | Candidate, original: Scores | Candidate, floor: float) -> bool:
    return candidate.helpfulness >= floor * original.helpfulness


async def beam_search(query: str, answer: str, reviser: Reviser, scorer: Scorer, config: BeamConfig = BeamConfig()) -> BeamResult:
    [first] = await scorer.score(query, [answer])
    original = Candidate(answer, first.perplexity, first.helpfulness, round=0)
    result = BeamResult(original=original, best=original)
    beam = [original]
    seen = {answer}
    accepted: list[Candidate] = []
    for round_ in range(1, config.rounds + 1):
        proposals = await reviser.revise(query, [c.text for c in beam])
        fresh: list[tuple[str, str]] = []  # (text, parent)
        for parent, texts in zip(beam, proposals):
            for text in texts:
                if text and text not in seen:
                    seen.add(text)
                    fresh.append((text, parent.text))
        scores = await scorer.score(query, [t for t, _ in fresh]) if fresh else []
        passing = []
        for (text, parent), s in zip(fresh, scores):
            if meets_floor(s, original, config.floor):
                passing.append(Candidate(text, s.perplexity, s.helpfulness, round_, parent))
            else:
                result.dropped += 1
        if passing:  # otherwise the beam stays as it was and is revised again
            beam = rank(passing, config.objective)[: config.width]
            accepted.extend(beam)
        result.beams.append(list(beam))
    if accepted:
        result.best = rank(accepted, config.objective)[0]
    return result
