"""LoRA fine-tuning of a local model on chat-format data, training on the assistant's tokens only.

A plain torch loop (no Trainer): it starts fast, is easy to follow on CPU, and uses the GPU when the backend
is on one. The adapter is saved with peft, so the result loads back as `<base_spec>+lora:<adapter_dir>`.

Data-parallel under `accelerate launch` (`--cpu --num_processes N`, or `--multi_gpu`): accelerate's Accelerator
wraps the model in DistributedDataParallel, which averages the gradients. Each process takes every N-th batch
of the same shuffled order (accelerate's batch-sharding rule, `even_batches` included), so the shards are
disjoint and an optimizer step sees `batch_size x N x grad_accum` examples; only the main process writes the
adapter and its training.json (which records each process's shard). One process trains exactly as before.

Masking: each conversation is rendered with the model's own chat template and cut into segments at the
assistant turns (the template's text for turns 0..i-1 plus the generation prompt is a prefix of the text for
turns 0..i). Segments are tokenized separately, so every label outside an assistant answer is exactly -100.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..data.jsonl import iter_jsonl, parse_messages
from ..errors import InputError
from ..types import Conversation

IGNORE_INDEX = -100


@dataclass
class FinetuneConfig:
    epochs: float = 1.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    max_length: int = 512
    seed: int = 0
    max_steps: int | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data


@dataclass
class FinetuneResult:
    adapter_dir: Path
    model_spec: str
    losses: list[float] = field(default_factory=list)  # mean training loss per optimizer step
    steps: int = 0
    seconds: float = 0.0
    examples: int = 0  # conversations seen by all processes (with repeats across epochs)
    processes: int = 1  # data-parallel processes (accelerate launch)
    main_process: bool = True  # only the main process writes the adapter, logs and the store


# -- chat JSONL ---------------------------------------------------------------------------------------------
def load_chat_jsonl(path: str | Path) -> list[Conversation]:
    """Read `{"messages": [{"role", "content"}, ...]}` lines (the trl / OpenAI fine-tuning format)."""
    conversations = [parse_messages(row.get("messages"), file=str(path), line=number) for number, row in iter_jsonl(path)]
    if not conversations:
        raise InputError("file has no conversations", file=str(path))
    return conversations


def write_chat_jsonl(path: str | Path, conversations: Sequence[Conversation]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for conversation in conversations:
            handle.write(json.dumps({"messages": [m.to_dict() for m in conversation]}, ensure_ascii=False) + "\n")
    return path


# -- tokenization with the assistant-only mask ---------------------------------------------------------------
@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX everywhere except assistant answers


def chat_segments(tokenizer: Any, conversation: Conversation) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, is_assistant_answer) pieces, in order."""
    messages = [m.to_dict() for m in conversation]
    segments: list[tuple[str, bool]] = []
    done = ""  # text already emitted
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True) if index else ""
        upto = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
        if not prompt.startswith(done) or not upto.startswith(prompt):
            raise InputError("the chat template does not render turns as prefixes; cannot mask the prompt", field="chat_template")
        segments.append((prompt[len(done) :], False))
        segments.append((upto[len(prompt) :], True))
        done = upto
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if full[len(done) :]:
        segments.append((full[len(done) :], False))
    return [(text, train) for text, train in segments if text]


def encode_conversation(tokenizer: Any, conversation: Conversation, max_length: int) -> Encoded:
    ids: list[int] = []
    labels: list[int] = []
    for text, train in chat_segments(tokenizer, conversation):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        labels.extend(piece if train else [IGNORE_INDEX] * len(piece))
    return Encoded(ids[:max_length], labels[:max_length])


def _collate(batch: Sequence[Encoded], pad_id: int):
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, e in enumerate(batch):  # right padding for training
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return ids, mask, labels


# -- training ------------------------------------------------------------------------------------------------
def is_main_process() -> bool:
    """False in the workers that `accelerate launch` (torchrun) starts beside the main one: they print nothing."""
    return os.environ.get("RANK", "0") == "0"


def single_process_launch() -> bool:
    """`accelerate launch --cpu --num_processes N` on one machine: accelerate starts ONE process (its multi-CPU mode
    needs mpirun and a host file), leaving only MASTER_ADDR behind as a sign that more were asked for."""
    return (os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") and "MASTER_ADDR" in os.environ
            and "WORLD_SIZE" not in os.environ)


SINGLE_PROCESS_NOTE = ("accelerate started one process: with --cpu its several-process mode needs mpirun; for data-parallel "
                       "CPU processes on one machine use `accelerate launch --multi_gpu --num_processes N` (it runs them "
                       "on the CPU when there is no GPU). Training in one process.")


def plan_steps(n_examples: int, config: FinetuneConfig, processes: int = 1) -> int:
    """Optimizer steps: `processes` data-parallel workers each take `batch_size` examples per forward pass."""
    batches_per_epoch = math.ceil(n_examples / (config.batch_size * processes))
    steps = max(1, math.ceil(config.epochs * batches_per_epoch / config.grad_accum))
    return config.max_steps or steps  # like transformers: max_steps overrides epochs


def finetune(
    base_spec: str,
    examples: Sequence[Conversation],
    out_dir: Path,
    config: FinetuneConfig,
    progress: Callable[[int, int, float], None] | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter on `examples` and save it in `out_dir`. `progress(step, total_steps, loss)`."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from peft import LoraConfig, get_peft_model

    from ..models import load_model

    if not examples:
        raise InputError("no training examples", field="data")
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    backend = load_model(base_spec)
    model, tokenizer = backend.model, backend.tokenizer
    encoded = [encode_conversation(tokenizer, c, config.max_length) for c in examples]
    encoded = [e for e in encoded if any(label != IGNORE_INDEX for label in e.labels)]
    if not encoded:
        raise InputError(f"no example has assistant tokens within max_length={config.max_length}", field="max_length")

    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM")
    # Without a GPU, torchrun's processes (`accelerate launch --multi_gpu`) join as CPU workers (gloo) only when asked
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    processes, rank = accelerator.num_processes, accelerator.process_index
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    total = plan_steps(len(encoded), config, processes)
    warmup = max(1, total // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    trained, optimizer = accelerator.prepare(peft_model, optimizer)  # DDP when launched on several processes
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = accelerator.device
    order_rng = random.Random(config.seed)  # the same order in every process: each takes its own batches of it

    def batches():
        while True:  # epochs: reshuffle each pass
            order = list(range(len(encoded)))
            order_rng.shuffle(order)
            cut = [order[start : start + config.batch_size] for start in range(0, len(order), config.batch_size)]
            cut += cut[: (-len(cut)) % processes]  # even batches: every process steps together (accelerate's rule)
            yield from cut[rank::processes]

    stream = batches()
    losses: list[float] = []
    seen: list[int] = []  # example indices this process trained on, in order
    started = time.perf_counter()
    for step in range(total):
        optimizer.zero_grad(set_to_none=True)
        step_loss = torch.zeros((), device=device)
        for micro in range(config.grad_accum):
            indices = next(stream)
            seen.extend(indices)
            ids, mask, labels = (t.to(device) for t in _collate([encoded[i] for i in indices], pad_id))
            last = micro == config.grad_accum - 1
            with contextlib.nullcontext() if last else accelerator.no_sync(trained):  # all-reduce once per step
                loss = trained(input_ids=ids, attention_mask=mask, labels=labels).loss / config.grad_accum
                accelerator.backward(loss)
            step_loss += loss.detach()
        accelerator.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(float(accelerator.reduce(step_loss, reduction="mean")))
        if progress and accelerator.is_main_process:
            progress(step + 1, total, losses[-1])
    seconds = time.perf_counter() - started
    shards = gather_object([seen]) if processes > 1 else [seen]

    out_dir = Path(out_dir)
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        accelerator.unwrap_model(trained).save_pretrained(str(out_dir))
        summary = {"base": base_spec, "config": config.to_dict(), "examples": len(encoded),
                   "seen": sum(len(shard) for shard in shards), "processes": processes,
                   "shards": shards if processes > 1 else None, "steps": total, "seconds": round(seconds, 2),
                   "losses": [round(x, 5) for x in losses]}
        (out_dir / "training.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    accelerator.wait_for_everyone()  # the adapter exists before any process goes on to use it
    # The backend's model now carries LoRA layers; drop it so nobody evaluates it by mistake.
    del peft_model, trained, model
    return FinetuneResult(adapter_dir=out_dir, model_spec=f"{base_spec}+lora:{out_dir}", losses=losses,
                          steps=total, seconds=seconds, examples=sum(len(shard) for shard in shards),
                          processes=processes, main_process=accelerator.is_main_process)
