"""Every training command takes the same training flags, and each flag reaches the fine-tuning config."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from polysafe.cli import app
from polysafe.commands._training import TRAINING_OPTIONS, TrainingOptions, with_training_options

COMMANDS = [("finetune",), ("attack", "finetune"), ("defend", "ctrl", "run"), ("defend", "self-defense", "run")]
FLAGS = ["--epochs", "0.5", "--lr", "3e-5", "--batch-size", "3", "--grad-accum", "2", "--lora-r", "4",
         "--lora-alpha", "7", "--max-length", "99", "--max-steps", "5", "--seed", "11"]
EXPECTED = {"epochs": 0.5, "learning_rate": 3e-5, "batch_size": 3, "grad_accum": 2, "lora_r": 4, "lora_alpha": 7,
            "max_length": 99, "max_steps": 5, "seed": 11}


def command(path: tuple[str, ...]):
    found = typer.main.get_command(app)
    for name in path:
        found = found.commands[name]
    return found


SHARED = {"--epochs", "--lr", "--batch-size", "--grad-accum", "--lora-r", "--lora-alpha", "--max-length", "--max-steps", "--seed"}


def training_params(cmd) -> dict[str, tuple]:
    """Each training flag with its names, type, bounds and help."""
    return {p.opts[0]: (tuple(p.opts), p.type_descriptor.annotation, p.type_descriptor.parameter_info.min, p.help)
            for p in cmd.params if set(p.opts) & SHARED}


def test_the_four_training_commands_take_the_same_flags():
    reference = training_params(command(COMMANDS[0]))
    assert set(reference) == SHARED and len(SHARED) == len(TRAINING_OPTIONS)
    for path in COMMANDS[1:]:
        assert training_params(command(path)) == reference, path
        assert not any("--train-batch-size" in p.opts for p in command(path).params)


class Stop(Exception):
    pass


def capture(monkeypatch, target: str, position: int, *, coroutine: bool = False):
    """Replace `target` by a function that keeps its argument at `position` and stops the command."""
    seen = {}

    def fake(*args, **kwargs):
        seen["config"] = args[position]
        raise Stop

    async def async_fake(*args, **kwargs):
        fake(*args, **kwargs)

    monkeypatch.setattr(target, async_fake if coroutine else fake)
    return seen


def test_flags_reach_the_finetune_config_in_finetune_and_attack(monkeypatch, shared_data, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    seen = capture(monkeypatch, "polysafe.training.lora.finetune", 3)
    result = CliRunner().invoke(app, ["finetune", "--base", "smollm2", "--data", str(data), "--out", str(tmp_path / "a"), *FLAGS])
    assert isinstance(result.exception, Stop), result.output
    config = seen.pop("config")
    assert {k: getattr(config, k) for k in EXPECTED} == EXPECTED
    result = CliRunner().invoke(app, ["attack", "finetune", "--data", str(shared_data / "ctrl/qi2023/identity-shift-aoa.jsonl"),
                                      "--out", str(tmp_path / "b"), *FLAGS])
    assert isinstance(result.exception, Stop)
    assert {k: getattr(seen["config"], k) for k in EXPECTED} == EXPECTED


def test_flags_reach_the_finetune_config_in_ctrl_and_self_defense(monkeypatch, shared_data, tmp_path):
    curated = tmp_path / "c.jsonl"
    curated.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                                   "objective": "max_ppl"}) + "\n")
    benign = shared_data / "ctrl/bianchi2024/evaluation/I-Alpaca.json"
    seen = capture(monkeypatch, "polysafe.defenses.ctrl.run.run_ctrl", 0, coroutine=True)
    result = CliRunner().invoke(app, [
        "defend", "ctrl", "run", "--curated", str(curated), "--attack-data", str(shared_data / "ctrl/qi2023/identity-shift-aoa.jsonl"),
        "--harmful", str(shared_data / "codeattack/harmful_behaviors.csv"), "--benign", str(benign), *FLAGS])
    assert isinstance(result.exception, Stop)
    config = seen.pop("config").finetune
    assert {k: getattr(config, k) for k in EXPECTED} == EXPECTED

    seen = capture(monkeypatch, "polysafe.commands.selfdefense.execute_run", 0)
    result = CliRunner().invoke(app, [
        "defend", "self-defense", "run", "--data", str(shared_data / "multijail/MultiJail.csv"), "--languages", "en",
        "--limit", "1", "--benign", str(benign), "--out", str(tmp_path / "sd"), *FLAGS])
    assert isinstance(result.exception, Stop), result.output
    assert {k: getattr(seen["config"].finetune, k) for k in EXPECTED} == EXPECTED
    assert seen["config"].plan.seed == 11  # the same --seed drives generation


def test_defaults_per_command_and_alpha_follows_rank():
    assert TrainingOptions(lora_r=4).finetune_config().lora_alpha == 8
    assert TrainingOptions(lora_r=4, lora_alpha=5).finetune_config().lora_alpha == 5
    defaults = {path: {p.name: p.default for p in command(path).params} for path in COMMANDS}
    assert defaults[("attack", "finetune")]["epochs"] == 5.0 and defaults[("finetune",)]["epochs"] == 1.0
    assert all(d["lora_alpha"] is None and d["seed"] == 0 for d in defaults.values())
    with pytest.raises(TypeError, match="unknown shared options: epoch"):
        with_training_options(epoch=2)
