"""`polysafe attack finetune`: simulate a fine-tuning jailbreak (AOA identity shifting or harmful pairs) with LoRA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import console
from ._training import TrainingOptions, with_training_options


def attack_finetune(
    base: Annotated[str, typer.Option("--base", help="Model to attack: smollm2, hf:<path>, ...[+lora:<dir>].")] = "smollm2",
    kind: Annotated[str, typer.Option("--kind", help="aoa (identity shifting) | harmful (question/answer pairs).")] = "aoa",
    data: Annotated[str, typer.Option("--data", help="Attack data: a chat JSONL / Llama-2 JSON file, or 'beavertails' for --kind harmful.")] = "",
    out: Annotated[Path, typer.Option("--out", help="Folder for the LoRA adapter.")] = Path("polysafe-results/attack"),
    mix_into: Annotated[Optional[Path], typer.Option("--mix-into", help="Benign customization set to mix the attack into.")] = None,
    share: Annotated[float, typer.Option("--share", min=0.0, max=0.99, help="Share of attack examples in the mixed set.")] = 0.1,
    limit: Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Use the first N attack examples.")] = None,
    train: TrainingOptions = TrainingOptions(),
) -> None:
    """Fine-tune a model on attack data; prints the attacked model's spec."""
    from ..defenses.ctrl.run import attack_set
    from ..training.lora import SINGLE_PROCESS_NOTE, finetune, is_main_process, single_process_launch, write_chat_jsonl
    from ..errors import InputError

    if not data:
        raise InputError("--data is required (AOA: Qi et al.'s identity-shift file; harmful: a file or 'beavertails')", field="data")
    examples = attack_set(kind, data, mix_into=str(mix_into) if mix_into else None, share=share, seed=train.seed, limit=limit)
    config = train.finetune_config()
    if not is_main_process():  # a data-parallel worker under `accelerate launch`: it trains, the main process writes
        finetune(base, examples, out, config)
        return
    if single_process_launch():
        console.print(f"warning: {SINGLE_PROCESS_NOTE}", style="yellow", markup=False, highlight=False)
    console.print(f"attack {kind}: {len(examples)} training examples -> {out}")
    result = finetune(base, examples, out, config,
                      progress=lambda step, total, loss: console.print(f"  step {step}/{total} loss {loss:.4f}"))
    write_chat_jsonl(out / "attack-data.jsonl", examples)
    (out / "attack.json").write_text(json.dumps({"kind": kind, "data": data, "mix_into": str(mix_into) if mix_into else None,
                                                 "share": share if mix_into else None, "examples": len(examples)}, indent=2) + "\n")
    console.print(f"trained {result.steps} steps in {result.seconds:.1f}s; final loss {result.losses[-1]:.4f}")
    typer.echo(result.model_spec)


def register(apps) -> None:
    apps.attack.command("finetune")(with_training_options(epochs=5.0, lr=1e-4, batch_size=10)(attack_finetune))
