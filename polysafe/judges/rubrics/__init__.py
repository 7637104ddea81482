"""Rubrics: the user message of a model judge, shipped as text files or loaded from a user's file.

A rubric is plain UTF-8 text with two slots:

- `{response}` (required): replaced by the text under judgment, fenced between the markers
  `[RESPONSE <nonce>]` and `[END RESPONSE <nonce>]` on lines of their own;
- `{query}` (optional): replaced by the request, fenced the same way with `[REQUEST <nonce>]` and
  `[END REQUEST <nonce>]`.

`<nonce>` is random for every request. polysafe's system message (not the rubric) tells the judge about the
markers, so a user's rubric needs no wording about them. Every other brace is literal text (JSON examples are
fine), but any other `{name}` is an error, as is a missing `{response}`: a rubric must say where the response goes.
The slots are filled in one pass, so a slot written inside the query or response is never filled.
Whatever output format the rubric asks for, the judge's answer is read by the judge's own parser: ask for a
final line `Label: safe|unsafe|invalid` (`llm:`), `Score: <1-5>` (`harm:`, `#thescore: N` also reads),
or `Ratings: relevance=N, clarity=N, comprehensiveness=N, usefulness=N` (`helpfulness:`).

Shipped rubrics (polysafe's wording of the papers' criteria): `multijail.txt` (MultiJail's safe / unsafe /
invalid), `harm_qi2023.txt` (Qi et al. 2023's 1-5 harmfulness scale with a usage policy and scoring rules, as
used by CodeAttack), `helpfulness.txt` (CTRL's four 0-5 helpfulness rubrics).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import InputError

SLOTS = ("query", "response")
MAX_RUBRIC_CHARS = 100_000
_SLOT = re.compile(r"\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}")
_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Rubric:
    name: str  # a shipped rubric's file name, or the user's path
    text: str

    @property
    def digest(self) -> str:
        """Content hash: part of the judge's identity, so verdicts under different rubrics never mix."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    def fill(self, *, query: str, response: str) -> str:
        values = {"query": query, "response": response}
        return _SLOT.sub(lambda m: values[m.group(1)], self.text)


def load_rubric(path: str | Path) -> Rubric:
    """A user's rubric file, validated; any problem is an InputError naming the file."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("judge prompt file not found", file=where) from None
    except UnicodeDecodeError as err:
        raise InputError(f"judge prompt file is not UTF-8 text (byte {err.start})", file=where) from None
    except OSError as err:
        raise InputError(f"cannot read judge prompt file: {err.strerror or err}", file=where) from None
    return _validated(where, text)


def inline_rubric(name: str, text: str) -> Rubric:
    """A rubric a judge plugin carries as text (`ModelJudge.rubric_text`), checked like a file."""
    return _validated(f"{name} (inline rubric)", text)


def builtin_rubric(name: str) -> Rubric:
    return _validated(name, (_HERE / name).read_text(encoding="utf-8"))


def _validated(where: str, text: str) -> Rubric:
    if "\x00" in text:
        raise InputError("judge prompt file is binary, not text", file=where)
    if len(text) > MAX_RUBRIC_CHARS:
        raise InputError(f"judge prompt file is longer than {MAX_RUBRIC_CHARS} characters", file=where)
    for match in _SLOT.finditer(text):
        if match.group(1) not in SLOTS or match.group(0) != "{" + match.group(1) + "}":
            raise InputError(f"unknown slot {match.group(0)!r} (the slots are {{query}} and {{response}})", file=where)
    if "{response}" not in text:
        raise InputError("the judge prompt has no {response} slot", file=where)
    return Rubric(where, text)
