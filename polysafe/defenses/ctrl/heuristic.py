"""An offline helpfulness estimate for English answers, for when no judge model is at hand.

CTRL keeps revisions whose helpfulness stays near the original's; with the `max_ppl` objective it then prefers
the most perplexing of them, so a rater that is fooled by garbled text steers curation toward garbage. This
estimate therefore rewards well-formed prose before it rewards anything else:

- fluency (clarity): a plausible share of function words, sentences of a sane length, no grammatically
  impossible function-word bigrams ("the of", "a is"), and little repetition of bigrams or of one content word;
- relevance: coverage of the question's content words (light stemming), scaled down when the text is not fluent;
- comprehensiveness: distinct content words with diminishing returns, gated by fluency and relevance;
- usefulness: relevance x fluency, with a little credit for substance.

It cannot tell a wrong answer from a right one; an LLM judge can. Every output that used it says so.
"""

from __future__ import annotations

import math
import re
from collections import Counter

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")

DETERMINERS = frozenset("the a an my your its our their every".split())
PREPOSITIONS = frozenset(("of in on at by for with from into onto about over under between through during without "
                          "within against among toward towards upon across behind beyond per via").split())
AUXILIARIES = frozenset("is are was were be been am do does did has have had would could should shall might".split())
CONJUNCTIONS = frozenset("and or but nor".split())
SUBJECT_PRONOUNS = frozenset("i we they he she it".split())
FUNCTION_WORDS = DETERMINERS | PREPOSITIONS | AUXILIARIES | CONJUNCTIONS | SUBJECT_PRONOUNS | frozenset((
    "this that these those his her him them us me you who whom whose which what when where why how there here "
    "not no so if then than as to too very also can will may must being each some any all most more much many "
    "few such only just other both either neither up out off because while until since although though "
    "before after again once yet").split())

# A determiner is followed by a noun phrase, never by another function word of these kinds; a preposition not by
# another preposition, an auxiliary or a conjunction; and a sentence does not end on any of them.
_AFTER_DETERMINER = DETERMINERS | PREPOSITIONS | AUXILIARIES | CONJUNCTIONS | SUBJECT_PRONOUNS
_AFTER_PREPOSITION = (PREPOSITIONS | AUXILIARIES | CONJUNCTIONS) - {"being"}
_ALLOWED_PAIRS = frozenset({("in", "between"), ("from", "within"), ("from", "behind"), ("from", "under")})
_DANGLING = DETERMINERS | CONJUNCTIONS | PREPOSITIONS
_SUBJECTS = SUBJECT_PRONOUNS - {"it"}  # "make it a habit" is fine; "they the" is not


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


# Verbs that only frame a request ("Give three tips ...", "Explain how ..."): an answer need not repeat them.
REQUEST_VERBS = frozenset("give tell explain describe list suggest provide show name please share outline summarize summarise".split())


def _stem(word: str) -> str:
    """A light stemmer, enough to match "groceries"/"grocery", "vaccines"/"vaccine", "saving"/"save"."""
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    else:
        for suffix in ("ing", "ed", "es", "ly", "s"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def content_stems(words: list[str]) -> list[str]:
    return [_stem(w) for w in words if w not in FUNCTION_WORDS and len(w) >= 3 and not w.isdigit()]


def _ramp(value: float, zero: float, full: float) -> float:
    """0 at `zero`, 1 at `full`, linear between (either direction)."""
    if zero == full:
        return 1.0
    return min(1.0, max(0.0, (value - zero) / (full - zero)))


def _confidence(n: int, needed: int) -> float:
    """How much a ratio over n words can be trusted: short answers are not judged on statistics."""
    return min(1.0, n / needed)


def function_word_score(words: list[str]) -> float:
    """English prose runs at about 35-55% function words; lists a bit lower; word salad far lower or higher."""
    if not words:
        return 0.0
    share = sum(w in FUNCTION_WORDS for w in words) / len(words)
    score = _ramp(share, 0.08, 0.25) if share < 0.5 else _ramp(share, 0.85, 0.65)
    return 1 - _confidence(len(words), 20) * (1 - score)


def sentence_score(text: str) -> float:
    """Share of words that sit in sentences of sane length (up to 45 words) that do not end on a dangling word."""
    total = good = 0
    for sentence in _SENTENCE.split(text.strip()):
        words = _words(sentence)
        if not words:
            continue
        total += len(words)
        has_function = any(w in FUNCTION_WORDS for w in words) or len(words) <= 4
        if len(words) <= 45 and has_function and words[-1] not in _DANGLING:
            good += len(words)
    return good / total if total else 0.0


def bigram_score(words: list[str]) -> float:
    """1 minus a penalty for function-word bigrams that English grammar does not produce."""
    if len(words) < 2:
        return 1.0
    bad = 0
    for a, b in zip(words, words[1:]):
        if (a, b) in _ALLOWED_PAIRS:
            continue
        if (a in DETERMINERS and b in _AFTER_DETERMINER) or (a in PREPOSITIONS and b in _AFTER_PREPOSITION) \
                or (a in CONJUNCTIONS and b in CONJUNCTIONS) or (a in _SUBJECTS and b in DETERMINERS):
            bad += 1
    return max(0.0, 1 - 8 * bad / (len(words) - 1))


def repetition_score(words: list[str]) -> float:
    """Penalises repeated bigrams and one content word taking over the text (keyword stuffing)."""
    if len(words) < 4:
        return 1.0
    bigrams = list(zip(words, words[1:]))
    repeated = 1 - len(set(bigrams)) / len(bigrams)
    stems = content_stems(words)
    top = Counter(stems).most_common(1)[0][1] / len(stems) if stems else 0.0
    bigram_part = 1 - _confidence(len(words), 30) * (1 - _ramp(repeated, 0.45, 0.12))
    stuffing_part = 1 - _confidence(len(stems), 12) * (1 - _ramp(top, 0.4, 0.15))
    return bigram_part * stuffing_part


def fluency(text: str) -> float:
    words = _words(text)
    if not words:
        return 0.0
    return function_word_score(words) * math.sqrt(sentence_score(text)) * bigram_score(words) * repetition_score(words)


def coverage(query: str, answer: str) -> float:
    """Share of the question's content words (stemmed) that the answer uses; 1 when the question has none."""
    wanted = set(content_stems([w for w in _words(query) if w not in REQUEST_VERBS]))
    if not wanted:
        return 1.0
    return len(wanted & set(content_stems(_words(answer)))) / len(wanted)


def rubrics(query: str, answer: str) -> dict[str, float]:
    """The four 0-5 rubrics of the LLM judge, estimated offline."""
    fluent = fluency(answer)
    covered = math.sqrt(_ramp(coverage(query, answer), 0.0, 0.7))  # diminishing returns on more query words
    substance = 1 - math.exp(-len(set(content_stems(_words(answer)))) / 30)
    relevance = covered * (0.4 + 0.6 * fluent)
    return {
        "relevance": 5 * relevance,
        "clarity": 5 * fluent,
        "comprehensiveness": 5 * substance * fluent * min(1.0, 0.25 + covered),
        "usefulness": 5 * covered * fluent * (0.5 + 0.5 * substance),
    }
