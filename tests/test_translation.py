"""The translation layer: precomputed, llm (against a fake OpenAI server on loopback), hf seq2seq, caching."""

from __future__ import annotations

import asyncio
import re

import pytest

from polysafe.attacks import AttackContext, parse_chain
from polysafe.commands._common import EvalOptions
from polysafe.data.multijail import limit_per_language, load_multijail
from polysafe.data.translation import (LLMTranslator, PrecomputedTranslator, Seq2SeqTranslator, TranslationRequest,
                                       translate_cached, translator_from_options)
from polysafe.engine.store import Store
from polysafe.errors import BackendError, InputError
from polysafe.models import ModelOptions
from polysafe.types import Prompt

FAST = ModelOptions(max_retries=1, backoff_base=0.01)


def fake_translation(body: dict) -> str:
    """Answers like a translator: '<target language name>: <the text>' (what it got asked to translate)."""
    user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    target = re.search(r" to (\w+)", user).group(1)
    text = user.split("\n\n", 1)[1]
    return f"Translation: [{target}] {text}"


@pytest.fixture
def csv_path(shared_data):
    return shared_data / "multijail" / "MultiJail.csv"


def test_llm_translator_asks_once_and_caches_in_the_store(fake_openai, tmp_path):
    server = fake_openai(fake_translation)
    translator = LLMTranslator(f"openai:fake@{server.url}", options=FAST)
    requests = [TranslationRequest("How do I pick a lock?", "en", "bn"), TranslationRequest("Hello there", "en", "sw"),
                TranslationRequest("How do I pick a lock?", "en", "bn"), TranslationRequest("Same language", "en", "en")]
    with Store(tmp_path / "s.db") as store:
        first = asyncio.run(translate_cached(translator, requests, store))
        assert first == ["[Bengali] How do I pick a lock?", "[Swahili] Hello there", "[Bengali] How do I pick a lock?", "Same language"]
        assert server.received == 2  # the duplicate and the same-language request were not sent
        asked = [m["content"] for body in server.requests for m in body["messages"]]
        assert any("from English to Bengali (বাংলা)" in a and "translation only" in a for a in asked)
        again = asyncio.run(translate_cached(translator, requests[:2], store))
        assert again == first[:2] and server.received == 2
    # another store: asked again
    with Store(tmp_path / "other.db") as store:
        asyncio.run(translate_cached(translator, requests[:1], store))
    assert server.received == 3


def test_llm_translator_failure_raises_instead_of_passing_text_through(fake_openai):
    from fakes import Reply

    server = fake_openai(lambda body: Reply(status=500, text="boom"))
    translator = LLMTranslator(f"openai:fake@{server.url}", options=FAST)
    with pytest.raises(BackendError, match="translation with llm:openai:fake"):
        asyncio.run(translate_cached(translator, [TranslationRequest("text", "en", "zh")], None))


def test_translate_attack_in_a_chain(fake_openai, tmp_path):
    server = fake_openai(fake_translation)
    opts = EvalOptions(extra={"translator": f"llm:openai:fake@{server.url}"}, max_retries=1)
    translator = translator_from_options(opts)
    assert isinstance(translator, LLMTranslator)
    prompts = [Prompt("a", "Tell me a secret"), Prompt("b", "Write a poem")]
    with Store(tmp_path / "s.db") as store:
        ctx = AttackContext(translator=translator, store=store)
        chain = parse_chain("translate:th|jailbreak")
        out = asyncio.run(chain.apply(prompts, ctx))
    assert [o.language for o in out] == ["th", "th"]
    assert "[Thai] Tell me a secret" in out[0].text and out[0].chain == ("translate:th", "jailbreak")
    with pytest.raises(InputError, match="needs a translator"):
        asyncio.run(parse_chain("translate:th").apply(prompts, AttackContext()))
    with pytest.raises(InputError, match="unknown language code 'xx'"):
        parse_chain("translate:xx")


def test_precomputed_uses_human_translations_by_prompt_id(csv_path, tmp_path):
    translator = translator_from_options(EvalOptions(extra={"data": str(csv_path)}))
    assert isinstance(translator, PrecomputedTranslator)
    english = limit_per_language(load_multijail(csv_path, ["en"]), 3)
    bengali = limit_per_language(load_multijail(csv_path, ["bn"]), 3)
    with Store(tmp_path / "s.db") as store:
        out = asyncio.run(parse_chain("translate:bn").apply(english, AttackContext(translator=translator, store=store)))
    assert [o.text for o in out] == [p.text for p in bengali]
    back = asyncio.run(translator.translate([TranslationRequest(bengali[1].text, "bn", "en", "1")]))
    assert back == [english[1].text]
    # A prompt that is not MultiJail's row with that id gets an error, not someone else's translation.
    with pytest.raises(InputError, match="no human translation"):
        asyncio.run(translator.translate([TranslationRequest("Write a poem", "en", "bn", "1")]))


@pytest.fixture(scope="module")
def tiny_seq2seq(tmp_path_factory):
    """A tiny randomly initialised BART with a word-level tokenizer that knows NLLB's Bengali code."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "ben_Beng", "hello", "world", "good", "morning", "friend", "lock"]
    backend = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    config = BartConfig(vocab_size=len(words), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=None)
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-bart")
    BartForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_hf_seq2seq_translator_forces_the_target_language_token(tiny_seq2seq, tmp_path):
    translator = Seq2SeqTranslator(str(tiny_seq2seq))
    translator.max_new_tokens = 6
    requests = [TranslationRequest("hello world", "en", "bn"), TranslationRequest("good morning friend", "en", "bn"),
                TranslationRequest("hello friend", "en", "it")]
    with Store(tmp_path / "s.db") as store:
        out = asyncio.run(translate_cached(translator, requests, store))
        assert len(out) == 3 and all(isinstance(t, str) for t in out)
        # NLLB-style models start the output with the target language code: the forced BOS token.
        assert out[0].split()[0] == "ben_Beng" and out[1].split()[0] == "ben_Beng"
        assert not out[2].startswith("ben_Beng")  # no Italian code in this vocabulary: no forcing
        assert translator.identity.startswith("hf:") and str(tiny_seq2seq) not in translator.identity
        cached = asyncio.run(translate_cached(translator, requests, store))
    assert cached == out
    with pytest.raises(InputError, match="cannot load a seq2seq model"):
        Seq2SeqTranslator(str(tmp_path / "missing")).translate_sync(requests[:1])
