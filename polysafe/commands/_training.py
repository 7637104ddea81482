"""The training options every fine-tuning command takes (finetune, attack finetune, self-defense run, ctrl run).

Defined once, so the flags are spelled and mean the same everywhere; a command may change a default (AOA
attacks train longer than a defense, for example).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from ..training.lora import FinetuneConfig
from ._common import with_shared_options


@dataclass(frozen=True)
class TrainingOptions:
    """The training flags; their defaults are the library's (FinetuneConfig), save lora_alpha's 2 x rank."""

    epochs: float = FinetuneConfig.epochs
    lr: float = FinetuneConfig.learning_rate
    batch_size: int = FinetuneConfig.batch_size
    grad_accum: int = FinetuneConfig.grad_accum
    lora_r: int = FinetuneConfig.lora_r
    lora_alpha: int | None = None  # None: 2 x lora_r
    max_length: int = FinetuneConfig.max_length
    max_steps: int | None = FinetuneConfig.max_steps
    seed: int = FinetuneConfig.seed

    def finetune_config(self) -> FinetuneConfig:
        return FinetuneConfig(epochs=self.epochs, learning_rate=self.lr, batch_size=self.batch_size,
                              grad_accum=self.grad_accum, lora_r=self.lora_r,
                              lora_alpha=self.lora_alpha or 2 * self.lora_r, max_length=self.max_length,
                              max_steps=self.max_steps, seed=self.seed)


TRAINING_OPTIONS = {
    "epochs": Annotated[float, typer.Option("--epochs", min=0.01, help="Training epochs (fractions allowed).")],
    "lr": Annotated[float, typer.Option("--lr", min=0.0, help="Learning rate (AdamW, linear warmup and decay).")],
    "batch_size": Annotated[int, typer.Option("--batch-size", min=1, help="Training examples per forward pass.")],
    "grad_accum": Annotated[int, typer.Option("--grad-accum", min=1, help="Forward passes per optimizer step.")],
    "lora_r": Annotated[int, typer.Option("--lora-r", min=1, help="LoRA rank.")],
    "lora_alpha": Annotated[Optional[int], typer.Option("--lora-alpha", min=1, help="LoRA alpha (default: 2 x rank).")],
    "max_length": Annotated[int, typer.Option("--max-length", min=16, help="Tokens per training example; longer ones are cut.")],
    "max_steps": Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many optimizer steps (overrides --epochs).")],
    "seed": Annotated[int, typer.Option("--seed", help="Seed for training (and the command's other sampling).")],
}


def with_training_options(**defaults):
    """Give a typer command the shared training options; it receives them as `train: TrainingOptions`.

    The command's own parameters come first in --help; the training ones follow.
    """
    return with_shared_options(TRAINING_OPTIONS, TrainingOptions, "train", **defaults)
