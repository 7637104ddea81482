"""`polysafe finetune`: LoRA fine-tuning on chat-format JSONL, with a progress bar and the loss."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer

from ._common import console


@contextmanager
def training_progress(description: str = "train") -> Iterator[Callable[[int, int, float], None]]:
    """A rich bar showing step, total and the last loss; yields the `progress(step, total, loss)` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=console)
    task = bar.add_task(description, total=None, loss="-")
    with bar:
        def update(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=f"{loss:.4f}")

        yield update


def register(apps) -> None:
    @apps.root.command("finetune")
    def finetune_command(
        base: Annotated[str, typer.Option("--base", help="Base model spec: smollm2, hf:<path|id> (may already carry +lora:<dir>).")],
        data: Annotated[Path, typer.Option("--data", help='Chat JSONL: one {"messages": [{"role", "content"}, ...]} per line.')],
        out: Annotated[Path, typer.Option("--out", help="Directory for the LoRA adapter.")],
        epochs: Annotated[float, typer.Option("--epochs", min=0.01)] = 1.0,
        learning_rate: Annotated[float, typer.Option("--lr", min=0.0)] = 2e-4,
        batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
        grad_accum: Annotated[int, typer.Option("--grad-accum", min=1)] = 1,
        lora_r: Annotated[int, typer.Option("--lora-r", min=1)] = 8,
        lora_alpha: Annotated[int, typer.Option("--lora-alpha", min=1)] = 16,
        max_length: Annotated[int, typer.Option("--max-length", min=16, help="Tokens per example; longer ones are cut.")] = 512,
        max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after this many optimizer steps.")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
    ) -> None:
        """Fine-tune a local model with LoRA on the assistant tokens of chat data; prints the new model spec."""
        from ..defenses.finetune import FinetuneConfig, finetune, load_chat_jsonl

        examples = load_chat_jsonl(data)
        config = FinetuneConfig(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, grad_accum=grad_accum,
                                lora_r=lora_r, lora_alpha=lora_alpha, max_length=max_length, seed=seed, max_steps=max_steps)
        console.print(f"{len(examples)} conversations from {data}; base {base}")
        with training_progress() as progress:
            result = finetune(base, examples, out, config, progress=progress)
        first, last = result.losses[0], result.losses[-1]
        console.print(f"{result.steps} steps in {result.seconds:.0f} s ({result.seconds / result.steps:.2f} s/step, "
                      f"{result.examples / result.seconds:.2f} examples/s); loss {first:.4f} -> {last:.4f}")
        typer.echo(result.model_spec)
