"""`polysafe eval <benchmark> [--param-flags] [-P key=value ...]` for every registered benchmark, third-party ones
included, generated from its parameter model (commands/_params_cli.py), and `polysafe eval --config FILE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from ._common import DryRunOpt, command_group, console, finish, print_estimate, print_reports, run_prepared_with_progress


class BenchmarkGroup(TyperGroup):
    """`polysafe eval`: the benchmark commands are generated when the group is first listed or asked for a command,
    so that `polysafe --help` imports no benchmark (nor pydantic)."""

    _generic_added = False

    def list_commands(self, ctx):
        self._add_generic_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None and not self._generic_added:
            self._add_generic_commands()
            command = super().get_command(ctx, name)
        return command

    def _add_generic_commands(self) -> None:
        if self._generic_added:
            return
        self._generic_added = True
        from ..benchmarks import BENCHMARKS
        from ._params_cli import benchmark_command

        generic = command_group()
        generic.callback()(lambda: None)  # a group, even with a single command
        for name in BENCHMARKS.names():
            if name not in self.commands:
                bench = BENCHMARKS.create(name)
                generic.command(name, help=BENCHMARKS.info(name).summary)(
                    benchmark_command(name, bench.Params, bench.default_judge))
        for name, command in typer.main.get_command(generic).commands.items():
            self.add_command(command, name)


def register(apps) -> None:
    @apps.eval.callback(invoke_without_command=True)
    def eval_group(
        ctx: typer.Context,
        config: Annotated[Optional[Path], typer.Option("--config", help="Run every model x benchmark of a YAML or TOML file.")] = None,
        db: Annotated[Optional[Path], typer.Option("--db", help="SQLite result store (default: the file's db, else polysafe-results/polysafe.db).")] = None,
        dry_run: DryRunOpt = False,
    ) -> None:
        """Evaluate a model on a benchmark: multijail, codeattack, file, ... or a whole config file."""
        if ctx.invoked_subcommand is not None:
            return
        if config is None:
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        run_config(config, db, dry_run=dry_run)


def run_config(path: Path, db: Path | None, *, dry_run: bool = False) -> None:
    from ..config import prepare_run_set

    options, prepared = prepare_run_set(path, db=db, dry_run=dry_run)
    console.print(f"{path}: {len(prepared)} runs (models x benchmarks)")
    if dry_run:
        for run in prepared:
            print_estimate(run, options)
        return
    summaries = []
    for run in prepared:
        summary = run_prepared_with_progress(run, options)
        print_reports(summary.run, options.db, run.benchmark.reports[:1])
        summaries.append(summary)
    failed = [s for s in summaries if s.errors]
    if failed:
        finish(failed[0])

