"""What every `polysafe eval ...` command shares: options, and running a benchmark through `polysafe.api` with
progress bars and its reports.

Every command module imports this one at start-up, so it imports only what declaring the options needs; the
stages (store, models, benchmarks, reports) are imported by the functions that use them.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, Sequence

import typer

from ..models.base import DEFAULT_MAX_RESPONSE_BYTES
from ..secrets import redact
from ..terminal import printable, printable_text
from ..types import MAX_NEW_TOKENS

if TYPE_CHECKING:
    from ..models import ModelOptions
    from ..types import GenerationConfig, RunSummary

DEFAULT_DB = "polysafe-results/polysafe.db"


def command_group(**settings) -> typer.Typer:
    """A typer app with plain click help: typer's rich help imports rich's markdown and traceback modules (about
    140 ms at every start, for `--help` alone)."""
    return typer.Typer(rich_markup_mode=None, **settings)


@functools.cache
def stderr_console() -> Any:
    """rich's Console on stderr, made on first use: `polysafe --help` need not import rich."""
    from rich.console import Console

    return Console(stderr=True)


class _LazyConsole:
    def __getattr__(self, name: str) -> Any:
        return getattr(stderr_console(), name)


console: Any = _LazyConsole()  # `console.print(...)`; rich objects that take a console get `stderr_console()`

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Target model spec: smollm2, hf:<path|id>, openai:<model>[@url], ...+lora:<dir>.")]
JudgeOpt = Annotated[str, typer.Option("--judge", "-j", help="Judge spec: refusal, llm:<model spec>, ...")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Use only the first N prompts (per language where the task has languages).")]
DbOpt = Annotated[Path, typer.Option("--db", help="SQLite result store.")]
RunNameOpt = Annotated[Optional[str], typer.Option("--run-name", help="Name of the run; default derives from the settings, so the same command resumes the same run.")]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", "-c", min=1, help="Requests in flight for remote models.")]
BaseUrlOpt = Annotated[Optional[list[str]], typer.Option("--base-url", metavar="URL", help="OpenAI-compatible endpoint for openai:<model> (vLLM, llama.cpp server, Ollama); repeat it for replicas of one model.")]
MaxResponseOpt = Annotated[int, typer.Option("--max-response-bytes", min=1024, help="Remote models: a larger answer is stored as an error (default 8 MiB).")]
ApiKeyEnvOpt = Annotated[str, typer.Option("--api-key-env", help="Environment variable that holds the API key (never stored).")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=0.0, help="0 = greedy.")]
TopPOpt = Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)]
MaxTokensOpt = Annotated[Optional[int], typer.Option("--max-tokens", min=1, max=MAX_NEW_TOKENS, help="New tokens per response (default: the benchmark's, else 256).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Sampling seed; with --samples K, sample i uses seed + i.")]
SamplesOpt = Annotated[int, typer.Option("--samples", min=1, help="Answers per prompt (needs --temperature > 0): reports give the per-sample rate, the any-of-K rate and the spread.")]
SystemOpt = Annotated[Optional[str], typer.Option("--system-prompt", help="System message sent before every prompt.")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Local models: conversations per forward pass (default 64).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Local models: auto | float32 | bfloat16 | float16 (the whole model cast).")]
NumericsOpt = Annotated[str, typer.Option("--numerics", help="Local models on the CPU: fp32 | bf16 | fp16 | int8 | auto (matrix products on the CPU's bf16, fp16 or int8 units; named in the model identity; auto: the fastest whose verdicts agreed with fp32's as measured on this kind of CPU, else fp32).")]
RetriesOpt = Annotated[int, typer.Option("--max-retries", min=0, help="Retries per request on 429/5xx/timeouts.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds per request for remote models.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Count the model, judge, translation and back-translation calls the run would make, what is stored, and bounds on tokens and cost; make no call (no API key needed).")]
MaxCallsOpt = Annotated[Optional[int], typer.Option("--max-calls", min=0, help="Stop cleanly once this many model calls were made (what is stored stays stored).")]
MaxCostOpt = Annotated[Optional[float], typer.Option("--max-cost", min=0.0, help="Stop cleanly before the cost (US$) could pass this cap; needs a known price.")]
PriceInOpt = Annotated[Optional[float], typer.Option("--price-in", min=0.0, help="$ per million prompt tokens (default: the shipped table for well-known models).")]
PriceOutOpt = Annotated[Optional[float], typer.Option("--price-out", min=0.0, help="$ per million completion tokens.")]
JudgePromptOpt = Annotated[Optional[Path], typer.Option("--judge-prompt-file", help="Your rubric for the llm: (3-way), harm: (1-5) or helpfulness: judge; slots {query} and {response}.")]
JudgeCheckOpt = Annotated[Optional[str], typer.Option("--judge-check", metavar="SPEC", help="A second judge re-judges a seeded random sample of the answers; reports give Cohen's kappa, the agreement rate and the disagreeing items.")]
JudgeCheckNOpt = Annotated[int, typer.Option("--judge-check-n", min=1, help="Answers the --judge-check judge re-judges.")]
LabelsOpt = Annotated[Optional[Path], typer.Option("--labels", help="Human labels (CSV: prompt, response, label) to score the run's judge against: kappa, agreement, disagreeing items.")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="Where local models generate: local (this process) | ray (the actors of a Ray cluster).")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="--executor ray: auto | HOST:PORT | ray://HOST:PORT (default: $RAY_ADDRESS, else a Ray instance started on this machine).")]
RayActorsOpt = Annotated[Optional[int], typer.Option("--ray-actors", min=1, help="--executor ray: model replicas (default: one per GPU of the cluster, else one per CPU).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Reuse --run-name although it holds another model, task or judge: its items are replaced.")]


@dataclass
class EvalOptions:
    model: str = "smollm2"
    judge: str = "refusal"
    db: Path = Path(DEFAULT_DB)
    run_name: str | None = None
    concurrency: int = 16
    base_url: list[str] | None = None  # several: replicas of one model
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int | None = None
    seed: int = 0
    samples: int = 1
    system_prompt: str | None = None
    batch_size: int | None = None
    dtype: str = "auto"
    numerics: str = "fp32"
    max_retries: int = 6
    timeout: float = 120.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    overwrite: bool = False
    judge_prompt_file: Path | None = None
    dry_run: bool = False
    max_calls: int | None = None
    max_cost: float | None = None
    price_in: float | None = None
    price_out: float | None = None
    judge_check: str | None = None
    judge_check_n: int = 50
    labels: Path | None = None
    executor: str = "local"
    ray_address: str | None = None
    ray_actors: int | None = None
    extra: dict = field(default_factory=dict)

    def model_options(self) -> ModelOptions:
        from ..models import ModelOptions

        return ModelOptions(base_urls=tuple(self.base_url or ()), api_key_env=self.api_key_env, concurrency=self.concurrency,
                            timeout=self.timeout, max_retries=self.max_retries, batch_size=self.batch_size, dtype=self.dtype,
                            numerics=self.numerics, max_response_bytes=self.max_response_bytes)

    def judge_options(self) -> ModelOptions:
        from ..models import ModelOptions

        # A judge model's URL comes from its own spec (llm:openai:gpt-4o@http://...), not from --base-url.
        return ModelOptions(api_key_env=self.api_key_env, concurrency=self.concurrency, timeout=self.timeout,
                            max_retries=self.max_retries, batch_size=self.batch_size, dtype=self.dtype,
                            max_response_bytes=self.max_response_bytes)

    def generation(self, defaults: dict | None = None) -> GenerationConfig:
        """The sampling settings asked for; what was not given comes from `defaults` (a benchmark's), then 256."""
        from ..types import GenerationConfig

        max_tokens = self.max_tokens or (defaults or {}).get("max_tokens") or 256
        return GenerationConfig(temperature=self.temperature, top_p=self.top_p, max_tokens=max_tokens,
                                seed=self.seed, system_prompt=self.system_prompt)


# Options every eval command takes, with the defaults of EvalOptions; a command may change a default.
_SHARED_OPTIONS = {
    "db": DbOpt, "run_name": RunNameOpt, "concurrency": ConcurrencyOpt, "base_url": BaseUrlOpt,
    "api_key_env": ApiKeyEnvOpt, "temperature": TemperatureOpt, "top_p": TopPOpt, "max_tokens": MaxTokensOpt,
    "seed": SeedOpt, "samples": SamplesOpt, "system_prompt": SystemOpt, "batch_size": BatchOpt, "dtype": DtypeOpt,
    "numerics": NumericsOpt,
    "max_retries": RetriesOpt, "timeout": TimeoutOpt, "max_response_bytes": MaxResponseOpt,
    "max_retries": RetriesOpt, "timeout": TimeoutOpt, "overwrite": OverwriteOpt,
    "judge_prompt_file": JudgePromptOpt, "dry_run": DryRunOpt, "max_calls": MaxCallsOpt, "max_cost": MaxCostOpt, "price_in": PriceInOpt, "price_out": PriceOutOpt,
    "judge_check": JudgeCheckOpt, "judge_check_n": JudgeCheckNOpt, "labels": LabelsOpt,
    "executor": ExecutorOpt, "ray_address": RayAddressOpt, "ray_actors": RayActorsOpt,
}


def with_shared_options(options: dict, make, param: str, **defaults):
    """Give a typer command the flags in `options` (name -> annotation); it receives them as `param=make(**values)`.

    The command's own parameters come first in --help; the shared ones follow. `defaults` change a flag's default
    for this command; a command may not define a shared flag itself."""
    unknown = set(defaults) - set(options)
    if unknown:
        raise TypeError(f"unknown shared options: {', '.join(sorted(unknown))}")
    base = make()

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)  # typer reads annotations from the signature
        own = [p for p in signature.parameters.values() if p.name != param]
        clash = {p.name for p in own} & set(options)
        if clash:
            raise TypeError(f"{func.__name__} defines shared options itself: {', '.join(sorted(clash))}")
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                    default=defaults.get(name, getattr(base, name)))
                  for name, annotation in options.items()]

        @functools.wraps(func)
        def command(**kwargs):
            chosen = {name: kwargs.pop(name) for name in options}
            return func(**kwargs, **{param: make(**chosen)})

        command.__signature__ = signature.replace(parameters=own + shared)
        command.__annotations__ = {**{k: v for k, v in func.__annotations__.items() if k != param}, **options}
        return command

    return decorate


def shared_option_names() -> frozenset[str]:
    return frozenset(_SHARED_OPTIONS)


def with_eval_options(*, without: tuple[str, ...] = (), **defaults):
    """The shared eval options, received as `opts: EvalOptions`; `without` leaves some out (their defaults stay)."""
    options = {name: annotation for name, annotation in _SHARED_OPTIONS.items() if name not in without}
    return with_shared_options(options, EvalOptions, "opts", **defaults)


@dataclass(frozen=True)
class ExecutorOptions:
    """--executor, --ray-address, --ray-actors for commands that run evaluations inside a pipeline (defend)."""

    executor: str = "local"
    ray_address: str | None = None
    ray_actors: int | None = None

    def load(self):
        """The executor, joined to its cluster now: a failure is one line before anything is trained or sent."""
        from ..engine.executor import ExecutorChoice
        from ..models import ModelOptions

        executor = ExecutorChoice(self.executor, self.ray_address, self.ray_actors).load()
        executor.model_options(ModelOptions())
        return executor


def with_executor_options():
    """The executor options, received as `run_on: ExecutorOptions`."""
    return with_shared_options({"executor": ExecutorOpt, "ray_address": RayAddressOpt, "ray_actors": RayActorsOpt},
                               ExecutorOptions, "run_on")


def run_async(coroutine):
    """`asyncio.run`, importing asyncio only when a command runs (not for `--help`)."""
    import asyncio

    return asyncio.run(coroutine)


def finish(summary: RunSummary) -> None:
    """Exit non-zero when items failed: they stay stored as errors and are retried by the next run."""
    if summary.errors:
        error_line(f"{summary.errors} of {summary.items} items failed (first: {summary.first_error}); "
                   "run the same command again to retry them")
        raise typer.Exit(1)


def error_line(message: str) -> None:
    """One line on stderr, never wrapped or styled from its content (it may quote model or user text)."""
    console.print(f"error: {printable(' '.join(redact(message).split()))}", style="red", markup=False, highlight=False,
                  soft_wrap=True)


def run_options(opts: EvalOptions, generation: GenerationConfig | None = None):
    from ..api import RunOptions

    return RunOptions(model=opts.model_options(), generation=generation or opts.generation(), db=opts.db,
                      run_name=opts.run_name, overwrite=opts.overwrite, max_calls=opts.max_calls,
                      max_cost=opts.max_cost, price_in=opts.price_in, price_out=opts.price_out,
                      judge_prompt_file=str(opts.judge_prompt_file) if opts.judge_prompt_file else None,
                      judge_check=opts.judge_check, judge_check_n=opts.judge_check_n,
                      labels=str(opts.labels) if opts.labels else None,
                      samples=opts.samples, dry_run=opts.dry_run,
                      executor=opts.executor, ray_address=opts.ray_address, ray_actors=opts.ray_actors)


def run_prepared_with_progress(prepared, options) -> RunSummary:
    """Run one prepared run with progress bars, then print its summary line (tokens, cost, cap)."""
    from ..api import budget_for, run_prepared
    from ..engine.cost import price_for
    from ..engine.progress import RichProgress

    budget = budget_for(prepared, options)

    async def go() -> RunSummary:
        with RichProgress(stderr_console()) as progress:
            return await run_prepared(prepared, options.db, progress=progress, overwrite=options.overwrite, budget=budget)

    summary = run_async(go())
    price = price_for(prepared.model.spec, options.price_in, options.price_out)
    cost = f", cost ≈ ${price.cost(summary.prompt_tokens, summary.completion_tokens):.4f}" if price else ""
    from rich.markup import escape

    console.print(f"run [bold]{escape(printable(summary.run))}[/]: {summary.items} items, {summary.generated} model "
                  f"calls, {summary.cached} reused from {escape(printable(options.db))}, {summary.judged} judged; tokens: "
                  f"prompt {summary.prompt_tokens}, completion {summary.completion_tokens}{cost}", highlight=False)
    from ..report.judge_checks import check_line

    for check in summary.extra.get("judge_checks") or ():
        console.print(printable(check_line(check)), markup=False, highlight=False)
    if summary.capped:
        console.print(f"[yellow]capped:[/] {escape(printable(summary.capped))}; {summary.pending} items have no answer "
                      "yet: run the same command again (with a higher cap) to finish", highlight=False)
    return summary


def print_estimate(prepared, options) -> None:
    """`--dry-run`: what the run would ask and cost; no call is made."""
    from ..api import estimate_prepared

    estimate = run_async(estimate_prepared(prepared, options.db, options))
    typer.echo(f"dry run: {printable(prepared.run_name)} (no call made)")
    for line in estimate.lines():
        typer.echo(f"- {printable(line)}")


def print_reports(run: str, db: Path, formats) -> None:
    from ..engine.store import Store
    from ..report.base import load_report_input, render

    with Store(db) as store:
        data = load_report_input(store, run, db.parent / "reports")
        for fmt in formats:
            text = render(fmt, data)
            text = printable_text(text, json_like=fmt.endswith("json"))
            typer.echo(f"\nHTML report: {text}" if fmt == "html" or fmt.endswith("-html") else f"\n{text}")


def run_benchmark(name: str, *, model: str, judge: str | None, params: list[str] | dict, opts: EvalOptions,
                  reports: Sequence[str] | None = None, exit_on_errors: bool = True) -> RunSummary:
    """`polysafe eval <benchmark>`: validate everything, run with progress bars, print the benchmark's reports.

    `params` are `key=value` strings (-P) or a dict of typed values (a command's own flags)."""
    from ..api import prepare
    from ..benchmarks import load_benchmark, parse_param_pairs
    from ..types import RunSummary

    bench = load_benchmark(name)
    values = parse_param_pairs(params) if isinstance(params, list) else params
    generation = opts.generation(defaults=bench.generation_defaults)
    options = run_options(opts, generation)
    prepared = prepare(bench, model=model, judge=judge, params=values, options=options)
    for note in prepared.task.config.get("notes") or ():
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    if opts.dry_run:
        print_estimate(prepared, options)
        return RunSummary(run=prepared.run_name, items=0, generated=0, cached=0, judged=0, errors=0)
    summary = run_prepared_with_progress(prepared, options)
    print_reports(summary.run, opts.db, reports or bench.reports)
    if exit_on_errors:
        finish(summary)
    return summary
