"""Train / evaluation splits of MultiJail's prompt ids: fixed seed, stratified by harm category.

An id is one request in all ten languages, so splitting ids (not rows) keeps every translation of an evaluation
prompt out of training. Each category is shuffled with its own seeded generator and cut at the evaluation share;
the per-category counts are rounded by largest remainder, so the evaluation set holds round(share x ids) ids.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InputError
from ..types import Prompt

UNCATEGORISED = "(none)"


@dataclass(frozen=True)
class Split:
    train: tuple[str, ...]
    evaluation: tuple[str, ...]
    seed: int
    eval_share: float
    categories: dict[str, str]  # id -> category (first tag)

    def to_dict(self) -> dict:
        return asdict(self)

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return path


def categories_of(prompts: Iterable[Prompt]) -> dict[str, str]:
    """id -> category, from the prompts of any language (one id has one category in every language)."""
    out: dict[str, str] = {}
    for prompt in prompts:
        out.setdefault(prompt.id, prompt.category or UNCATEGORISED)
    return out


def _by_category(categories: dict[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for id_, category in categories.items():
        groups[category].append(id_)
    return {c: sorted(ids, key=_id_order) for c, ids in sorted(groups.items())}


def _id_order(id_: str) -> tuple[int, int | str]:
    return (0, int(id_)) if id_.isdigit() else (1, id_)


def _allocate(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` over the groups in proportion to their sizes (largest remainder; ties by name)."""
    whole = sum(sizes.values())
    exact = {c: total * n / whole for c, n in sizes.items()}
    counts = {c: int(x) for c, x in exact.items()}
    left = total - sum(counts.values())
    for c in sorted(exact, key=lambda c: (-(exact[c] - counts[c]), c))[:left]:
        counts[c] += 1
    return counts


def _shuffled(ids: Sequence[str], seed: int, category: str) -> list[str]:
    order = list(ids)
    random.Random(f"{seed}:{category}").shuffle(order)  # a string seed is hashed stably (sha512), not by hash()
    return order


def split_ids(prompts: Sequence[Prompt], *, eval_share: float = 0.5, seed: int = 0) -> Split:
    if not 0 < eval_share < 1:
        raise InputError(f"must be between 0 and 1 (got {eval_share})", field="eval-share")
    categories = categories_of(prompts)
    if len(categories) < 2:
        raise InputError("need at least two prompt ids to split", field="data")
    groups = _by_category(categories)
    wanted = _allocate({c: len(ids) for c, ids in groups.items()}, round(eval_share * len(categories)))
    train: list[str] = []
    evaluation: list[str] = []
    for category, ids in groups.items():
        order = _shuffled(ids, seed, category)
        evaluation += order[: wanted[category]]
        train += order[wanted[category] :]
    return Split(tuple(sorted(train, key=_id_order)), tuple(sorted(evaluation, key=_id_order)), seed, eval_share,
                 categories)


def pick_stratified(ids: Sequence[str], categories: dict[str, str], n: int, *, seed: int) -> list[str]:
    """`n` of `ids`, spread over the categories in proportion (the profile's seed queries), in a fixed order."""
    if n >= len(ids):
        return sorted(ids, key=_id_order)
    groups = _by_category({i: categories.get(i, UNCATEGORISED) for i in ids})
    wanted = _allocate({c: len(g) for c, g in groups.items()}, n)
    picked = [i for c, g in groups.items() for i in _shuffled(g, seed, f"pick:{c}")[: wanted[c]]]
    return sorted(picked, key=_id_order)
