"""The difference between two rates, and corrections for comparing many of them at once.

`newcombe` is Newcombe's hybrid score interval for p1 - p2 (Newcombe 1998, method 10), built from the two
Wilson intervals that the reports already show:
    L = d - sqrt((p1 - l1)^2 + (u2 - p2)^2),   U = d + sqrt((u1 - p1)^2 + (p2 - l2)^2),   d = p1 - p2.

Its p-value is the interval inverted: the smallest alpha whose (1 - alpha) interval touches 0. So `p < alpha`
exactly when the (1 - alpha) Newcombe interval excludes 0, and a test and its interval never disagree.
`holm` (step-down, family-wise error) and `benjamini_hochberg` (false discovery rate) adjust a family of such
p-values; a comparison is significant when its adjusted p-value is below alpha. Holm-significant therefore
means that the Newcombe interval at Holm's step-down level 1 - alpha / (m - rank + 1) excludes 0, which
implies that the 95% interval shown excludes 0 too (the converse need not hold after correction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from .metrics import Z95, wilson

CORRECTIONS = ("holm", "bh")
CORRECTION_NAMES = {"holm": "Holm (step-down, family-wise error rate)", "bh": "Benjamini-Hochberg (false discovery rate)"}


@dataclass(frozen=True)
class Difference:
    """p1 - p2 with its Newcombe interval and the two-sided p-value of the inverted interval."""

    value: float
    low: float
    high: float
    p: float


def newcombe_interval(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float]:
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    return (d - math.hypot(p1 - l1, u2 - p2), d + math.hypot(u1 - p1, p2 - l2))


def two_sided_p(z: float) -> float:
    return math.erfc(z / math.sqrt(2))


def z_for(alpha: float) -> float:
    """The two-sided normal quantile: two_sided_p(z_for(a)) == a."""
    low, high = 0.0, 40.0
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if two_sided_p(mid) > alpha else (low, mid)
    return (low + high) / 2


def newcombe_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """The alpha at which the (1 - alpha) Newcombe interval has 0 on its edge (1 when the rates are equal).

    Wilson intervals widen monotonically with z, so the bound nearest 0 moves towards it monotonically:
    bisection on z finds the crossing."""
    d = k1 / n1 - k2 / n2
    if d == 0:
        return 1.0

    def excludes_zero(z: float) -> bool:
        low, high = newcombe_interval(k1, n1, k2, n2, z)
        return low > 0 if d > 0 else high < 0

    low, high = 0.0, 40.0
    if excludes_zero(high):
        return two_sided_p(high)
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if excludes_zero(mid) else (low, mid)
    return two_sided_p((low + high) / 2)


def difference(k1: int, n1: int, k2: int, n2: int) -> Difference | None:
    """p1 - p2 with its 95% Newcombe interval; None when either side has nothing judged."""
    if n1 <= 0 or n2 <= 0:
        return None
    low, high = newcombe_interval(k1, n1, k2, n2)
    return Difference(k1 / n1 - k2 / n2, low, high, newcombe_p(k1, n1, k2, n2))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: max over j <= rank of (m - j + 1) * p_(j), capped at 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """BH step-up adjusted p-values: min over j >= rank of m * p_(j) / j, capped at 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m - 1, -1, -1):
        index = order[rank]
        running = min(running, m * pvalues[index] / (rank + 1))
        adjusted[index] = running
    return adjusted


def adjust(pvalues: Sequence[float], correction: str) -> list[float]:
    if correction == "holm":
        return holm(pvalues)
    if correction == "bh":
        return benjamini_hochberg(pvalues)
    raise ValueError(f"unknown correction {correction!r}")
