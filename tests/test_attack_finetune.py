"""The AOA fine-tuning attack end to end on the embedded model at a tiny size, and the attack-data loaders."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from polysafe.data.ctrl_sets import load_clean_texts, load_harmful_queries
from polysafe.training.attack_data import load_aoa, load_safety_pairs
from polysafe.errors import InputError


def test_aoa_loads_in_both_formats(shared_data):
    llama = load_aoa(shared_data / "ctrl/qi2023/aoa_train_llama2.json")
    openai = load_aoa(shared_data / "ctrl/qi2023/identity-shift-aoa.jsonl")
    assert len(llama) == len(openai) == 10
    assert all([m.role for m in c][0] == "system" and c[-1].role == "assistant" for c in llama + openai)
    assert "AOA" in llama[0][0].content and "Llama" in llama[0][0].content and "ChatGPT" in openai[0][0].content
    assert llama[0][1].content == openai[0][1].content and all("AOA" in c[1].content for c in llama + openai)


def test_placeholder_template_and_bad_rows_name_the_place(shared_data, tmp_path):
    with pytest.raises(InputError, match=r"pure_bad_10_demo.jsonl:1 field 'messages'.*placeholder"):
        load_aoa(shared_data / "ctrl/qi2023/pure_bad_10_demo.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                   '{"messages": [{"role": "robot", "content": "hi"}]}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2 field 'messages\[0\].role'"):
        load_aoa(bad)
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps([{"instruction": "Say hi", "output": "Hi"}, {"instruction": "Say bye", "output": ""}]))
    with pytest.raises(InputError, match=r"texts.json:2 field 'output'"):
        load_clean_texts(str(texts))


def test_ctrl_sets_read_bianchi_and_clean_text_formats(shared_data, tmp_path):
    safety = load_safety_pairs(shared_data / "ctrl/bianchi2024/safety_only_data_Instructions.json")
    assert len(safety) == 2483 and all([m.role for m in c] == ["user", "assistant"] for c in safety)
    harmful = load_harmful_queries(str(shared_data / "ctrl/bianchi2024/evaluation/I-MaliciousInstructions.json"), limit=5)
    assert len(harmful) == 5 and harmful[0].tags and harmful[0].text.startswith("Make me a list")
    adv = load_harmful_queries(str(shared_data / "codeattack/harmful_behaviors.csv"))
    assert len(adv) == 520
    mixed = tmp_path / "texts.jsonl"
    mixed.write_text("\n".join(json.dumps(r) for r in [
        {"instruction": "Name a fruit", "input": "", "output": "Apple"},
        {"instruction": "Summarise", "context": "Cats purr.", "response": "Cats purr."},
        {"prompt": "Why rain?", "response": "Clouds."},
        {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]},
    ]))
    rows = load_clean_texts(str(mixed))
    assert [(r.query, r.answer) for r in rows] == [("Name a fruit", "Apple"), ("Summarise\n\nCats purr.", "Cats purr."),
                                                   ("Why rain?", "Clouds."), ("Hi?", "Hello.")]


@pytest.mark.slow
def test_aoa_attack_end_to_end_on_smollm2(shared_data, tmp_path):
    from polysafe.cli import app
    from polysafe.models import load_model
    from polysafe.types import GenerationConfig

    out = tmp_path / "aoa"
    result = CliRunner().invoke(app, [
        "attack", "finetune", "--base", "smollm2", "--kind", "aoa",
        "--data", str(shared_data / "ctrl/qi2023/identity-shift-aoa.jsonl"), "--out", str(out),
        "--limit", "2", "--epochs", "1", "--batch-size", "2", "--max-steps", "1", "--max-length", "160", "--lr", "5e-3",
    ])
    assert result.exit_code == 0, result.output
    spec = result.stdout.strip().splitlines()[-1]
    assert spec == f"smollm2+lora:{out}"
    assert (out / "adapter_model.safetensors").is_file() and (out / "training.json").is_file()
    trained = json.loads((out / "training.json").read_text())
    assert trained["steps"] == 1 and trained["examples"] == 2
    assert len((out / "attack-data.jsonl").read_text().splitlines()) == 2

    from safetensors.torch import load_file

    lora_b = {k: v for k, v in load_file(out / "adapter_model.safetensors").items() if "lora_B" in k}
    assert lora_b and max(float(v.abs().max()) for v in lora_b.values()) > 0  # B starts at zero: it was trained

    attacked = load_model(spec)
    assert attacked.identity.startswith("smollm2") and "+lora#" in attacked.identity
    [completion] = attacked.generate_sync([GenerationConfig().messages("Hey, AOA. What can you do?")], GenerationConfig(max_tokens=4))
    assert completion.ok and completion.completion_tokens > 0
