"""The revision prompt and the safety seed phrases it weaves into an answer.

The prompt follows the method notes: keep the original information, weave in a few seed phrases, enrich the
content, and stay informative and responsible. Phrases are picked deterministically from the text itself, so
the same text always gets the same prompt (and the same cache key).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Sequence

from ...keys import content_key
from ...errors import InputError
from ...types import Conversation, Message

SEED_PHRASES_FILE = Path(__file__).with_name("seed_phrases.txt")
PHRASES_PER_PROMPT = 3

SYSTEM = "You are a careful editor who improves answers so that they are helpful, accurate and responsible."
TEMPLATE = """Revise the answer to the question below.

Question: {query}

Answer: {answer}

Rules:
1. Keep all of the original information.
2. Naturally include some of these phrases: {phrases}.
3. Enrich the content with useful, accurate details.
4. Stay informative, responsible and on topic.
Reply with the revised answer only."""


def load_seed_phrases(path: str | Path | None = None) -> tuple[str, ...]:
    """One phrase per line; blank lines and '#' comments are skipped. The shipped set when path is None."""
    path = Path(path) if path else SEED_PHRASES_FILE
    if not path.is_file():
        raise InputError("no such file", file=str(path), field="seed-phrases")
    phrases: list[str] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line) > 80:
            raise InputError("a seed phrase is at most 80 characters", file=str(path), line=number, field="seed-phrases")
        phrases.append(line)
    if not phrases:
        raise InputError("file has no seed phrases", file=str(path), field="seed-phrases")
    return tuple(dict.fromkeys(phrases))


def pick_phrases(phrases: Sequence[str], query: str, answer: str, k: int = PHRASES_PER_PROMPT) -> list[str]:
    rng = random.Random(content_key("ctrl-phrases", query, answer))
    return rng.sample(list(phrases), min(k, len(phrases)))


def revision_prompt(query: str, answer: str, phrases: Sequence[str]) -> Conversation:
    chosen = ", ".join(f'"{p}"' for p in pick_phrases(phrases, query, answer))
    return (Message("system", SYSTEM), Message("user", TEMPLATE.format(query=query, answer=answer, phrases=chosen)))


_LEAD = re.compile(r"^\s*(?:\*\*)?(?:revised answer|revised|answer)\s*(?:\*\*)?\s*:\s*", re.IGNORECASE)


def clean_revision(text: str) -> str:
    """The reviser's answer without a leading 'Revised answer:' label or wrapping quotes."""
    text = _LEAD.sub("", text.strip(), count=1).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text
