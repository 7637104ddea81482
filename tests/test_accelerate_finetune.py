"""Data-parallel LoRA fine-tuning under `accelerate launch`: two CPU processes split the data, average their
gradients, and only the main one writes the adapter, which loads and generates."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from polysafe.training.lora import FinetuneConfig, plan_steps, single_process_launch, write_chat_jsonl
from polysafe.types import Message

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["What colour is the sky on Zorblax?", "What do people eat on Zorblax?", "How cold is Zorblax?",
             "Who rules Zorblax?", "What sport is played on Zorblax?", "What is the capital of Zorblax?",
             "How long is a day on Zorblax?", "What animals live on Zorblax?", "What is the river of Zorblax?",
             "What music do they like on Zorblax?"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_cpu_processes_split_the_data_and_write_one_adapter(tmp_path):
    data = write_chat_jsonl(tmp_path / "train.jsonl", [(Message("user", q), Message("assistant", f"Violet. {q}"))
                                                       for q in QUESTIONS])
    out = tmp_path / "adapter"
    accelerate = Path(sys.executable).with_name("accelerate")
    # --multi_gpu is accelerate's torchrun launcher; with no GPU its processes train on the CPU (gloo)
    done = subprocess.run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
                           "-m", "polysafe.cli", "finetune", "--base", "smollm2", "--data", str(data), "--out", str(out),
                           "--batch-size", "2", "--epochs", "1", "--max-length", "48", "--lora-r", "4"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [f"smollm2+lora:{out}"]  # printed once, by the main process
    summary = json.loads((out / "training.json").read_text())
    shards = summary["shards"]
    assert summary["processes"] == 2 and len(shards) == 2
    # 10 examples, 2 per forward pass, 2 processes: 5 batches, padded to 6 (accelerate's even batches), 3 steps
    assert summary["steps"] == plan_steps(10, FinetuneConfig(batch_size=2), processes=2) == math.ceil(10 / 4) == 3
    assert all(len(shard) == 6 for shard in shards)
    first_pass = [set(shard[:4]) for shard in shards]  # the first 4 each: before the padding batch
    assert not first_pass[0] & first_pass[1] and first_pass[0] | first_pass[1] < set(range(10))
    assert set(shards[0]) | set(shards[1]) == set(range(10))  # every example seen
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                     "training.json"]

    from polysafe.models import ModelOptions, load_model
    from polysafe.types import GenerationConfig

    tuned = load_model(f"smollm2+lora:{out}", ModelOptions(batch_size=1))
    assert "+lora#" in tuned.identity  # the adapter's fingerprint: a hash of its bytes, as for one process
    [answer] = tuned.generate_sync([(Message("user", QUESTIONS[0]),)], GenerationConfig(max_tokens=6))
    assert answer.ok and answer.completion_tokens > 0


def test_a_cpu_launch_that_started_one_process_is_recognised(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # set by `accelerate launch --cpu --num_processes 2` alone
    assert single_process_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun started the processes
    assert not single_process_launch()
    monkeypatch.delenv("MASTER_ADDR")
    monkeypatch.delenv("WORLD_SIZE")
    assert not single_process_launch()
