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
from .engine.plan import CallGroup, RunPlan, plan_eval
from .engine.runner import EvalTask, check_samples, run_eval
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
    samples: int = 1  # answers per prompt (needs temperature > 0); sample i uses seed `generation.seed + i`
    dry_run: bool = False  # only count what would be asked: no API key is needed
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


def default_run_name(task: EvalTask, model: ModelBackend, judge: Judge, gen: GenerationConfig, samples: int = 1) -> str:
    """`<task>-<model>-<digest>`, derived from everything that changes the answers, so the same command resumes
    the same run. The digest covers the model's and the judge's identity (the endpoint a model is served from,
    adapter contents), the generation settings and the task, whose paths are resolved: the same model name on
    another server starts another run.
    """
    parts = [task.name, task.config, [(s.name, s.chain.spec) for s in task.scenarios],
             [(p.id, p.language) for p in task.prompts], model.identity, judge.identity, gen]
    digest = content_key(*parts, *((("samples", samples),) if samples > 1 else ()))[:8]  # one sample: names unchanged
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
    samples: int = 1
    executor: Executor = LOCAL


def prepare(benchmark: str | Benchmark | EvalTask, *, model: str = "smollm2", judge: str | None = None,
            params: Mapping[str, Any] | BenchmarkParams | None = None, options: RunOptions | None = None) -> Prepared:
    """Everything that can fail on bad input fails here, before the store is touched."""
    options = options or RunOptions()
    bench = as_benchmark(benchmark)
    checked = bench.params(params)
    task = bench.task(checked)
    gen = options.generation or GenerationConfig(**bench.generation_defaults)
    check_samples(gen, options.samples)
    model_options = replace(options.model, require_key=False) if options.dry_run else options.model
    executor = options.executor_choice().load()
    backend = _load_model(model, model_options)
    if executor is not LOCAL and isinstance(backend, LocalCausalLM):  # keyed with the dtype the actors decode in
        backend = _load_model(model, executor.model_options(model_options))
    judge_options = options.judge_options()
    if options.dry_run:
        judge_options = replace(judge_options, require_key=False)
    rubric = {"prompt_file": options.judge_prompt_file} if options.judge_prompt_file else {}
    loaded_judge = bench.wrap_judge(_load_judge(bench.judge_spec(judge), judge_options, **rubric), checked, judge_options)
    context = bench.attack_context(checked, judge_options)
    name = options.run_name or default_run_name(task, backend, loaded_judge, gen, options.samples)
    # After the name: what the benchmark declares for reports is not part of what makes the run (old names resume).
    task = replace(task, config={**task.config, "benchmark": bench.declare(task, gen, loaded_judge)})
    return Prepared(bench, checked, task, backend, loaded_judge, context, gen, name, options.samples, executor)


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
                                  overwrite=overwrite, budget=budget, samples=prepared.samples,
                                  executor=prepared.executor)
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
    """A dry run: the calls a run would make by kind, what is stored, and upper bounds on tokens and cost."""

    plan: RunPlan
    prices: dict  # call kind -> Price | None (None: unknown; a local or offline caller costs nothing)

    @property
    def prompt_tokens(self) -> int:  # of the target model's calls
        return self.plan.group("model").prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.plan.group("model").completion_tokens

    @property
    def price(self) -> Price | None:
        return self.prices.get("model")

    def group_cost(self, group: CallGroup) -> float | None:
        if not group.calls:
            return 0.0
        price = self.prices.get(group.kind)
        return price.cost(group.prompt_tokens, group.completion_tokens) if price else None

    @property
    def cost(self) -> float | None:
        """The whole run's cost bound; None when a kind of paid call has no known price."""
        costs = [self.group_cost(g) for g in self.plan.groups]
        return None if any(c is None for c in costs) else sum(costs)

    def lines(self) -> list[str]:
        out = [f"items: {self.plan.items}"]
        unknown = []
        for group in self.plan.groups:
            if group.kind != "model" and not group.calls and not group.stored:
                continue
            stored = f", {group.stored} already stored" if group.kind in ("model", "judge") else ""
            who = (f" ({group.spec})" if group.spec else " (offline judge)" if group.kind == "judge" else "") \
                if group.kind != "model" else ""
            line = f"{group.kind} calls{who}: {group.calls} to make{stored}"
            if group.calls:
                line += f"; tokens up to {group.prompt_tokens} prompt, {group.completion_tokens} completion"
                cost = self.group_cost(group)
                price = self.prices.get(group.kind)
                if cost is not None and price is not None and (price.per_million_in or price.per_million_out):
                    line += (f"; up to ${cost:.4f} at ${price.per_million_in:g} / ${price.per_million_out:g} "
                             "per million tokens")
                elif cost is None:
                    unknown.append(group.kind)
            out.append(line)
        total = self.cost
        if total is not None:
            out.append(f"cost (upper bound: answers at max_tokens, a token per prompt byte): ${total:.4f} "
                       f"(shipped prices as of {PRICES_AS_OF} unless --price-in/--price-out)")
        else:
            out.append(f"cost: unknown for {', '.join(unknown)} calls (no price for that model: the shipped table "
                       "covers a few, --price-in/--price-out price the target model)")
        return out


async def estimate_prepared(prepared: Prepared, db: Path | str, options: RunOptions) -> CostEstimate:
    """Count what the run would ask, reading the store only; no call is made and nothing is written."""
    store = Store(db, readonly=True) if Path(db).exists() else None
    try:
        plan = await plan_eval(prepared.task, prepared.model, prepared.judge, store, gen=prepared.generation,
                               ctx=prepared.context, samples=prepared.samples)
    finally:
        if store is not None:
            store.close()
    prices = {g.kind: _price_of(g.spec, local=g.kind != "model" or _is_local(prepared.model)) for g in plan.groups}
    prices["model"] = price_for(prepared.model.spec, options.price_in, options.price_out) or (
        Price(0.0, 0.0) if _is_local(prepared.model) else None)
    return CostEstimate(plan, prices)


def _is_local(model: ModelBackend) -> bool:
    return not model.spec.startswith("openai:")


def _price_of(spec: str | None, *, local: bool) -> Price | None:
    """A helper call's price: the shipped table's for a known endpoint model; 0 for a local or offline caller."""
    if spec is None or not spec.startswith("openai:"):
        return Price(0.0, 0.0)
    return price_for(spec)


def estimate(benchmark: str | Benchmark | EvalTask, *, model: str = "smollm2", judge: str | None = None,
             params: Mapping[str, Any] | BenchmarkParams | None = None, options: RunOptions | None = None) -> CostEstimate:
    """`evaluate`'s dry run: how many model and judge calls, how many stored, and the estimated cost."""
    options = replace(options or RunOptions(), dry_run=True)
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
