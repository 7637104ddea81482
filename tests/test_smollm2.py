"""The embedded model really loads and generates, deterministically when greedy."""

from __future__ import annotations

import asyncio

import pytest

from polysafe.types import GenerationConfig, Message

pytestmark = pytest.mark.slow


def test_greedy_generation_is_real_and_deterministic(smollm2):
    conversations = [(Message("user", "What is the capital of France?"),), (Message("user", "Say hello in one word."),)]
    config = GenerationConfig(max_tokens=12)
    first = asyncio.run(smollm2.generate(conversations, config))
    second = asyncio.run(smollm2.generate(list(reversed(conversations)), config))
    assert "Paris" in first[0].text
    assert [c.text for c in first] == [c.text for c in reversed(second)]  # batch order and padding change nothing
    assert all(c.completion_tokens <= 12 and c.prompt_tokens > 5 for c in first)
    assert {c.finish_reason for c in first} <= {"stop", "length"}


def test_sampling_follows_the_seed(smollm2):
    conversation = [(Message("user", "Write a word about the sea."),)]
    hot = GenerationConfig(temperature=1.0, top_p=0.95, max_tokens=10, seed=3)
    a = asyncio.run(smollm2.generate(conversation, hot))[0].text
    b = asyncio.run(smollm2.generate(conversation, hot))[0].text
    assert a == b


def test_identity_names_the_weights_and_dtype_not_a_path(smollm2):
    assert smollm2.identity.startswith("smollm2#") and smollm2.spec == "smollm2"
    assert smollm2.identity.endswith("@float32")  # auto is float32 on CPUs


def test_decode_loop_matches_transformers_generate_token_for_token(smollm2):
    """32 prompts in 8 languages, 10 greedy tokens each: the decode loop (refilling 8 rows) against `generate`
    on one left-padded batch, in float32."""
    from test_decode_loop import PROMPTS, new_loop, prompt_ids, reference_generate

    from polysafe.models.decoding import DecodeRequest

    prompts = prompt_ids(smollm2, PROMPTS)
    expected = reference_generate(smollm2, prompts, 10)
    got = new_loop(smollm2, max_rows=8).run([DecodeRequest(p, 10) for p in prompts])
    assert [r.token_ids for r in got] == expected
    assert len({tuple(e) for e in expected}) > 24
