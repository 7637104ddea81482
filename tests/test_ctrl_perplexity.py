"""Answer perplexity under the target model matches a hand computation on a tiny random Llama."""

from __future__ import annotations

import asyncio
import atexit
import functools
import math
import shutil
import tempfile
from pathlib import Path

import pytest

PAIRS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Name a colour.", "Blue."),
    ("How do plants make food?", "Plants use photosynthesis: light, water and carbon dioxide become sugar and oxygen, responsibly."),
]


def build_tiny_llama(folder: Path) -> Path:
    """A 2-layer random LlamaForCausalLM with the embedded model's tokenizer (and chat template), saved to disk."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from polysafe.models.smollm2 import converted_weights

    tokenizer = AutoTokenizer.from_pretrained(converted_weights())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@functools.lru_cache(maxsize=1)
def tiny_llama_dir() -> Path:
    """Built once per test session and shared by the CTRL test modules; removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="tiny-llama-"))
    atexit.register(shutil.rmtree, folder, True)
    return build_tiny_llama(folder)


def load_tiny():
    from polysafe.models import ModelOptions, load_model

    return load_model(f"hf:{tiny_llama_dir()}", ModelOptions(dtype="float32", device="cpu"))


@pytest.fixture(scope="module")
def tiny():
    return load_tiny()


def hand_perplexity(backend, query: str, answer: str) -> tuple[float, float]:
    """exp(mean NLL of the answer tokens), by log_softmax by hand and by the model's own masked loss."""
    import torch

    tok, model = backend.tokenizer, backend.model
    prefix = tok.apply_chat_template([{"role": "user", "content": query}], add_generation_prompt=True, tokenize=False)
    prefix_ids = tok(prefix, add_special_tokens=False)["input_ids"]
    ids = tok(prefix + answer, add_special_tokens=False)["input_ids"]
    assert ids[: len(prefix_ids)] == prefix_ids
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(input_ids=x).logits[0].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        nll = [-float(logprobs[pos - 1, ids[pos]]) for pos in range(len(prefix_ids), len(ids))]
        labels = x.clone()
        labels[0, : len(prefix_ids)] = -100
        loss = float(model(input_ids=x, labels=labels).loss)
    return math.exp(sum(nll) / len(nll)), math.exp(loss)


def test_batched_perplexity_matches_hand_computation(tiny):
    from polysafe.defenses.ctrl.scoring import target_perplexities

    batched = target_perplexities(tiny, PAIRS, batch_size=3)  # different lengths: padded in one batch
    one_by_one = target_perplexities(tiny, PAIRS, batch_size=1)
    for (query, answer), got, alone in zip(PAIRS, batched, one_by_one):
        by_hand, by_loss = hand_perplexity(tiny, query, answer)
        assert got == pytest.approx(by_hand, rel=1e-4)
        assert got == pytest.approx(by_loss, rel=1e-4)
        assert alone == pytest.approx(by_hand, rel=1e-4)
    assert len(set(round(p, 3) for p in batched)) == 3
    # A random model over a 49k vocabulary is nearly uniform: perplexity in the tens of thousands.
    assert all(1000 < p < 200_000 for p in batched)


def test_only_answer_tokens_count(tiny):
    """Prompt tokens are context: scoring the same answer after another query changes the value only through
    conditioning, and the token count equals the answer's alone."""
    from polysafe.models.scoring import answer_nll, answer_spans

    (nll_a, n_a), (nll_b, n_b) = answer_nll(tiny, [("Name a colour.", "Blue sky."), ("Name a colour, please, now.", "Blue sky.")])
    assert n_a == n_b
    ids, start = answer_spans(tiny, "Name a colour.", "Blue sky.")
    assert n_a == len(ids) - start
    assert nll_a != pytest.approx(nll_b, rel=1e-9)


def test_cached_scorer_computes_each_text_once(tiny, tmp_path):
    from polysafe.defenses.ctrl.curate import CachedScorer
    from polysafe.defenses.ctrl.scoring import HeuristicHelpfulness, target_perplexities
    from polysafe.engine.store import Store

    with Store(tmp_path / "s.db") as store:
        scorer = CachedScorer(tiny, HeuristicHelpfulness(), store)
        query = PAIRS[2][0]
        answers = [PAIRS[2][1], "Photosynthesis."]
        first = asyncio.run(scorer.score(query, answers))
        again = asyncio.run(scorer.score(query, answers + ["Sunlight."]))
        assert scorer.perplexity_calls == 3 and scorer.rating_calls == 3
        assert again[:2] == first
        assert first[0].perplexity == pytest.approx(target_perplexities(tiny, [(query, answers[0])])[0], rel=1e-6)
