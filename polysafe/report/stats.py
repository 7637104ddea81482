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

`paired_difference` is the paired counterpart, for the same items measured twice (a cell and its
reference): the exact McNemar test on the discordant pairs, and Newcombe's method-10 interval for paired
proportions (Newcombe 1998, Stat Med 17:2635-2650). There the test and the interval are separate methods and
may disagree near alpha; paired reports mark significance by the Holm-adjusted McNemar p.
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


# -- paired proportions: the same items measured twice (a cell and its reference) -------------------
@dataclass(frozen=True)
class PairedDifference:
    """p1 - p2 on paired binary outcomes, with Newcombe's method-10 95% interval and McNemar's exact p.

    Over `pairs` items judged in both: `both` positive in both, `first_only` positive only in the first
    measure (the cell), `second_only` only in the second (the reference), `neither`."""

    value: float
    low: float
    high: float
    p: float
    pairs: int
    both: int
    first_only: int
    second_only: int
    neither: int


def mcnemar_exact(first_only: int, second_only: int) -> float:
    """Two-sided exact McNemar p: the discordant pairs against Binomial(b + c, 1/2), doubled, capped at 1."""
    m = first_only + second_only
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, k) for k in range(min(first_only, second_only) + 1))
    return min(1.0, 2 * tail / 2 ** m)


def newcombe_paired_interval(both: int, first_only: int, second_only: int, neither: int,
                             z: float = Z95) -> tuple[float, float]:
    """Newcombe (1998, Stat Med 17:2635, method 10): Wilson intervals for the two marginal proportions,
    combined square-and-add with the estimated correlation phi between them. phi's numerator
    A = ad - bc is shrunk by n/2 toward 0 when positive (0 if A <= n/2); phi = 0 when a margin is empty."""
    a, b, c, d = both, first_only, second_only, neither
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    numerator = a * d - b * c
    shrunk = numerator - n / 2 if numerator > n / 2 else (0.0 if numerator >= 0 else numerator)
    phi = shrunk / math.sqrt(margins) if margins else 0.0
    dl, du2 = p1 - l1, u2 - p2
    du1, dl2 = u1 - p1, p2 - l2
    estimate = p1 - p2
    low = estimate - math.sqrt(max(0.0, dl * dl - 2 * phi * dl * du2 + du2 * du2))
    high = estimate + math.sqrt(max(0.0, du1 * du1 - 2 * phi * du1 * dl2 + dl2 * dl2))
    return max(-1.0, low), min(1.0, high)


def paired_difference(outcomes: Sequence[tuple[bool, bool]]) -> PairedDifference | None:
    """(first, second) outcome per paired item -> the difference first - second; None without pairs."""
    a = sum(1 for x, y in outcomes if x and y)
    b = sum(1 for x, y in outcomes if x and not y)
    c = sum(1 for x, y in outcomes if y and not x)
    d = len(outcomes) - a - b - c
    if not outcomes:
        return None
    low, high = newcombe_paired_interval(a, b, c, d)
    return PairedDifference((b - c) / len(outcomes), low, high, mcnemar_exact(b, c), len(outcomes), a, b, c, d)
