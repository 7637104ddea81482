"""Which generated pairs make up a training set: the requested unsafe:general ratio, per language, exactly.

The pairs of a generation come in a fixed order (generated pairs in slot order, then seeds). A training set
takes, in every language, the first `n_unsafe` unsafe and the first `n_general` general pairs of that order,
with one adjustment: the unsafe ones are picked so that at least half of their English prompts are imperative
(`style.py`). When a language has too few of a kind, the other kind is trimmed so the ratio still holds (to
the nearest pair), down to nothing when a kind the ratio needs is missing. A sweep over unsafe shares takes each set from one shared pool this way.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from .style import prompt_form

if TYPE_CHECKING:
    from .generate import Pair


def share_counts(share: float, total: int) -> tuple[int, int]:
    """(unsafe, general) pairs per language for an unsafe share of `total`."""
    n_unsafe = round(share * total)
    return n_unsafe, total - n_unsafe


def ratio_counts(have_unsafe: int, have_general: int, n_unsafe: int, n_general: int) -> tuple[int, int]:
    """(u, g) with u <= have_unsafe, g <= have_general, and u:g as requested: all of the scarcer kind (relative
    to the request) and the other kind in proportion, rounded to the nearest pair."""
    u, g = min(have_unsafe, n_unsafe), min(have_general, n_general)
    if n_unsafe == 0 or n_general == 0:
        return u, g
    if u * n_general <= g * n_unsafe:  # unsafe pairs are the scarcer kind
        return u, min(g, round(u * n_general / n_unsafe))
    return min(u, round(g * n_unsafe / n_general)), g


def pick_unsafe(pairs: Sequence[Pair], n: int) -> list[Pair]:
    """The first n pairs, except that at least half must have an imperative English prompt when there are enough."""
    if n >= len(pairs):
        return list(pairs)
    imperative = [p for p in pairs if prompt_form(p.english_prompt) == "imperative"]
    others = [p for p in pairs if prompt_form(p.english_prompt) != "imperative"]
    n_imperative = min(len(imperative), max(math.ceil(n / 2), n - len(others)))
    chosen = {id(p) for p in imperative[:n_imperative] + others[: n - n_imperative]}
    return [p for p in pairs if id(p) in chosen]


def select_training_set(pairs: Sequence[Pair], n_unsafe: int, n_general: int) -> list[Pair]:
    """Per language, n_unsafe:n_general pairs (or the nearest smaller set with that ratio), in pool order."""
    chosen: set[int] = set()
    for language in dict.fromkeys(p.language for p in pairs):
        unsafe = [p for p in pairs if p.language == language and p.kind == "unsafe"]
        general = [p for p in pairs if p.language == language and p.kind == "general"]
        u, g = ratio_counts(len(unsafe), len(general), n_unsafe, n_general)
        chosen |= {id(p) for p in pick_unsafe(unsafe, u) + general[:g]}
    return [p for p in pairs if id(p) in chosen]
