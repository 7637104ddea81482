"""The lab's training data: English safety pairs, general helpful pairs, and multilingual safety pairs.

- English safety: Bianchi et al. (2024) `safety_only_data_Instructions.json` (harmful instruction, safe answer),
  read with `load_safety_pairs`, the loader `polysafe defend ctrl run --safety-data` uses; a seeded sample.
- Helpful: Self-Defense's hand-written general seed pairs, plus benign instructions held apart from the
  over-refusal evaluation and answered by the base model itself (greedy; refusals and loops dropped), or a
  user's file of (instruction, answer) rows. Helpful pairs are repeated, in order, up to the asked share.
- Multilingual safety: train-split MultiJail ids in every language (human translations), each answered with
  the refusal of `answers.py` in the prompt's language.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import BackendError, InputError
from ..types import Conversation, Message, Prompt
from .answers import refusal_for
from .overlap import Text


@dataclass(frozen=True)
class Example:
    source: str
    key: str
    prompt: str
    answer: str
    language: str = "en"
    id: str | None = None  # the MultiJail id, for MultiJail prompts

    def conversation(self) -> Conversation:
        return (Message("user", self.prompt), Message("assistant", self.answer))

    def text(self) -> Text:
        return Text(self.source, self.key, self.prompt, self.id, self.language)

    def to_dict(self) -> dict:
        return {"source": self.source, "key": self.key, "language": self.language, "id": self.id,
                "messages": [m.to_dict() for m in self.conversation()]}


def fetch_once(source: str, folder: Path, *, timeout: float = 60.0) -> str:
    """A local path as it is; an http(s) URL downloaded once into `folder` (named by the URL's hash)."""
    if not source.startswith(("http://", "https://")):
        return source
    import httpx

    from ..keys import content_key

    target = folder / f"{content_key(source)[:12]}-{Path(source.split('?')[0]).name or 'download'}"
    if not target.is_file():
        try:
            response = httpx.get(source, timeout=timeout, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as err:
            raise BackendError(f"cannot download {source}: {err}") from None
        folder.mkdir(parents=True, exist_ok=True)
        target.write_bytes(response.content)
    return str(target)


def english_safety(path: str, n: int, *, seed: int) -> list[Example]:
    """A seeded sample of `n` Bianchi et al. safety pairs, in file order."""
    from ..training.attack_data import load_safety_pairs

    conversations = load_safety_pairs(path)
    rows = [(i, c) for i, c in enumerate(conversations, start=1)]
    if n < len(rows):
        rows = sorted(random.Random(f"{seed}:safety").sample(rows, n), key=lambda r: r[0])
    return [Example("bianchi2024", str(i), _last(c, "user"), _last(c, "assistant")) for i, c in rows]


def _last(conversation: Conversation, role: str) -> str:
    return [m.content for m in conversation if m.role == role][-1]


def helpful_from_file(path: str, n: int | None = None) -> list[Example]:
    """(instruction, answer) rows of a user's file: Alpaca / Dolly / prompt-response / chat rows, JSON or JSONL."""
    from ..data.ctrl_sets import load_clean_texts

    texts = load_clean_texts(path, limit=n)
    return [Example(f"helpful:{t.source}", t.id, t.query, t.answer) for t in texts]


def helpful_seeds() -> list[Example]:
    from ..defenses.selfdefense import load_seeds

    return [Example("helpful:selfdefense-seeds", s.id, s.prompt, s.answer) for s in load_seeds(None) if s.kind == "general"]


_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|[。！？]")


def whole_sentences(text: str) -> str:
    """An answer cut at max_tokens, trimmed back to its last full sentence ('' when it has none)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


def mix(safety: Sequence[Example], helpful: Sequence[Example], helpful_share: float) -> list[Example]:
    """Safety pairs plus helpful pairs repeated in order until they make `helpful_share` of the whole."""
    if not 0 <= helpful_share < 1:
        raise InputError(f"must be in [0, 1) (got {helpful_share})", field="helpful-share")
    want = round(len(safety) * helpful_share / (1 - helpful_share))
    if want and not helpful:
        raise InputError("no helpful pairs to mix in", field="helpful")
    return list(safety) + [helpful[i % len(helpful)] for i in range(want)]


def multilingual_safety(prompts: Iterable[Prompt], ids: Sequence[str]) -> list[Example]:
    """Each chosen MultiJail id in every language it has, answered with the refusal in that language."""
    chosen = set(ids)
    return [Example("multijail", f"{p.id}/{p.language}", p.text, refusal_for(p.language), p.language, p.id)
            for p in prompts if p.id in chosen]
