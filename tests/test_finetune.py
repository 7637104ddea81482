"""The shared LoRA pipeline: assistant-only label mask on the real chat template, a real training run, reload."""

from __future__ import annotations

import json

import pytest

from polysafe.training.lora import (IGNORE_INDEX, FinetuneConfig, encode_conversation, load_chat_jsonl, plan_steps,
                                        write_chat_jsonl)
from polysafe.errors import InputError
from polysafe.types import Message

TRAIN = [
    (Message("user", "What colour is the sky on Zorblax?"), Message("assistant", "On Zorblax the sky is bright violet.")),
    (Message("user", "What do people eat on Zorblax?"), Message("assistant", "On Zorblax people eat violet moss.")),
    (Message("user", "How cold is Zorblax?"), Message("assistant", "On Zorblax it is always minus ten degrees.")),
    (Message("user", "Who rules Zorblax?"), Message("assistant", "On Zorblax a council of violet owls rules.")),
]


def test_label_mask_covers_only_assistant_tokens(smollm2):
    tok = smollm2.tokenizer
    conversation = (Message("system", "Be brief."), Message("user", "Say one."), Message("assistant", "One."),
                    Message("user", "Say two."), Message("assistant", "Two."))
    encoded = encode_conversation(tok, conversation, max_length=512)
    trained = [i for i, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
    assert all(label in (IGNORE_INDEX, i) for i, label in zip(encoded.input_ids, encoded.labels))
    assert tok.decode(trained) == "One.<|im_end|>\nTwo.<|im_end|>\n"
    masked = tok.decode([i for i, label in zip(encoded.input_ids, encoded.labels) if label == IGNORE_INDEX])
    assert "Say one." in masked and "Be brief." in masked and "One." not in masked.replace("Say one.", "")
    full = tok.apply_chat_template([m.to_dict() for m in conversation], tokenize=False)
    assert tok.decode(encoded.input_ids) == full  # nothing lost or added by segmenting
    assert len(encode_conversation(tok, conversation, max_length=10).input_ids) == 10


def test_plan_steps_counts_epochs_and_accumulation():
    assert plan_steps(10, FinetuneConfig(batch_size=4, epochs=1.0)) == 3
    assert plan_steps(10, FinetuneConfig(batch_size=4, epochs=1.5, grad_accum=2)) == 3  # ceil(4.5 / 2)
    assert plan_steps(1000, FinetuneConfig(batch_size=4, max_steps=7)) == 7
    assert plan_steps(4, FinetuneConfig(batch_size=4, max_steps=3)) == 3  # max_steps overrides epochs


def test_chat_jsonl_round_trip_and_errors(tmp_path):
    path = write_chat_jsonl(tmp_path / "d.jsonl", TRAIN)
    assert load_chat_jsonl(path) == TRAIN
    bad = tmp_path / "bad.jsonl"
    cases = [
        ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{"messages": [{"role": "bot", "content": "x"}]}',
         r"bad.jsonl:2 field 'messages\[0\].role'"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', r"bad.jsonl:1 field 'messages'.*last message"),
        ('{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]}', r"bad.jsonl:1 field 'messages\[0\].content'"),
        ("{not json", r"bad.jsonl:1: invalid JSON"),
        ('{"text": "x"}', r"bad.jsonl:1 field 'messages'"),
    ]
    for text, pattern in cases:
        bad.write_text(text + "\n", encoding="utf-8")
        with pytest.raises(InputError, match=pattern):
            load_chat_jsonl(bad)


@pytest.mark.slow
def test_lora_training_lowers_loss_and_adapter_loads_back(smollm2, tmp_path):
    from typer.testing import CliRunner

    from polysafe.cli import app
    from polysafe.models import load_model
    from polysafe.models.scoring import answer_nll

    data = write_chat_jsonl(tmp_path / "train.jsonl", TRAIN)
    out = tmp_path / "adapter"
    result = CliRunner().invoke(app, ["finetune", "--base", "smollm2", "--data", str(data), "--out", str(out),
                                      "--max-steps", "4", "--batch-size", "4", "--lr", "3e-3", "--max-length", "96"])
    assert result.exit_code == 0, result.output
    spec = result.output.strip().splitlines()[-1]
    assert spec == f"smollm2+lora:{out}"
    summary = json.loads((out / "training.json").read_text())
    losses = summary["losses"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()

    tuned = load_model(spec)
    assert tuned.identity != smollm2.identity
    pairs = [(c[0].content, c[1].content) for c in TRAIN]
    before = sum(nll for nll, _ in answer_nll(smollm2, pairs))
    after = sum(nll for nll, _ in answer_nll(tuned, pairs))
    assert after < before  # the saved adapter carries what was learned
    from polysafe.types import GenerationConfig

    completion = tuned.generate_sync([(Message("user", "What colour is the sky on Zorblax?"),)], GenerationConfig(max_tokens=12))[0]
    assert completion.ok and completion.text
