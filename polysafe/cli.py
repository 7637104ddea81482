"""The `polysafe` command line. Feature groups live in `polysafe/commands/`, one module each."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from .commands.benchmarks import BenchmarkGroup
from .commands._common import DEFAULT_DB, DbOpt, command_group, console, error_line
from .errors import PolysafeError
from .models.tuning import tune_this_process
from .terminal import json_printable, printable, printable_text

app = command_group(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Measure and repair LLM safety beyond English prose: languages, code, fine-tuning.")
eval_app = command_group(cls=BenchmarkGroup, no_args_is_help=True, help="Evaluate a model on a prompt set.")
defend_app = command_group(no_args_is_help=True, help="Build defense data and defended models.")
attack_app = command_group(no_args_is_help=True, help="Simulate attacks that need more than a prompt (fine-tuning).")
app.add_typer(eval_app, name="eval")
app.add_typer(defend_app, name="defend")
app.add_typer(attack_app, name="attack")


@dataclass(frozen=True)
class Apps:
    root: typer.Typer
    eval: typer.Typer
    defend: typer.Typer
    attack: typer.Typer


@app.command("runs")
def runs(
    db: DbOpt = Path(DEFAULT_DB),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object per run) instead of a table.")] = False,
) -> None:
    """List the runs stored in a result database, newest first (on stdout; read-only media work)."""
    import json

    from .engine.store import Store

    with Store(db, readonly=True) as store:
        listed = store.list_runs()
    if as_json:
        typer.echo(json_printable(json.dumps([{"name": r.name, "task": r.task, "model": r.model, "judge": r.judge,
                                               "items": count, "created": r.created, "updated": r.updated,
                                               "config": r.config} for r, count in listed], indent=2, ensure_ascii=False)))
        return
    if not listed:
        console.print(f"no runs in {printable(db)}", markup=False, highlight=False)
        return
    _runs_table(listed)


def _runs_table(listed) -> None:
    import datetime as dt

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = _stdout_console()
    table = Table("run", "task", "model", "judge", "items", "updated")
    for column in table.columns:
        column.no_wrap = True
    for record, count in listed:
        updated = dt.datetime.fromtimestamp(record.updated).strftime("%Y-%m-%d %H:%M")
        table.add_row(*(Text(printable(value)) for value in (record.name, record.task, record.model, record.judge,
                                                             str(count), updated)))
    out.print(table)


# The built-in report formats, for `report --help` without importing the report stage (a test keeps it complete).
REPORT_FORMATS = ("md", "json", "scores", "html", "png", "tiers", "tiers-json", "paired", "paired-json", "paired-html",
                  "paired-png")


@app.command("report")
def report(
    run: Annotated[str, typer.Argument(help="Run name (see 'polysafe runs').")],
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"{' | '.join(REPORT_FORMATS)} (see 'polysafe plugins').")] = "md",
    db: DbOpt = Path(DEFAULT_DB),
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for written files (html, png); default beside the store.")] = None,
) -> None:
    """Show a stored run as a table, JSON, chart or HTML page."""
    from .engine.store import Store
    from .report import load_report_input, render

    folder = out or db.parent / "reports"
    with Store(db, readonly=True) as store:
        data = load_report_input(store, run, folder)
    try:
        typer.echo(printable_text(render(fmt, data), json_like=fmt.endswith("json")))
    except OSError as err:  # e.g. a store on read-only media, with the report beside it
        raise PolysafeError(f"{err.filename or folder}: cannot write the report ({err.strerror or err}); "
                            "choose a folder with --out") from None


@app.command("plugins")
def plugins() -> None:
    """List every registered model backend, attack, judge, prompt set and report format (on stdout)."""
    from rich.table import Table
    from rich.text import Text

    table = Table("kind", "name", "example", "what")
    for column in table.columns[:3]:
        column.no_wrap = True
    for kind, registry in _registries():
        for name in registry.names():
            info = registry.info(name)
            table.add_row(*(Text(value) for value in (kind, name, info.example, info.summary)))
    _stdout_console().print(table)


def _stdout_console():
    """rich on stdout: a terminal's width on a terminal; piped or redirected, as wide as the longest cell, so
    `polysafe plugins > file` and `| grep` keep every cell whole."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=100_000)


def _registries():
    """Every stage's registry, built-in and third-party plugins alike."""
    import importlib

    from .registry import all_registries

    for stage in ("models", "attacks", "judges", "data", "translators", "report", "benchmarks", "attacks.cipher"):
        importlib.import_module(f"polysafe.{stage}")
    return [(registry.kind, registry) for registry in all_registries()]


def _register_feature_commands() -> None:
    from . import commands

    apps = Apps(app, eval_app, defend_app, attack_app)
    for module in pkgutil.iter_modules(commands.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{module.name}").register(apps)


_register_feature_commands()


INTERRUPTED = "interrupted: everything answered so far is stored; run the same command to resume"


def main() -> None:
    """Entry point: bad input (a usage error too) exits 2 with one line, failed items and the environment (disk
    full, read-only media) exit 1 with one line."""
    tune_this_process()  # local models may set the allocator and choose torch's thread count (a library call may not)
    try:
        code = app(prog_name="polysafe", standalone_mode=False)  # click's own errors come here, to be said in one line
        if code == 130:  # typer turns Ctrl-C inside a command into exit code 130
            error_line(INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.TyperException as err:  # click's usage errors (exit 2): an unknown option, a missing argument...
        ctx = getattr(err, "ctx", None)
        if ctx is not None and err.format_message() == ctx.get_help():  # a group named without a command
            print(err.format_message(), file=sys.stderr)
            sys.exit(err.exit_code)
        where, hint = (f"{ctx.command_path}: ", f" (see '{ctx.command_path} --help')") if ctx else ("", "")
        error_line(f"{where}{err.format_message()}{hint}")
        sys.exit(err.exit_code)
    except typer.Abort:
        error_line(INTERRUPTED)
        sys.exit(130)
    except PolysafeError as err:
        error_line(str(err))
        sys.exit(err.exit_code)
    except BrokenPipeError:  # `polysafe runs | head`: the reader left early; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as err:  # a path given on the command line, or the disk (full, read-only)
        where = f"{err.filename}: " if err.filename else ""
        error_line(f"{where}{err.strerror or err}")
        sys.exit(2 if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError)) else 1)
    except sqlite3.Error as err:  # the store's own errors name the file; this catches any that slip past
        error_line(f"result store error: {err}")
        sys.exit(1)
    except KeyboardInterrupt:
        error_line(INTERRUPTED)
        sys.exit(130)


if __name__ == "__main__":
    main()
