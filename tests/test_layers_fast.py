"""The lowered numerics' decoder layers (models/layers_fast.py), their joined projections (numerics.lower), and the
prefixes their decode loop shares: the same function as transformers' layers, in fewer operations."""

from __future__ import annotations

import copy
from concurrent.futures import Future

import pytest
import torch
from test_decode_loop import PROMPTS, prompt_ids, tiny  # noqa: F401  (tiny: the module's fixture)

from polysafe.errors import BackendError
from polysafe.models import layers_fast, numerics
from polysafe.models import _lowered
from polysafe.models._lowered import Columns
from polysafe.models.decoding import DecodeLoop, DecodeRequest, Prefix, _Row

LOWERED = [n for n in numerics.supported() if n.lowered]


def _loop(model, fast: bool) -> DecodeLoop:
    return DecodeLoop(model, max_rows=4, eos_ids={0}, pad_id=0, kv_budget=2**24, fast_attention=fast)


def _causal(layer, q, k, v):
    """Plain causal attention over this pass's own keys (the layers are under test, not the cache)."""
    rows, heads, width, dim = q.shape
    group = heads // k.shape[1]
    out = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(group, 1), v.float().repeat_interleave(group, 1), is_causal=True)
    return out.to(q.dtype).transpose(1, 2).reshape(rows, width, heads * dim)


def _batch(backend, count=3):
    ids = [p[:12] for p in prompt_ids(backend, PROMPTS[4:4 + count])]
    width = min(map(len, ids))
    ids = torch.tensor([p[:width] for p in ids])
    positions = (torch.arange(width) + torch.tensor([0, 5, 17])[:count, None])  # rows at their own offsets
    return ids, positions


def test_fast_layers_compute_the_float32_layers(tiny):  # noqa: F811
    ids, positions = _batch(tiny)
    with torch.inference_mode():
        want = _loop(tiny.model, fast=False)._forward(ids, positions, _causal)
        got = _loop(tiny.model, fast=True)._forward(ids, positions, _causal)
        one = _loop(tiny.model, fast=True)._forward(ids[:, -1:], positions[:, -1:], _causal)  # a decode step's shape
        want_one = _loop(tiny.model, fast=False)._forward(ids[:, -1:], positions[:, -1:], _causal)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(one, want_one, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def lowered_pair(tiny):  # noqa: F811
    """The tiny model lowered twice: with its projections joined, and each one on its own."""
    if not LOWERED:
        pytest.skip("this CPU has no matrix units for bf16 or int8")
    joined, separate = copy.deepcopy(tiny.model), copy.deepcopy(tiny.model)
    numerics.lower(joined, LOWERED[0])
    saved = dict(numerics.JOINED)
    numerics.JOINED.clear()
    try:
        numerics.lower(separate, LOWERED[0])
    finally:
        numerics.JOINED.update(saved)
    return joined, separate


def test_lowering_joins_q_k_v_and_gate_up_into_one_product_each(lowered_pair):
    joined, separate = lowered_pair
    for layer in joined.get_decoder().layers:
        attention, mlp = layer.self_attn, layer.mlp
        assert [attention.q_proj.fused, attention.k_proj.fused, attention.v_proj.fused] == [attention.qkv_proj] * 3
        assert isinstance(mlp.gate_proj, Columns) and mlp.up_proj.fused is mlp.gate_up_proj
        assert mlp.gate_up_proj.out_features == 2 * mlp.down_proj.in_features
    assert not hasattr(separate.get_decoder().layers[0].self_attn, "qkv_proj")


def test_transformers_own_forward_still_runs_a_joined_model(lowered_pair):
    """Each projection's columns of the joined product are that projection's output."""
    joined, separate = lowered_pair
    ids = torch.arange(3, 40).view(1, -1)
    with torch.inference_mode():
        got, want = joined(input_ids=ids).logits.float(), separate(input_ids=ids).logits.float()
    torch.testing.assert_close(got, want, atol=2e-2 * want.abs().max().item(), rtol=0)


def test_the_fast_layers_of_a_joined_model_compute_its_own_forward(lowered_pair, tiny):  # noqa: F811
    joined, _ = lowered_pair
    ids, _ = _batch(tiny, count=1)
    positions = torch.arange(ids.shape[1])[None]
    decoder = joined.get_decoder()
    with torch.inference_mode():
        got = decoder.norm(layers_fast.forward(decoder, ids, positions, _causal, torch.float32, _loop(joined, True).head_dim))
        want = decoder(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, want, atol=5e-3 * want.abs().max().item(), rtol=0)  # gate and up swapped: 1e-2


# -- the prefixes the fast path shares ---------------------------------------------------------------------------
TEMPLATE = tuple(range(1000, 1100))  # a jailbreak template's 100 tokens


def test_the_fast_path_shares_the_prefix_that_saves_the_most(tiny):  # noqa: F811
    """The template that all 8 rows share, not the template and the next 20 words that 4 of them share."""
    common = tuple(range(2000, 2020))
    prompts = sorted([TEMPLATE + common + (i, 7) for i in range(4)] + [TEMPLATE + (3000 + i, 7) for i in range(4)])
    loop = _loop(tiny.model, fast=True)
    assert loop._most_saving_prefix(prompts, 4) == TEMPLATE
    assert loop._most_saving_prefix(prompts[:4], 4) == TEMPLATE + common  # where only those 4 wait
    loop.prefixes[TEMPLATE] = Prefix(TEMPLATE, [], [])  # once the template is kept, 20 more tokens are not worth a call
    assert loop._most_saving_prefix(prompts, 4) == ()


def test_the_fast_path_keeps_a_short_system_prompt_in_each_rows_own_cache(tiny):  # noqa: F811
    """A 24-token chat template shared by every row would cost a kernel call a layer: the fast path leaves it in
    the rows' own cache, where the float32 path shares it."""
    system = tuple(range(500, 524))
    rows = [_Row(DecodeRequest(system + (600 + i, 9), 4), Future()) for i in range(8)]
    fast, exact = _loop(tiny.model, fast=True), _loop(tiny.model, fast=False)
    with torch.inference_mode():
        fast._share_prefixes(rows)
        exact._share_prefixes(rows)
    assert list(exact.prefixes) == [system] and not fast.prefixes


# -- float16's range ---------------------------------------------------------------------------------------------
FP16 = next((n for n in LOWERED if n.name == "fp16"), None)


@pytest.fixture(scope="module")
def overflowing(tiny):  # noqa: F811
    """The tiny model with its first MLP's gate and up scaled so that its down projection reads inputs near 3.5
    million and writes outputs near 200,000, as massive activations do (float16 ends at 65504; smollm2's own down
    projections reach 25,000), in float32 and lowered to fp16."""
    if FP16 is None:
        pytest.skip("this CPU has no fp16 matrix units")
    ids, positions = _batch(tiny)
    big = copy.deepcopy(tiny.model)
    mlp = big.get_decoder().layers[0].mlp
    seen = []
    hook = mlp.down_proj.register_forward_hook(lambda module, args, out: seen.append(out.abs().max().item()))
    with torch.inference_mode():
        _loop(big, fast=True)._forward(ids, positions, _causal)
    hook.remove()
    with torch.no_grad():  # silu is linear for large inputs: the down projection's outputs grow by the square
        for part in (mlp.gate_proj, mlp.up_proj):
            part.weight.mul_((2e5 / max(seen)) ** 0.5)
    lowered = copy.deepcopy(big)
    numerics.lower(lowered, FP16)
    return big, lowered, ids, positions


def test_a_float16_overflow_is_computed_again_with_scaled_inputs(overflowing, monkeypatch):
    big, lowered, ids, positions = overflowing
    with torch.inference_mode():
        want = _loop(big, fast=True)._forward(ids, positions, _causal)
        got = _loop(lowered, fast=True)._forward(ids, positions, _causal)
    assert want.abs().max() > 65504 and torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=2e-3 * want.abs().max().item(), rtol=0)
    assert {m.shift for m in lowered.modules() if hasattr(m, "shift")} == {0}  # the next pass starts unscaled
    monkeypatch.setattr(_lowered, "SHIFTS", ())  # no scaling: the overflow is said, never decoded into tokens
    with torch.inference_mode(), pytest.raises(BackendError, match="float16 cannot hold"):
        _loop(lowered, fast=True)._forward(ids, positions, _causal)


def test_a_prefix_computed_again_keeps_one_key_per_layer(overflowing):
    _, lowered, ids, _ = overflowing
    with torch.inference_mode():
        prefix = _loop(lowered, fast=True)._compute_prefix(tuple(ids[0].tolist()))
    assert len(prefix.keys) == len(lowered.get_decoder().layers) == len(prefix.values)
    assert all(torch.isfinite(k.float()).all() and torch.isfinite(v.float()).all() for k, v in zip(prefix.keys, prefix.values))


def test_weights_beyond_float16s_range_are_refused(tiny):  # noqa: F811
    if FP16 is None:
        pytest.skip("this CPU has no fp16 matrix units")
    big = copy.deepcopy(tiny.model)
    with torch.no_grad():
        big.get_decoder().layers[1].mlp.up_proj.weight[3, 5] = 1e5
    with pytest.raises(BackendError, match=r"float16 cannot hold this model's weights \(model\.layers\.1\.mlp\.up_proj"):
        numerics.lower(big, FP16)


def test_the_heads_top_candidates_are_torchs_topk():
    from polysafe.models._lowered import top_indices

    logits = torch.randn(4, 49152, generator=torch.Generator().manual_seed(0))
    logits[1, 640:648] += 10  # a row's top 8 all in one block
    logits[2, ::6144] += 10  # one in each of 8 blocks
    logits[3, 100:104] += 10  # 4 in one block, 4 spread
    logits[3, 20000::7000] += 10
    assert torch.equal(top_indices(logits, 8).sort().values, logits.topk(8).indices.sort().values)


def test_scoring_with_float16_survives_its_overflow(overflowing):
    """Perplexity (CTRL's filter) runs transformers' own forward through the lowered products: the same check."""
    from polysafe.models import ModelOptions, load_model
    from polysafe.models.scoring import answer_nll
    from test_ctrl_perplexity import tiny_llama_dir

    big, lowered, _, _ = overflowing
    backends = {}
    for name, model in (("fp32", big), ("fp16", lowered)):
        backends[name] = load_model(f"hf:{tiny_llama_dir()}", ModelOptions(numerics=name, device="cpu"))
        backends[name].model  # load, then put the overflowing weights in place
        backends[name]._model = model
    pairs = [("What is the capital of France?", "Paris, on the Seine."), (None, "Rain falls on the quiet town.")]
    want, got = answer_nll(backends["fp32"], pairs), answer_nll(backends["fp16"], pairs)
    assert [n for _, n in got] == [n for _, n in want]
    for (nll, _), (exact, _) in zip(got, want):
        assert abs(nll - exact) <= 0.02 * abs(exact)
