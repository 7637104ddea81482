"""Proof that no training example leaks into the evaluation: no shared prompt id, no (near) duplicate text.

Near duplicates use Self-Defense's measure (Jaccard similarity of character 3-gram sets after normalisation,
threshold 0.8), which works for scripts without spaces as well. Every training prompt is compared with every
evaluation text in every language; an inverted index over the 3-grams keeps that quick.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..defenses.selfdefense.checks import NEAR_DUPLICATE_JACCARD, char_ngrams, normalize_for_match
from ..errors import PolysafeError


@dataclass(frozen=True)
class Text:
    """A prompt text with where it came from: `id` is a MultiJail id when it has one, else None."""

    source: str  # e.g. "multijail", "bianchi2024", "I-Alpaca"
    key: str  # a name unique within the source (a row number or id)
    text: str
    id: str | None = None
    language: str = "en"

    def where(self) -> str:
        return f"{self.source}:{self.key} ({self.language})"


@dataclass(frozen=True)
class Overlap:
    kind: str  # "id", "exact" or "near"
    train: Text
    evaluation: Text
    similarity: float

    def line(self) -> str:
        return (f"{self.kind} overlap: training {self.train.where()} vs evaluation {self.evaluation.where()}"
                f" (similarity {self.similarity:.2f})")


class OverlapError(PolysafeError):
    """Training data overlaps the evaluation prompts."""


class OverlapIndex:
    def __init__(self, evaluation: Iterable[Text], threshold: float = NEAR_DUPLICATE_JACCARD):
        self.threshold = threshold
        self.texts = list(evaluation)
        self.ids = defaultdict(list)
        self.exact: dict[str, int] = {}
        self.grams = [char_ngrams(t.text) for t in self.texts]
        self.postings: dict[str, list[int]] = defaultdict(list)
        for index, text in enumerate(self.texts):
            if text.id is not None:
                self.ids[text.id].append(index)
            self.exact.setdefault(normalize_for_match(text.text), index)
            for gram in self.grams[index]:
                self.postings[gram].append(index)

    def find(self, train: Text) -> Overlap | None:
        if train.id is not None and train.id in self.ids:
            return Overlap("id", train, self.texts[self.ids[train.id][0]], 1.0)
        hit = self.exact.get(normalize_for_match(train.text))
        if hit is not None:
            return Overlap("exact", train, self.texts[hit], 1.0)
        grams = char_ngrams(train.text)
        best, best_score = None, 0.0
        for index in self._candidates(grams):
            other = self.grams[index]
            common = len(grams & other)
            score = common / (len(grams) + len(other) - common)
            if score > best_score:
                best, best_score = index, score
        if best is not None and best_score >= self.threshold:
            return Overlap("near", train, self.texts[best], best_score)
        return None


    def _candidates(self, grams: frozenset[str]) -> set[int]:
        """Prefix filter: Jaccard >= t needs |A & B| >= t|A|, so any |A| - ceil(t|A|) + 1 grams of A include one
        of B. Taking A's rarest grams leaves few candidates to score exactly."""
        keep = len(grams) - math.ceil(self.threshold * len(grams)) + 1
        rarest = sorted(grams, key=lambda g: (len(self.postings.get(g, ())), g))[:keep]
        return {i for gram in rarest for i in self.postings.get(gram, ())}


def find_overlaps(train: Sequence[Text], evaluation: Sequence[Text] | OverlapIndex,
                  threshold: float = NEAR_DUPLICATE_JACCARD) -> list[Overlap]:
    index = evaluation if isinstance(evaluation, OverlapIndex) else OverlapIndex(evaluation, threshold)
    return [hit for hit in (index.find(t) for t in train) if hit is not None]


def check_no_overlap(train: Sequence[Text], evaluation: Sequence[Text] | OverlapIndex,
                     threshold: float = NEAR_DUPLICATE_JACCARD) -> int:
    """Raise OverlapError naming the first overlap (and how many there are); return the pairs compared."""
    index = evaluation if isinstance(evaluation, OverlapIndex) else OverlapIndex(evaluation, threshold)
    found = find_overlaps(train, index)
    if found:
        raise OverlapError(f"{len(found)} training example(s) overlap the evaluation prompts; first: {found[0].line()}")
    return len(train) * len(index.texts)
