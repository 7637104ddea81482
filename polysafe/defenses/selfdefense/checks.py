"""The checks every generated Self-Defense pair must pass: language, refusal, and no (near) duplicates.

Language ID is py3langid: its model ships inside the package and covers all ten MultiJail languages,
Javanese included. Near duplicates are found by Jaccard similarity of character 3-gram sets, which works for
scripts without spaces (zh, th) as well as for the others.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable

from ...judges.refusal import find_refusal

# py3langid splits some languages into close varieties; a model writing Chinese may well be read as Cantonese.
LANGID_ALIASES: dict[str, frozenset[str]] = {
    "zh": frozenset({"zh", "yue", "wuu", "lzh"}),
    "jv": frozenset({"jv"}),
}

NEAR_DUPLICATE_JACCARD = 0.8


# py3langid knows 140+ languages, and on one short sentence it often picks a rare neighbour ("How do I boil an
# egg?" -> Nigerian Pidgin). Ranking among widely written languages, with the close confusables of the
# MultiJail ten kept in (Indonesian/Malay/Sundanese for Javanese, Assamese for Bengali, Cantonese for Chinese,
# ...), keeps wrong-language detection without rejecting plain short sentences.
CANDIDATE_LANGUAGES = (
    "en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv",
    "id", "ms", "su", "tl", "yue", "wuu", "ja", "as", "hi", "ur", "fa", "lo", "km", "my", "ta",
    "es", "fr", "de", "pt", "nl", "ru", "tr",
)


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages([code for code in CANDIDATE_LANGUAGES if code in identifier.nb_classes])
    return identifier


def detect_language(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of the most likely language."""
    code, probability = _identifier().classify(text)
    return str(code), float(probability)


def is_language(text: str, code: str) -> bool:
    detected, _ = detect_language(text)
    return detected in LANGID_ALIASES.get(code, frozenset({code}))


def refuses(text: str) -> bool:
    """A refusal phrase in the opening of the answer (the refusal judge's rule)."""
    return find_refusal(text[:400]) is not None


_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def is_degenerate(text: str, *, min_bytes: int = 60, ratio: float = 0.25) -> bool:
    """A looping generation ("火药火药火药…"), in any script: it compresses far better than language does."""
    import zlib

    data = text.strip().encode("utf-8")
    return len(data) >= min_bytes and len(zlib.compress(data, 9)) / len(data) < ratio


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
