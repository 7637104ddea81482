"""The lowered numerics' decode attention (models/attention_fast.py): rows cut into segments by length, torch's fused
CPU kernel per segment, shared prefixes merged by log-sum-exp. It must give the float32 path's attention (up to
rounding), whatever the segments, prefixes and row lengths."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch

from polysafe.models import attention_fast
from polysafe.models.decoding import DecodeLoop, Prefix, _groups

HEADS, KV_HEADS, DIM, CAPACITY = 6, 2, 16, 40


def _prefix(length: int, seed: int) -> Prefix:
    generator = torch.Generator().manual_seed(seed)
    keys = [torch.randn(KV_HEADS, length, DIM, generator=generator)]
    values = [torch.randn(KV_HEADS, length, DIM, generator=generator)]
    return Prefix(tuple(range(length)), keys, values)


def _step(lengths: list[int], prefixes: list[Prefix | None]):
    generator = torch.Generator().manual_seed(len(lengths))
    rows = [SimpleNamespace(prefix=p) for p in prefixes]
    q = torch.randn(len(lengths), HEADS, 1, DIM, generator=generator)
    keys = torch.randn(len(lengths), KV_HEADS, CAPACITY, DIM, generator=generator)
    values = torch.randn(len(lengths), KV_HEADS, CAPACITY, DIM, generator=generator)
    return rows, q, keys, values, torch.tensor(lengths)


def _reference(rows, q, keys, values, lengths, scale):
    """The float32 path that reproduces transformers' `generate`: every row padded to the longest."""
    width = int(lengths.max()) + 1
    hides = (torch.arange(width)[None, :] > lengths[:, None])[:, None, None, :]
    loop = SimpleNamespace(scale=scale)
    return DecodeLoop._attention(loop, 0, q, keys[:, :, :width], values[:, :, :width], hides, _groups(rows, "cpu"))


@pytest.mark.parametrize("cost", [0, 8, 10_000])  # many segments, some, one
@pytest.mark.parametrize("shared", ["none", "all", "some", "two"])
def test_fast_attention_equals_the_float32_path(cost, shared):
    lengths = [3, 30, 4, 4, 12, 38, 1, 7]
    first, second = _prefix(9, 1), _prefix(5, 2)
    prefixes = {"none": [None] * 8, "all": [first] * 8, "some": [first, None, first, None, None, first, None, None],
                "two": [first, second, None, second, first, first, second, None]}[shared]
    rows, q, keys, values, lengths = _step(lengths, prefixes)
    plan = attention_fast.plan(rows, lengths, torch.float32, cost=cost)
    if cost == 0:
        assert len(plan.segments) > 1
    got = attention_fast.attend(plan, 0, q, keys, values, scale=DIM**-0.5)
    want = _reference(rows, q, keys, values, lengths, DIM**-0.5)
    assert got.shape == want.shape == (8, 1, HEADS * DIM)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_positions_beyond_a_rows_length_are_never_attended():
    rows, q, keys, values, lengths = _step([2, 20, 5], [None] * 3)
    plan = attention_fast.plan(rows, lengths, torch.float32, cost=10_000)  # one segment: rows padded to 21
    before = attention_fast.attend(plan, 0, q, keys, values, scale=0.25)
    keys[0, :, 3:] = 1e4  # garbage past row 0's 3 positions (its 2 and this step's own key)
    values[0, :, 3:] = 1e6  # (left-over rows in the cache are finite)
    after = attention_fast.attend(plan, 0, q, keys, values, scale=0.25)
    torch.testing.assert_close(after, before)


def test_bfloat16_attention_stays_close_to_float32():
    lengths = [3, 30, 4, 12, 38, 1]
    rows, q, keys, values, lengths = _step(lengths, [_prefix(9, 3)] * 3 + [None] * 3)
    want = _reference(rows, q, keys, values, lengths, DIM**-0.5)
    low = [t.to(torch.bfloat16) for t in (q, keys, values)]
    for row in rows:  # the prefix in the cache's precision, as the loop keeps it
        if row.prefix is not None and row.prefix.keys[0].dtype != torch.bfloat16:
            row.prefix.keys[0], row.prefix.values[0] = row.prefix.keys[0].bfloat16(), row.prefix.values[0].bfloat16()
    got = attention_fast.attend(attention_fast.plan(rows, lengths, torch.bfloat16), 0, *low, scale=DIM**-0.5)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)


def _read(lengths, segments):
    return sum((end - start) * max(lengths[start:end]) for start, end in segments)


def test_segments_cover_every_row_once_and_minimise_what_is_read():
    lengths = [100, 98, 440, 101, 99, 97, 230, 95]
    for cost in (0, 50, 128, 1000, 10**6):
        segments = attention_fast.split(lengths, cost)
        assert [i for start, end in segments for i in range(start, end)] == list(range(len(lengths)))
        best = min(  # every way of cutting 8 rows: 2^7
            _read(lengths, cuts) + cost * len(cuts)
            for mask in itertools.product((0, 1), repeat=len(lengths) - 1)
            for cuts in [_cuts(mask)])
        assert _read(lengths, segments) + cost * len(segments) == best
    assert attention_fast.split(lengths, 10**6) == [(0, 8)]
    assert len(attention_fast.split(lengths, 0)) >= 4  # the outliers sit apart


def _cuts(mask):
    bounds = [0] + [i + 1 for i, cut in enumerate(mask) if cut] + [len(mask) + 1]
    return list(zip(bounds, bounds[1:]))
