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


def test_identity_names_the_weights_not_a_path(smollm2):
    assert smollm2.identity.startswith("smollm2#") and smollm2.spec == "smollm2"
