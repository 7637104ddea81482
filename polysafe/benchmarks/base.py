"""The benchmark protocol and its registry.

A benchmark declares:
- `Params`: its typed parameters (a pydantic model; unknown keys and bad values are one-line input errors);
- `task(params)`: the EvalTask it runs (prompts x scenarios);
- `default_judge`: the judge spec used when none is given;
- `judge_families`: a declared table from a requested judge family to the judge this benchmark uses for it, e.g.
  CodeAttack's {"llm": "harm"}: `--judge llm:X` asks for a model judge with model X, and CodeAttack judges with its
  paper's 1-5 harm rubric (`harm:X`). `judge_spec(spec)` applies it; a family not in the table is used as given;
- `reports`: the report formats printed after a run;
- `generation_defaults`: settings the paper used (e.g. longer answers for code);
- `reference`: the paper's own figures, when it has them;
- `declare(task, generation, judge)`: what reports need to know of this benchmark (the paper's figures and whether
  the run is comparable with them, how its prompts were translated), stored with the run: reports never import
  benchmarks;
- `attack_context` / `wrap_judge`: what its chains and judge need (a translator, back-translation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..attacks.base import AttackContext
from ..engine.runner import EvalTask
from ..errors import InputError
from ..judges.base import Judge
from ..models.base import ModelOptions
from ..registry import Registry
from ..types import GenerationConfig


class BenchmarkParams(BaseModel):
    """Parameters every benchmark takes. Subclasses add their own; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int | None = Field(default=None, ge=1, description="Use only the first N prompts (per language where the task has languages).",
                              json_schema_extra={"cli": {"flags": ["--limit", "-n"]}})


@dataclass(frozen=True)
class Reference:
    """A paper's own figures for this benchmark, shown only beside a comparable setup (report/setup.py)."""

    source: str  # the paper and table
    figures: Mapping[Any, Any]


class Benchmark:
    name: ClassVar[str]
    reference: ClassVar[Reference | None] = None
    Params: ClassVar[type[BenchmarkParams]] = BenchmarkParams
    default_judge: ClassVar[str] = "refusal"
    judge_families: ClassVar[Mapping[str, str]] = {}  # requested judge family -> the judge this benchmark uses
    reports: ClassVar[tuple[str, ...]] = ("md",)
    generation_defaults: ClassVar[dict[str, Any]] = {}

    def params(self, values: Mapping[str, Any] | BenchmarkParams | None = None, *, source: str = "-P",
               line: int | None = None, prefix: str = "") -> BenchmarkParams:
        """Validate parameters; an error names the source (a flag, or a config file and its line) and the key."""
        if isinstance(values, BenchmarkParams):
            return values
        try:
            return self.Params(**dict(values or {}))
        except ValidationError as err:
            first = err.errors()[0]
            key = prefix + (".".join(str(part) for part in first["loc"]) or "params")
            message = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
            known = ", ".join(self.Params.model_fields)
            raise InputError(f"{message} for benchmark '{self.name}' (parameters: {known})", file=source, line=line, field=key) from None

    def task(self, params: BenchmarkParams) -> EvalTask:
        raise NotImplementedError

    def judge_spec(self, spec: str | None) -> str:
        """The judge to load: `default_judge` when none is given; a requested family mapped by `judge_families`."""
        from ..judges.base import JUDGES

        spec = (spec or self.default_judge).strip()
        family, argument = JUDGES.split(spec)
        if family not in self.judge_families:
            return spec
        mapped = self.judge_families[family]
        return mapped if argument is None else f"{mapped}:{argument}"

    def declare(self, task: EvalTask, generation: GenerationConfig, judge: Judge) -> dict:
        """What reports need to know of this benchmark for this run, stored with it under `benchmark`."""
        return {"name": self.name}

    def attack_context(self, params: BenchmarkParams, options: ModelOptions) -> AttackContext:
        return AttackContext()

    def wrap_judge(self, judge: Judge, params: BenchmarkParams, options: ModelOptions) -> Judge:
        return judge


BENCHMARKS: Registry[Benchmark] = Registry("benchmark", package="polysafe.benchmarks")


def load_benchmark(spec: str) -> Benchmark:
    return BENCHMARKS.create(spec)


def parse_param_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """`["limit=5", "languages=en,zh"]` -> {"limit": "5", "languages": "en,zh"}; values are coerced by Params."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected key=value, got '{pair}'", field="-P")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def split_list(value: Any) -> Any:
    """Accept 'a,b' as well as a list, for list-valued parameters given on the command line."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def resolved(path: str | None) -> str:
    """A path as a run records it: resolved, so ./x.csv and x.csv are one run ('' when none)."""
    from pathlib import Path

    return str(Path(path).resolve()) if path else ""


def translator_spec(chains: Sequence[str], translator: str | None) -> str | None:
    """The translator a set of chains uses: the one given, MultiJail's human translations when a chain
    translates without one, None when nothing translates."""
    if not any(step.strip().startswith("translate:") for chain in chains for step in chain.split("|")):
        return None
    return translator or "precomputed"
