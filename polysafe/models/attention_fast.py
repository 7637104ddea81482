"""Decode-step attention for the lowered numerics (numerics.py): torch's fused CPU attention kernel, over rows
grouped by length.

The float32 path (DecodeLoop._attention) pads every row to the longest one and follows transformers' arithmetic,
so that greedy decoding picks `generate`'s tokens. Here, instead:

- neighbouring cache slots are cut into segments, each attended only up to its own longest row: one long row no
  longer makes every row read the whole width (rows of ~100 positions beside one of 440 read 3.6x what they need);
- each segment is one call of torch's flash-attention kernel for the CPU, which reads the cache where it lies
  (the matmul path copies a bfloat16 slice of it first: half a decode step went to those copies);
- a shared prefix is one more call for the rows that share it, and the parts are merged by their log-sum-exp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

# What one more kernel call costs, in row-positions attended: 20-35 us of call overhead against 0.05-0.09 us per
# row-position (2 threads, smollm2's 3 key/value heads of 64, the cache cold as in a decode step). The bench's
# workload ran 2.5% faster at 400 than at 128, twice side by side (bench/numerics.py's, bf16).
SEGMENT_COST = 400
# Tokens a shared prefix must have (and add to the one its rows already share). Each prefix is one more kernel call
# and merge per layer, about 100 us at 2 threads: a chat template's 24-token system prompt, shared by 4 to 29 rows
# as 5 prefixes that differ in a token or two, took 0.5 ms a layer, where reading it in each row's own cache takes
# 0.08 ms (bf16 steps 20% faster per row without them); a jailbreak template's ~170 tokens stay shared.
SHARED_PREFIX_MIN = 64


@dataclass(frozen=True)
class Segment:
    start: int  # slots start..end-1
    end: int
    width: int  # positions attended: the longest row's
    mask: Any  # additive [rows, 1, 1, width] (0 or -inf), None when every row is `width` long


@dataclass(frozen=True)
class Plan:
    """One decode step's attention layout, shared by all layers."""

    segments: list[Segment]
    prefixes: list[tuple[Any, Any]]  # (the slots that share it, None for all; the Prefix)


def split(lengths: Sequence[int], cost: int = SEGMENT_COST) -> list[tuple[int, int]]:
    """Contiguous segments of `lengths` that minimise the positions read (each row reads its segment's longest)
    plus `cost` per segment: an exact dynamic programme, O(rows^2)."""
    best = [0.0] + [float("inf")] * len(lengths)
    cut = [0] * (len(lengths) + 1)
    for end in range(1, len(lengths) + 1):
        longest = 0
        for start in range(end - 1, -1, -1):
            longest = max(longest, lengths[start])
            total = best[start] + (end - start) * longest + cost
            if total < best[end]:
                best[end], cut[end] = total, start
    segments = []
    end = len(lengths)
    while end:
        segments.append((cut[end], end))
        end = cut[end]
    return segments[::-1]


def plan(rows: Sequence[Any], lengths: Any, dtype: Any, cost: int = SEGMENT_COST) -> Plan:
    """The layout of a step whose rows hold `lengths` positions before this step's own key is written."""
    import torch

    own = (lengths + 1).tolist()
    segments = []
    for start, end in split(own, cost):
        width = max(own[start:end])
        mask = None
        if min(own[start:end]) < width:
            hides = torch.arange(width)[None, :] >= torch.tensor(own[start:end])[:, None]
            mask = torch.zeros((end - start, 1, 1, width), dtype=dtype).masked_fill_(hides[:, None, None, :], float("-inf"))
        segments.append(Segment(start, end, width, mask))
    shared: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        if row.prefix is not None:
            shared.setdefault(id(row.prefix), []).append(i)
    prefixes = []
    for members in shared.values():
        prefix = rows[members[0]].prefix
        prefixes.append((None if len(members) == len(rows) else torch.tensor(members), prefix))
    return Plan(segments, prefixes)


def attend(plan: Plan, layer: int, q: Any, keys: Any, values: Any, scale: float) -> Any:
    """One new token per row, q [rows, heads, 1, d], over each row's prefix and its own `keys` / `values`
    [rows, kv_heads, capacity, d]. Returns [rows, 1, heads x d] in q's dtype."""
    import torch

    rows, heads, _, dim = q.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    q = q.reshape(rows, kv_heads, group, dim)  # query head h uses key/value head h // group, as in transformers
    outs, sums = [], []
    for s in plan.segments:
        out, lse = _flash(q[s.start : s.end], keys[s.start : s.end, :, : s.width], values[s.start : s.end, :, : s.width],
                          s.mask, scale)
        outs.append(out)
        sums.append(lse)
    out = torch.cat(outs) if len(outs) > 1 else outs[0]
    if not plan.prefixes:
        return out.reshape(rows, 1, heads * dim)
    lse = torch.cat(sums) if len(sums) > 1 else sums[0]
    total = lse.clone()
    parts = []
    for members, prefix in plan.prefixes:
        sub = q if members is None else q[members]
        count = sub.shape[0]
        part, part_lse = _flash(sub.transpose(0, 1).reshape(1, kv_heads, count * group, dim), prefix.keys[layer][None],
                                prefix.values[layer][None], None, scale)
        part = part.view(kv_heads, count, group, dim).transpose(0, 1)
        part_lse = part_lse.view(kv_heads, count, group).transpose(0, 1)
        parts.append((members, part, part_lse))
        if members is None:
            total = torch.logaddexp(total, part_lse)
        else:
            total[members] = torch.logaddexp(total[members], part_lse)
    merged = out.float().mul_((lse - total).exp_().unsqueeze(-1))
    for members, part, part_lse in parts:
        weight = (part_lse - (total if members is None else total[members])).exp_().unsqueeze(-1)
        if members is None:
            merged += part.float() * weight
        else:
            merged.index_add_(0, members, part.float() * weight)
    return merged.to(q.dtype).reshape(rows, 1, heads * dim)


def _flash(q: Any, keys: Any, values: Any, mask: Any, scale: float) -> tuple[Any, Any]:
    """(softmax(q k^T * scale + mask) v, its log-sum-exp per query), float32 accumulation for bfloat16 operands."""
    import torch

    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, keys, values, 0.0, False, attn_mask=mask,
                                                                      scale=scale)
