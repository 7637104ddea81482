"""`polysafe finetune`: LoRA fine-tuning on chat-format JSONL, with a progress bar and the loss."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Callable, Iterator

import typer

from ._common import console, stderr_console
from ._training import TrainingOptions, with_training_options


@contextmanager
def training_progress(description: str = "train") -> Iterator[Callable[[int, int, float], None]]:
    """A rich bar showing step, total and the last loss; yields the `progress(step, total, loss)` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=stderr_console())
    task = bar.add_task(description, total=None, loss="-")
    with bar:
        def update(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, total=total, loss=f"{loss:.4f}")

        yield update


def finetune_command(
    base: Annotated[str, typer.Option("--base", help="Base model spec: smollm2, hf:<path|id> (may already carry +lora:<dir>).")],
    data: Annotated[Path, typer.Option("--data", help='Chat JSONL: one {"messages": [{"role", "content"}, ...]} per line.')],
    out: Annotated[Path, typer.Option("--out", help="Directory for the LoRA adapter.")],
    train: TrainingOptions = TrainingOptions(),
) -> None:
    """Fine-tune a local model with LoRA on the assistant tokens of chat data; prints the new model spec."""
    from ..training.lora import SINGLE_PROCESS_NOTE, finetune, is_main_process, single_process_launch, load_chat_jsonl

    examples = load_chat_jsonl(data)
    if not is_main_process():  # a data-parallel worker under `accelerate launch`: it trains and stays quiet
        finetune(base, examples, out, train.finetune_config())
        return
    if single_process_launch():
        console.print(f"warning: {SINGLE_PROCESS_NOTE}", style="yellow", markup=False, highlight=False)
    console.print(f"{len(examples)} conversations from {data}; base {base}")
    with training_progress() as progress:
        result = finetune(base, examples, out, train.finetune_config(), progress=progress)
    if result.processes > 1:
        console.print(f"data-parallel: {result.processes} processes, {train.batch_size} examples each per forward pass")
    first, last = result.losses[0], result.losses[-1]
    console.print(f"{result.steps} steps in {result.seconds:.0f} s ({result.seconds / result.steps:.2f} s/step, "
                  f"{result.examples / result.seconds:.2f} examples/s); loss {first:.4f} -> {last:.4f}")
    typer.echo(result.model_spec)


def register(apps) -> None:
    apps.root.command("finetune")(with_training_options()(finetune_command))
