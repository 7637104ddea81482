"""The checks every generated Self-Defense pair must pass: language, refusal, and no (near) duplicates.

Language ID is py3langid: its model ships inside the package and covers all ten MultiJail languages,
Javanese included. Near duplicates are found by Jaccard similarity of character 3-gram sets, which works for
scripts without spaces (zh, th) as well as for the others.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

from ...data.refusal_phrases import find_refusal

NEAR_DUPLICATE_JACCARD = 0.8


def refuses(text: str) -> bool:
    """A refusal phrase in the opening of the answer (the refusal judge's rule)."""
    return find_refusal(text[:400]) is not None


_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalize_for_match(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def char_ngrams(text: str, n: int = 3) -> frozenset[str]:
    text = normalize_for_match(text)
    if len(text) <= n:
        return frozenset({text}) if text else frozenset()
    return frozenset(text[i : i + n] for i in range(len(text) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass
class DuplicateIndex:
    """Texts seen so far; `match(text)` says "exact", "near" or None, `add(text)` remembers one."""

    threshold: float = NEAR_DUPLICATE_JACCARD
    _exact: set[str] = field(default_factory=set)
    _grams: list[frozenset[str]] = field(default_factory=list)

    @classmethod
    def of(cls, texts: Iterable[str], threshold: float = NEAR_DUPLICATE_JACCARD) -> "DuplicateIndex":
        index = cls(threshold)
        for text in texts:
            index.add(text)
        return index

    def match(self, text: str) -> str | None:
        if normalize_for_match(text) in self._exact:
            return "exact"
        grams = char_ngrams(text)
        if any(jaccard(grams, seen) >= self.threshold for seen in self._grams):
            return "near"
        return None

    def add(self, text: str) -> None:
        self._exact.add(normalize_for_match(text))
        self._grams.append(char_ngrams(text))

    def __len__(self) -> int:
        return len(self._grams)
