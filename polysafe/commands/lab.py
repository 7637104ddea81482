"""`polysafe lab generalization`: English vs multilingual safety tuning of the embedded model, profiled on
held-out prompts; one page with the transfer matrix and a plain reading of it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import DEFAULT_DB, DbOpt, DtypeOpt, MaxTokensOpt, command_group, console, error_line, stderr_console
from ._training import TrainingOptions, with_training_options

ListOpt = Optional[str]


def _items(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(part.strip() for part in text.split(",") if part.strip())


def generalization(
    safety: Annotated[str, typer.Option("--safety", help="Bianchi et al.'s safety_only_data_Instructions.json (path or URL).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Local base model spec to tune (smollm2, hf:<path>).")] = "smollm2",
    data: Annotated[Optional[str], typer.Option("--data", help="Local MultiJail CSV; default: the hub dataset.")] = None,
    benign: Annotated[Optional[str], typer.Option("--benign", help="I-Alpaca JSON (path or URL; default: its public URL): over-refusal prompts, and helpful prompts past --benign-eval.")] = None,
    helpful: Annotated[Optional[str], typer.Option("--helpful", help="Your helpful (instruction, answer) pairs: Alpaca/Dolly/prompt-response/chat rows, JSON or JSONL (default: polysafe's general seeds + the base model's own answers to benign prompts).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for splits, training data, adapters and the page (default: beside --db).")] = None,
    prompts: Annotated[int, typer.Option("--prompts", "-n", min=2, help="Held-out seed queries per profile cell.")] = 10,
    safety_examples: Annotated[int, typer.Option("--safety-examples", min=1, help="English safety pairs (a seeded sample of Bianchi et al.'s).")] = 64,
    helpful_share: Annotated[float, typer.Option("--helpful-share", min=0.0, max=0.95, help="Share of helpful pairs in A's data.")] = 0.5,
    multilingual_ids: Annotated[int, typer.Option("--multilingual-ids", min=1, help="Train-split MultiJail ids added to B, each in every language.")] = 8,
    benign_eval: Annotated[int, typer.Option("--benign-eval", min=1, help="Benign prompts for over-refusal (I-Alpaca's first N; never trained on).")] = 30,
    eval_share: Annotated[float, typer.Option("--eval-share", min=0.05, max=0.95, help="Share of MultiJail ids held out for evaluation.")] = 0.5,
    axes: Annotated[str, typer.Option("--axes", help="Profile axes: languages, jailbreak, code, ciphers, compose.")] = "languages,code,ciphers",
    languages: Annotated[str, typer.Option("--languages", "-l", help="Languages of the language (and jailbreak, compose) cells.")] = "zh,ar,bn,sw",
    variants: Annotated[str, typer.Option("--variants", help="CodeAttack variants of the code cells.")] = "python_list",
    ciphers: Annotated[str, typer.Option("--ciphers", help="Cipher cells.")] = "base64",
    compose: Annotated[ListOpt, typer.Option("--compose", help="form+language cells of the compose axis, e.g. python_list+bn.")] = None,
    template_file: Annotated[Optional[Path], typer.Option("--template-file", help="Jailbreak text with a {prompt} slot for the jailbreak axis.")] = None,
    helpful_tokens: Annotated[int, typer.Option("--helpful-tokens", min=8, help="New tokens of the base model's own helpful answers.")] = 96,
    max_tokens: MaxTokensOpt = 48,
    db: DbOpt = Path(DEFAULT_DB),
    run_name: Annotated[str, typer.Option("--run-name", help="Prefix of the stored runs' names.")] = "lab",
    dtype: DtypeOpt = "auto",
    train: TrainingOptions = TrainingOptions(),
) -> None:
    """Split MultiJail, tune adapter A (English safety data) and B (A's data + MultiJail's train split in all ten
    languages), profile base, A and B on held-out prompts, and show the transfer matrix with over-refusal."""
    from ..commands.finetune import training_progress
    from ..engine.progress import RichProgress
    from ..lab.generalization import LabConfig, run_generalization_async
    from ..lab.page import build_report, lab_markdown, write_report
    from ..models import ModelOptions
    from ._common import run_async

    config = LabConfig(
        safety=safety, benign=benign, multijail=data, helpful=helpful, base=model,
        out_dir=out or db.parent / "lab-generalization", db=db, run_prefix=run_name, seed=train.seed,
        eval_share=eval_share, prompts=prompts, safety_examples=safety_examples, helpful_share=helpful_share,
        multilingual_ids=multilingual_ids, benign_eval=benign_eval, helpful_tokens=helpful_tokens,
        axes=_items(axes) or (), languages=_items(languages) or (), variants=_items(variants) or (),
        ciphers=_items(ciphers) or (), compose=_items(compose), template_file=str(template_file) if template_file else None,
        max_tokens=max_tokens or 48, model_options=ModelOptions(dtype=dtype), finetune=train.finetune_config())

    async def go():
        with training_progress() as train_progress, RichProgress(stderr_console()) as progress:
            return await run_generalization_async(config, say=lambda m: console.print(m, markup=False, highlight=False),
                                                  progress=progress, train_progress=train_progress)

    result = run_async(go())
    report = build_report(result)
    files = write_report(report, config.out_dir)
    typer.echo(lab_markdown(report).split("\n## Setup")[0].rstrip())
    typer.echo(f"\nmodel calls this run: {result.calls}; adapters trained this run: "
               f"{sum(a.trained for a in result.adapters)}")
    typer.echo(f"HTML page: {files['html']}  (also {files['md'].name}, {files['json'].name}, {files['png'].name})")
    errors = [m for m in result.models if m.errors]
    if errors:
        error_line(f"{sum(m.errors for m in errors)} items failed (first: {errors[0].first_error}); "
                   "run the same command again to retry them")
        raise typer.Exit(1)


# The demo's training size (LabConfig's default finetune config; a test keeps the two equal).
generalization_command = with_training_options(lr=2e-3, batch_size=4, max_length=160, max_steps=40)(generalization)


def register(apps) -> None:
    lab = command_group(no_args_is_help=True, help="Experiments on the embedded model: train, defend and profile.")
    apps.root.add_typer(lab, name="lab")
    lab.command("generalization")(generalization_command)
