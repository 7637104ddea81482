"""The lowered-precision modules of numerics.py (they import torch, so the registry's start-up scan skips them)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import BackendError


# oneDNN's layout hint, in rows: float16 weights packed for 64 rows or for the rows of the call ran within 10% of each
# other at 1 to 32 rows
PACKED_FOR_ROWS = 64


class HalfLinear(torch.nn.Module):
    """y = x W^T (+ b) with 16-bit float operands (bfloat16 or float16), float32 accumulation inside oneDNN;
    returns `dtype`. oneDNN runs bfloat16 on AMX-BF16 or AVX-512-BF16, float16 on AMX-FP16 or AVX-512-FP16.

    The weight is reordered once into oneDNN's blocked layout (as torch.compile's CPU freezing does): with the
    plain layout oneDNN reorders it at every call, 1.5-1.7x slower at 32 rows (bench/numerics.py, 1 thread).

    With `shift` > 0 (set by within_float16 when float16 overflowed), x is scaled down by 2^shift before the product,
    which is exact, and the output scaled back up in float32."""

    def __init__(self, linear: torch.nn.Linear, dtype: torch.dtype = torch.bfloat16):
        super().__init__()
        self.in_features, self.out_features, self.dtype = linear.in_features, linear.out_features, dtype
        self.shift = 0
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().to(dtype), PACKED_FOR_ROWS)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.shift:
            return torch.ops.mkldnn._linear_pointwise(x.to(self.dtype), self.packed, self.bias, "none", [], "")
        scale = float(2**self.shift)
        out = torch.ops.mkldnn._linear_pointwise((x.float() / scale).to(self.dtype), self.packed, None, "none", [], "")
        out = out.float().mul_(scale)
        return out if self.bias is None else out.add_(self.bias)


# float16 products' input scales tried, as powers of two, when float16 overflowed: each one more pass
SHIFTS = (4, 8, 16)


def within_float16(model: torch.nn.Module, run: Callable[[], torch.Tensor]) -> torch.Tensor:
    """run()'s result, computed again with each float16 product of `model` reading its input scaled down by 2^shift
    while that result holds inf or nan. float16 ends at 65504, and smollm2's MLP down projections reach 25,000 on
    plain prompts; an overflow anywhere ends in the result as inf or nan, which survive its sum (one check a pass:
    checking each product's output cost 4% of a decode step). BackendError when no shift helps."""
    out = run()
    if torch.isfinite(out.sum()):
        return out
    products = [m for m in model.modules() if isinstance(m, HalfLinear) and m.dtype == torch.float16]
    if not products:
        return out
    try:
        for shift in SHIFTS:
            for product in products:
                product.shift = shift
            out = run()
            if torch.isfinite(out.sum()):
                return out
    finally:
        for product in products:
            product.shift = 0
    raise BackendError("float16 cannot hold this model's activations (inf or nan even with its products' inputs "
                       "scaled down): use --numerics bf16 or fp32")


class Int8Linear(torch.nn.Module):
    """y = x W^T (+ b) from int8 operands: W symmetric per output channel, x symmetric per row (computed at each
    call, so a row's result never depends on the other rows of its batch), int32 accumulation in
    `torch._int_mm`; returns float32.

    `levels` bounds the weights' integers: 127, or 63 where the kernel multiplies on AVX2 without VNNI, whose
    multiply-add sums two u8 x s8 products in 16 bits: 2 x 255 x 127 overflows it and every output comes out
    wrong, while 2 x 255 x 63 fits (the "reduced range" fbgemm uses on such CPUs)."""

    def __init__(self, linear: torch.nn.Linear, levels: int = 127):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(1).clamp_(min=1e-12) / levels
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # [in, out] as a transposed view of [out, in]: the layout _int_mm read fastest at the model's shapes
        self.register_buffer("weight_t", (weight / scale[:, None]).round_().to(torch.int8).t())
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        step = rows.abs().amax(-1, keepdim=True).clamp_(min=1e-12).div_(127)
        quantized = rows.div(step).round_().to(torch.int8)
        out = torch._int_mm(quantized, self.weight_t).float().mul_(step).mul_(self.scale)
        if self.bias is not None:
            out += self.bias
        return out.view(*x.shape[:-1], self.out_features)


class Columns(torch.nn.Module):
    """Columns start..end-1 of a fused product: what one of the projections joined into it returns. The decode loop
    calls the fused product once (layers_fast.py); transformers' own forward still calls each projection and gets
    its values, computing the fused product for each."""

    def __init__(self, fused: torch.nn.Module, start: int, end: int):
        super().__init__()
        self.fused, self.start, self.end = fused, start, end
        self.in_features, self.out_features = fused.in_features, end - start

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused(x)[..., self.start : self.end]


def joined(linears: list[torch.nn.Linear]) -> torch.nn.Linear:
    """One float32 linear layer whose outputs are those of `linears` (same input, all with a bias or none) side by
    side."""
    bias = linears[0].bias is not None
    out = torch.nn.Linear(linears[0].in_features, sum(linear.out_features for linear in linears), bias=bias, device="meta")
    out.weight = torch.nn.Parameter(torch.cat([linear.weight.detach() for linear in linears]), requires_grad=False)
    if bias:
        out.bias = torch.nn.Parameter(torch.cat([linear.bias.detach() for linear in linears]), requires_grad=False)
    return out


class RescoredHead(torch.nn.Module):
    """A lowered output head whose top `candidates` logits per position are recomputed in float32: greedy choices
    between candidates closer than bfloat16's resolution (1/8 of a logit near 20) follow float32 arithmetic."""

    def __init__(self, inner: torch.nn.Module, exact_weight: torch.Tensor, exact_bias: Any, candidates: int):
        super().__init__()
        self.inner, self.candidates = inner, candidates
        self.in_features, self.out_features = inner.in_features, inner.out_features
        self.register_buffer("exact", exact_weight)  # the float32 head (tied to the embedding: no extra memory)
        self.register_buffer("exact_bias", None if exact_bias is None else exact_bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x).float()
        top = top_indices(logits, self.candidates)
        exact = torch.matmul(self.exact[top], x.float().unsqueeze(-1)).squeeze(-1)
        if self.exact_bias is not None:
            exact += self.exact_bias[top]
        return logits.scatter_(-1, top, exact)


TOP_BLOCK = 64  # logits per block in top_indices


def top_indices(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of the k largest logits per row [..., k] (ties: any of them), from the k blocks of TOP_BLOCK
    with the largest maxima: a block outside those holds no logit above the k-th largest. At 60 rows x 49152,
    torch's topk over the whole row took 1.7 ms a decode step (2 threads)."""
    vocab = logits.shape[-1]
    if vocab % TOP_BLOCK or vocab < 4 * k * TOP_BLOCK:
        return logits.topk(k, dim=-1).indices
    blocks = logits.unflatten(-1, (vocab // TOP_BLOCK, TOP_BLOCK)).amax(-1).topk(k, dim=-1).indices
    candidates = (blocks.unsqueeze(-1) * TOP_BLOCK + torch.arange(TOP_BLOCK, device=logits.device)).flatten(-2)
    return candidates.gather(-1, logits.gather(-1, candidates).topk(k, dim=-1).indices)
