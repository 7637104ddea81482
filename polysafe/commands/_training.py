"""The training options every fine-tuning command takes (finetune, attack finetune, self-defense run, ctrl run).

Defined once, so the flags are spelled and mean the same everywhere; a command may change a default (AOA
attacks train longer than a defense, for example).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Annotated, Optional

import typer


@dataclass(frozen=True)
class TrainingOptions:
    epochs: float = 1.0
    lr: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    lora_r: int = 8
    lora_alpha: int | None = None  # None: 2 x lora_r
    max_length: int = 512
    max_steps: int | None = None
    seed: int = 0

    def finetune_config(self):
        from ..training.lora import FinetuneConfig

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
    unknown = set(defaults) - set(TRAINING_OPTIONS)
    if unknown:
        raise TypeError(f"unknown training options: {', '.join(sorted(unknown))}")
    base = TrainingOptions()

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)  # typer reads annotations from the signature
        own = [p for p in signature.parameters.values() if p.name != "train"]
        clash = {p.name for p in own} & set(TRAINING_OPTIONS)
        if clash:
            raise TypeError(f"{func.__name__} defines shared training options itself: {', '.join(sorted(clash))}")
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                    default=defaults.get(name, getattr(base, name)))
                  for name, annotation in TRAINING_OPTIONS.items()]

        @functools.wraps(func)
        def command(**kwargs):
            chosen = {name: kwargs.pop(name) for name in TRAINING_OPTIONS}
            return func(**kwargs, train=TrainingOptions(**chosen))

        command.__signature__ = signature.replace(parameters=own + shared)
        command.__annotations__ = {**{k: v for k, v in func.__annotations__.items() if k != "train"}, **TRAINING_OPTIONS}
        return command

    return decorate
