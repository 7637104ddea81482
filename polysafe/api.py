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
from .engine.cost import PRICES_AS_OF, Budget, Price, price_for
from .engine.executor import LOCAL, Executor, ExecutorChoice
from .engine.runner import EvalTask, RunPlan, plan_eval, run_eval
from .engine.store import ResultRow, Store
from .errors import InputError
from .judges.base import Judge, load_judge as _load_judge
from .models.base import ModelBackend, ModelOptions, load_model as _load_model
from .models.local import LocalCausalLM
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
    max_calls: int | None = None  # stop starting model calls past this many (this invocation)
    max_cost: float | None = None  # US dollars; needs a known price (the shipped table or price_in/price_out)
    price_in: float | None = None  # $ per million prompt tokens (overrides the shipped table)
    price_out: float | None = None  # $ per million completion tokens
    judge_prompt_file: str | None = None  # a user's rubric for the model judges (slots {query}, {response})
    executor: str = "local"  # where local models generate: local (this process) | ray (actors of a Ray cluster)
    ray_address: str | None = None  # auto | HOST:PORT | ray://HOST:PORT; None: $RAY_ADDRESS, else a local instance
    ray_actors: int | None = None  # model replicas; None: as many as the cluster fits (one per GPU, or per CPU)

    def judge_options(self) -> ModelOptions:
        return replace(self.model, base_url=None, base_urls=())

    def executor_choice(self) -> ExecutorChoice:
        return ExecutorChoice(self.executor, self.ray_address, self.ray_actors)


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
    executor: Executor = LOCAL


def prepare(benchmark: str | Benchmark | EvalTask, *, model: str = "smollm2", judge: str | None = None,
            params: Mapping[str, Any] | BenchmarkParams | None = None, options: RunOptions | None = None) -> Prepared:
    """Everything that can fail on bad input fails here, before the store is touched."""
    options = options or RunOptions()
    bench = as_benchmark(benchmark)
    checked = bench.params(params)
    task = bench.task(checked)
    gen = options.generation or GenerationConfig(**bench.generation_defaults)
    executor = options.executor_choice().load()
    backend = _load_model(model, options.model)
    if executor is not LOCAL and isinstance(backend, LocalCausalLM):  # keyed with the dtype the actors decode in
        backend = _load_model(model, executor.model_options(options.model))
    judge_options = options.judge_options()
    rubric = {"prompt_file": options.judge_prompt_file} if options.judge_prompt_file else {}
    loaded_judge = bench.wrap_judge(_load_judge(bench.judge_spec(judge), judge_options, **rubric), checked, judge_options)
    context = bench.attack_context(checked, judge_options)
    name = options.run_name or default_run_name(task, backend, loaded_judge, gen)
    # After the name: what the benchmark declares for reports is not part of what makes the run (old names resume).
    task = replace(task, config={**task.config, "benchmark": bench.declare(task, gen, loaded_judge)})
    return Prepared(bench, checked, task, backend, loaded_judge, context, gen, name, executor)


def budget_for(prepared: Prepared, options: RunOptions) -> Budget | None:
    """The caps of `options` for this run; InputError when a cost cap has no price to count with."""
    if options.max_calls is None and options.max_cost is None:
        return None
    price = price_for(prepared.model.spec, options.price_in, options.price_out)
    if options.max_cost is not None and price is None:
        raise InputError(f"no price known for '{prepared.model.spec}': give --price-in and --price-out "
                         "($ per million tokens) to cap the cost", field="max-cost")
    return Budget(max_calls=options.max_calls, max_cost=options.max_cost, price=price,
                  max_tokens=prepared.generation.max_tokens)


async def run_prepared(prepared: Prepared, db: Path | str, *, progress: Progress | None = None,
                       overwrite: bool = False, budget: Budget | None = None) -> RunSummary:
    with Store(db) as store:
        try:
            return await run_eval(prepared.task, prepared.model, prepared.judge, store, gen=prepared.generation,
                                  run_name=prepared.run_name, ctx=prepared.context, progress=progress,
                                  overwrite=overwrite, budget=budget, executor=prepared.executor)
        finally:
            await prepared.model.aclose()
            await prepared.judge.aclose()


def evaluate(benchmark: str | Benchmark | EvalTask, *, model: str = "smollm2", judge: str | None = None,
             params: Mapping[str, Any] | BenchmarkParams | None = None, options: RunOptions | None = None,
             progress: Progress | None = None, executor: str | None = None,
             ray_address: str | None = None) -> RunSummary:
    """Run a benchmark on a model, judge every answer, store everything; return the run's summary.

    A rerun makes no call for anything already stored; a killed run resumes where it stopped. `executor="ray"`
    (and `ray_address`) override `options`: local models then generate on the actors of a Ray cluster.
    """
    options = options or RunOptions()
    if executor is not None or ray_address is not None:
        options = replace(options, executor=executor or options.executor, ray_address=ray_address or options.ray_address)
    prepared = prepare(benchmark, model=model, judge=judge, params=params, options=options)
    return asyncio.run(run_prepared(prepared, options.db, progress=progress, overwrite=options.overwrite,
                                    budget=budget_for(prepared, options)))


@dataclass(frozen=True)
class CostEstimate:
    """A dry run: the calls a run would make, what is stored, and the cost when prices are known."""

    plan: RunPlan
    prompt_tokens: int  # estimated, for the calls still to make (about 4 characters a token)
    completion_tokens: int  # upper bound: max_tokens for every call still to make
    price: Price | None

    @property
    def cost(self) -> float | None:
        return self.price.cost(self.prompt_tokens, self.completion_tokens) if self.price else None

    def lines(self) -> list[str]:
        p = self.plan
        out = [f"items: {p.items}",
               f"model calls: {p.model_calls} to make, {p.stored_responses} already stored",
               f"judge calls: up to {p.judge_calls} to make, {p.stored_verdicts} already stored"]
        if p.other_calls:
            out.append(f"translation calls: {p.other_calls} to make")
        out.append(f"tokens (estimate): prompt ~{self.prompt_tokens}, completion up to {self.completion_tokens}")
        out.append(f"cost (estimate, upper bound): ${self.cost:.4f} at ${self.price.per_million_in:g} / "
                   f"${self.price.per_million_out:g} per million tokens (shipped prices as of {PRICES_AS_OF} unless "
                   "--price-in/--price-out)" if self.price else
                   "cost: unknown (no price for this model: give --price-in and --price-out)")
        return out


async def estimate_prepared(prepared: Prepared, db: Path | str, options: RunOptions) -> CostEstimate:
    """Count what the run would ask, reading the store only; no call is made and nothing is written."""
    store = Store(db, readonly=True) if Path(db).exists() else None
    try:
        plan = await plan_eval(prepared.task, prepared.model, prepared.judge, store, gen=prepared.generation,
                               ctx=prepared.context)
    finally:
        if store is not None:
            store.close()
    return CostEstimate(plan, plan.prompt_chars // 4, plan.model_calls * prepared.generation.max_tokens,
                        price_for(prepared.model.spec, options.price_in, options.price_out))


def estimate(benchmark: str | Benchmark | EvalTask, *, model: str = "smollm2", judge: str | None = None,
             params: Mapping[str, Any] | BenchmarkParams | None = None, options: RunOptions | None = None) -> CostEstimate:
    """`evaluate`'s dry run: how many model and judge calls, how many stored, and the estimated cost."""
    options = options or RunOptions()
    prepared = prepare(benchmark, model=model, judge=judge, params=params, options=options)
    return asyncio.run(estimate_prepared(prepared, options.db, options))


def results(run: str, db: Path | str = DEFAULT_DB) -> list[ResultRow]:
    """Every item of a stored run with its response and verdict, in order."""
    if not Path(db).exists():
        raise InputError("no result store here yet", file=str(db))
    with Store(db) as store:
        if store.get_run(run) is None:
            raise InputError(f"no run named '{run}'", file=str(db), field="run")
        return store.results(run)
