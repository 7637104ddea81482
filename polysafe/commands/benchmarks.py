"""`polysafe eval <benchmark> [-P key=value ...]` for every registered benchmark, and `polysafe eval --config FILE`.

Benchmarks with a command of their own (multijail, codeattack, file) keep it; every other one, third-party
ones included, gets a generic command here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from ._common import (DryRunOpt, EvalOptions, ModelOpt, command_group, console, finish, print_estimate, print_reports,
                      run_benchmark, run_prepared_with_progress, with_eval_options)

ParamOpt = Annotated[Optional[list[str]], typer.Option("--param", "-P", help="Benchmark parameter key=value (repeatable); see 'polysafe plugins'.")]
GenericJudgeOpt = Annotated[Optional[str], typer.Option("--judge", "-j", help="Judge spec (default: the benchmark's own).")]


class BenchmarkGroup(TyperGroup):
    """`polysafe eval`: the generic commands are added when the group is first listed or asked for a command it
    lacks, so that `polysafe --help` and the commands of its own (multijail, ...) import no other benchmark."""

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

        generic = command_group()
        generic.callback()(lambda: None)  # a group, even with a single command
        for name in BENCHMARKS.names():
            if name not in self.commands:
                _generic_command(generic, name, BENCHMARKS.info(name).summary)
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


def _generic_command(app: typer.Typer, name: str, summary: str) -> None:
    @app.command(name, help=f"{summary} Parameters: -P key=value.")
    @with_eval_options()
    def command(model: ModelOpt = "smollm2", judge: GenericJudgeOpt = None, param: ParamOpt = None,
                opts: EvalOptions = EvalOptions()) -> None:
        run_benchmark(name, model=model, judge=judge, params=param or [], opts=opts)


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

