"""The `polysafe` command line. Feature groups live in `polysafe/commands/`, one module each."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Optional

import typer

from .commands._common import (DEFAULT_DB, DbOpt, EvalOptions, JudgeOpt, LimitOpt, ModelOpt, attack_context, console,
                               error_line, execute, finish, with_eval_options)
from .errors import PolysafeError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Measure and repair LLM safety beyond English prose: languages, code, fine-tuning.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate a model on a prompt set.")
defend_app = typer.Typer(no_args_is_help=True, help="Build defense data and defended models.")
attack_app = typer.Typer(no_args_is_help=True, help="Simulate attacks that need more than a prompt (fine-tuning).")
app.add_typer(eval_app, name="eval")
app.add_typer(defend_app, name="defend")
app.add_typer(attack_app, name="attack")


@dataclass(frozen=True)
class Apps:
    root: typer.Typer
    eval: typer.Typer
    defend: typer.Typer
    attack: typer.Typer


@eval_app.command("file")
@with_eval_options()
def eval_file(
    prompts: Annotated[Path, typer.Option("--prompts", "-p", help="CSV or JSONL with id, text [, language, category].")],
    model: ModelOpt = "smollm2",
    judge: JudgeOpt = "refusal",
    attack: Annotated[str, typer.Option("--attack", "-a", help="Attack chain, e.g. 'none' or 'translate:bn|codeattack:python_list'.")] = "none",
    translator: Annotated[Optional[str], typer.Option("--translator", help="For translate: steps: llm:<model spec> | hf:<seq2seq path>.")] = None,
    limit: LimitOpt = None,
    opts: EvalOptions = EvalOptions(),
) -> None:
    """Evaluate a model on your own prompt file."""
    from .attacks import parse_chain
    from .data.prompts import load_prompt_file
    from .engine.runner import EvalTask, Scenario

    opts = replace(opts, model=model, judge=judge, extra={"translator": translator} if translator else {})
    rows = load_prompt_file(prompts)[: limit or None]
    chain = parse_chain(attack)
    task = EvalTask(name=f"file:{prompts.name}", prompts=rows, scenarios=[Scenario(chain.spec, chain)],
                    config={"prompts": str(prompts), "limit": limit})
    finish(execute(task, opts, ctx=attack_context(attack, opts)))


@app.command("runs")
def runs(db: DbOpt = Path(DEFAULT_DB)) -> None:
    """List the runs stored in a result database."""
    from rich.table import Table

    from .engine.store import Store

    if not db.exists():
        raise PolysafeError(f"{db}: no result store here yet (run 'polysafe eval ...' first)")
    with Store(db) as store:
        table = Table("run", "task", "model", "judge", "items", "updated")
        import datetime as dt

        for record, count in store.list_runs():
            table.add_row(record.name, record.task, record.model, record.judge, str(count),
                          dt.datetime.fromtimestamp(record.updated).strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@app.command("report")
def report(
    run: Annotated[str, typer.Argument(help="Run name (see 'polysafe runs').")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="md | json | html | png (see 'polysafe plugins').")] = "md",
    db: DbOpt = Path(DEFAULT_DB),
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for written files (html, png); default beside the store.")] = None,
) -> None:
    """Show a stored run as a table, JSON, chart or HTML page."""
    from .engine.store import Store
    from .report import load_report_input, render

    if not db.exists():
        raise PolysafeError(f"{db}: no result store here yet")
    with Store(db) as store:
        typer.echo(render(fmt, load_report_input(store, run, out or db.parent / "reports")))


@app.command("plugins")
def plugins() -> None:
    """List every registered model backend, attack, judge, prompt set and report format."""
    from rich.table import Table

    table = Table("kind", "name", "example", "what")
    for kind, registry in _registries():
        for name in registry.names():
            info = registry.info(name)
            table.add_row(kind, name, info.example, info.summary)
    console.print(table)


def _registries():
    """Every stage's registry, built-in and third-party plugins alike."""
    import importlib

    from .registry import all_registries

    for stage in ("models", "attacks", "judges", "data", "report", "benchmarks", "attacks.cipher"):
        importlib.import_module(f"polysafe.{stage}")
    try:
        importlib.import_module("polysafe.translators")
    except ImportError:
        importlib.import_module("polysafe.data.translation")
    return [(registry.kind, registry) for registry in all_registries()]


def _register_feature_commands() -> None:
    from . import commands

    apps = Apps(app, eval_app, defend_app, attack_app)
    for module in pkgutil.iter_modules(commands.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{module.name}").register(apps)


_register_feature_commands()


def main() -> None:
    """Entry point: usage errors exit 2 (click), bad input exits 2 with one line, failed items exit 1."""
    try:
        app()  # standalone: click turns usage errors and typer.Exit into SystemExit
    except PolysafeError as err:
        error_line(str(err))
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        error_line("interrupted: everything answered so far is stored; run the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
