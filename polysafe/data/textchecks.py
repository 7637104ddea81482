"""Checks on generated text in any script: language ID and looping output.

Language ID is py3langid: its model ships inside the package and covers all ten MultiJail languages,
Javanese included. Self-Defense's pair checks and the translation checks both use these.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

# py3langid splits some languages into close varieties; a model writing Chinese may well be read as Cantonese.
LANGID_ALIASES: dict[str, frozenset[str]] = {
    "zh": frozenset({"zh", "yue", "wuu", "lzh"}),
    "jv": frozenset({"jv"}),
}

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
    """(ISO 639-1 code, probability) of the most likely language among CANDIDATE_LANGUAGES."""
    code, probability = _identifier().classify(text)
    return str(code), float(probability)


def language_variants(code: str) -> frozenset[str]:
    """The codes language ID may give for text in `code`."""
    return LANGID_ALIASES.get(code, frozenset({code}))


def is_language(text: str, code: str) -> bool:
    detected, _ = detect_language(text)
    return detected in language_variants(code)


def identifiable(code: str) -> bool:
    """Whether language ID can name `code` at all (else text in it is read as a neighbour)."""
    return any(variant in CANDIDATE_LANGUAGES for variant in language_variants(code))


def is_degenerate(text: str, *, min_bytes: int = 60, ratio: float = 0.25) -> bool:
    """A looping generation ("火药火药火药…"), in any script: it compresses far better than language does."""
    data = text.strip().encode("utf-8")
    return len(data) >= min_bytes and len(zlib.compress(data, 9)) / len(data) < ratio
