"""The decoder's layers for the lowered numerics (numerics.py): fewer, larger operations per layer.

The float32 path (DecodeLoop._forward) calls the model's own modules in transformers' order, so that greedy
decoding picks `generate`'s tokens. At 60 rows, a bf16 decode step's layer spent as long in some forty small
operations as in its matrix products. Here, per layer:

- q, k and v come from one product, and so do the MLP's gate and up (numerics.lower joins their weights);
- each RMS norm is one call (torch.rms_norm) instead of six element-wise operations;
- the rotary embedding turns q and k together, with rotate_half's swap as a flip and its sign folded into sin;
- the residual stream is added to in place.

The arithmetic is transformers' up to rounding (tests/test_layers_fast.py); the modules are the model's own, so
an unlowered model (no joined projections) runs here too.
"""

from __future__ import annotations

from typing import Any, Callable

# attend(layer index, q [rows, heads, width, d], k and v [rows, kv_heads, width, d]) -> [rows, width, heads x d]
Attend = Callable[[int, Any, Any, Any], Any]


def forward(decoder: Any, ids: Any, positions: Any, attend: Attend, kv_dtype: Any, head_dim: int) -> Any:
    """The decoder's layers on `ids` [rows, width] at `positions`; returns the last layer's hidden states, before
    the final norm, as DecodeLoop._forward does. Where float16 overflowed, the pass runs again with its products'
    inputs scaled down (_lowered.within_float16), writing the same cache positions again."""
    from ._lowered import within_float16

    return within_float16(decoder, lambda: _layers(decoder, ids, positions, attend, kv_dtype, head_dim))


def _layers(decoder: Any, ids: Any, positions: Any, attend: Attend, kv_dtype: Any, head_dim: int) -> Any:
    import torch

    rows, width = ids.shape
    hidden = decoder.embed_tokens(ids)
    cos, sin = decoder.rotary_emb(hidden, positions)  # [rows, width, d]
    half = head_dim // 2
    cos = cos[:, :, None, :]  # over the heads of [rows, width, heads, d]
    signed_sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)[:, :, None, :]
    heads, kv_heads = decoder.config.num_attention_heads, decoder.config.num_key_value_heads
    for index, layer in enumerate(decoder.layers):
        attention = layer.self_attn
        qkv = _qkv(attention, _norm(layer.input_layernorm, hidden))
        qk = qkv[..., : (heads + kv_heads) * head_dim].view(rows, width, heads + kv_heads, head_dim)
        swapped = qk.unflatten(-1, (2, half)).flip(-2).flatten(-2)
        turned = torch.addcmul(qk * cos, swapped, signed_sin).to(kv_dtype)
        q, k = turned[:, :, :heads].transpose(1, 2), turned[:, :, heads:].transpose(1, 2)
        v = qkv[..., (heads + kv_heads) * head_dim :].view(rows, width, kv_heads, head_dim).transpose(1, 2).to(kv_dtype)
        hidden += attention.o_proj(attend(index, q, k, v))
        hidden += _mlp(layer.mlp, _norm(layer.post_attention_layernorm, hidden))
    return hidden


def _norm(norm: Any, hidden: Any) -> Any:
    import torch

    eps = getattr(norm, "variance_epsilon", None)
    if eps is None:  # not Llama's RMSNorm: the module itself
        return norm(hidden)
    return torch.rms_norm(hidden, (hidden.shape[-1],), norm.weight, eps)


def _qkv(attention: Any, x: Any) -> Any:
    """q, k and v side by side: one product where lowering joined them."""
    import torch

    joined = getattr(attention, "qkv_proj", None)
    if joined is not None:
        return joined(x)
    return torch.cat([attention.q_proj(x), attention.k_proj(x), attention.v_proj(x)], dim=-1)


def _mlp(mlp: Any, x: Any) -> Any:
    joined = getattr(mlp, "gate_up_proj", None)
    if joined is None:
        return mlp(x)
    gate, up = joined(x).chunk(2, dim=-1)
    return mlp.down_proj(mlp.act_fn(gate).mul_(up))
