"""The library API: `polysafe.evaluate(...)` runs a benchmark (or a hand-built EvalTask) and returns its summary.

The CLI, the defenses and the README's example all go through here, so a run started from Python and one
started from the shell are the same run (same name, same stored answers).

    import polysafe
    summary = polysafe.evaluate("multijail", model="smollm2", params={"languages": "en,bn", "limit": 5})
    rows = polysafe.results(summary.run)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .attacks.base import AttackContext
from .benchmarks.base import Benchmark, BenchmarkParams, load_benchmark
from .keys import content_key
from .engine.progress import Progress
from .engine.runner import EvalTask, run_eval
from .engine.store import ResultRow, Store
from .judges.base import Judge, load_judge as _load_judge
from .models.base import ModelBackend, ModelOptions, load_model as _load_model
from .types import GenerationConfig, RunSummary

DEFAULT_DB = Path("polysafe-results/polysafe.db")


@dataclass(frozen=True)
class RunOptions:
    """How to run, apart from what: the backend's options, the sampling settings, where results go.

    `generation=None` takes the benchmark's defaults (e.g. CodeAttack's longer answers). A judge model gets the
    same transport options without the target's base URL: its endpoint comes from its own spec.
    """

    model: ModelOptions = field(default_factory=ModelOptions)
    generation: GenerationConfig | None = None
    db: Path = DEFAULT_DB
    run_name: str | None = None
    overwrite: bool = False  # reuse `run_name` although it holds another model, task or judge (items replaced)

    def judge_options(self) -> ModelOptions:
        return replace(self.model, base_url=None, base_urls=())


class TaskBenchmark(Benchmark):
    """Wraps a hand-built EvalTask so that it runs like any benchmark."""

    def __init__(self, task: EvalTask, context: AttackContext | None = None):
        self._task, self._context = task, context
        self.name = task.name

    def task(self, params: BenchmarkParams) -> EvalTask:
        return self._task

    def attack_context(self, params: BenchmarkParams, options: ModelOptions) -> AttackContext:
        return self._context or AttackContext()


def as_benchmark(benchmark: str | Benchmark | EvalTask) -> Benchmark:
    if isinstance(benchmark, Benchmark):
        return benchmark
    if isinstance(benchmark, EvalTask):
        return TaskBenchmark(benchmark)
    return load_benchmark(benchmark)


def load_model(spec: str = "smollm2", options: ModelOptions | None = None) -> ModelBackend:
    return _load_model(spec, options)


def load_judge(spec: str = "refusal", options: ModelOptions | None = None, **extra: Any) -> Judge:
    return _load_judge(spec, options, **extra)


def default_run_name(task: EvalTask, model: ModelBackend, judge: Judge, gen: GenerationConfig) -> str:
    """`<task>-<model>-<digest>`, derived from everything that changes the answers, so the same command resumes
    the same run. The digest covers the model's and the judge's identity (the endpoint a model is served from,
    adapter contents), the generation settings and the task, whose paths are resolved: the same model name on
    another server starts another run.
    """
    digest = content_key(task.name, task.config, [(s.name, s.chain.spec) for s in task.scenarios],
                         [(p.id, p.language) for p in task.prompts], model.identity, judge.identity, gen)[:8]
    short_model = model.spec.split("@")[0].replace("/", "_").replace(":", "-")
    return f"{task.name.split(':')[0]}-{short_model}-{digest}"


@dataclass(frozen=True)
class Prepared:
    """A run resolved and validated, before any call is made."""

    benchmark: Benchmark
    params: BenchmarkParams
    task: EvalTask
    model: ModelBackend
    judge: Judge
    context: AttackContext
    generation: GenerationConfig
    run_name: str


def prepare(benchmark: str | Benchmark | EvalTask, *, model: str = "smollm2", judge: str | None = None,
            params: Mapping[str, Any] | BenchmarkParams | None = None, options: RunOptions | None = None) -> Prepared:
    """Everything that can fail on bad input fails here, before the store is touched."""
    options = options or RunOptions()
    bench = as_benchmark(benchmark)
    checked = bench.params(params)
    task = bench.task(checked)
    gen = options.generation or GenerationConfig(**bench.generation_defaults)
    backend = _load_model(model, options.model)
    judge_options = options.judge_options()
    loaded_judge = bench.wrap_judge(_load_judge(bench.judge_spec(judge), judge_options), checked, judge_options)
    context = bench.attack_context(checked, judge_options)
    name = options.run_name or default_run_name(task, backend, loaded_judge, gen)
    return Prepared(bench, checked, task, backend, loaded_judge, context, gen, name)


async def run_prepared(prepared: Prepared, db: Path | str, *, progress: Progress | None = None,
                       overwrite: bool = False) -> RunSummary:
    with Store(db) as store:
        try:
            return await run_eval(prepared.task, prepared.model, prepared.judge, store, gen=prepared.generation,
                                  run_name=prepared.run_name, ctx=prepared.context, progress=progress,
                                  overwrite=overwrite)
        finally:
            await prepared.model.aclose()
            await prepared.judge.aclose()


def evaluate(benchmark: str | Benchmark | EvalTask, *, model: str = "smollm2", judge: str | None = None,
             params: Mapping[str, Any] | BenchmarkParams | None = None, options: RunOptions | None = None,
             progress: Progress | None = None) -> RunSummary:
    """Run a benchmark on a model, judge every answer, store everything; return the run's summary.

    A rerun makes no call for anything already stored; a killed run resumes where it stopped.
    """
    options = options or RunOptions()
    prepared = prepare(benchmark, model=model, judge=judge, params=params, options=options)
    return asyncio.run(run_prepared(prepared, options.db, progress=progress, overwrite=options.overwrite))


def results(run: str, db: Path | str = DEFAULT_DB) -> list[ResultRow]:
    """Every item of a stored run with its response and verdict, in order."""
    from .errors import InputError

    if not Path(db).exists():
        raise InputError("no result store here yet", file=str(db))
    with Store(db) as store:
        if store.get_run(run) is None:
            raise InputError(f"no run named '{run}'", file=str(db), field="run")
        return store.results(run)
