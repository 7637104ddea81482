"""Run sets from a config file: models x benchmarks, one judge, generation settings, concurrency.

    polysafe eval --config run.yaml        # or run.toml

Every pair runs like `polysafe eval <benchmark>` (resumable, nothing asked twice). An unknown key or a bad value
is one line naming the file, the key and its line, before anything runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InputError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerationSection(_Strict):
    temperature: float | None = Field(default=None, ge=0.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    system_prompt: str | None = None


class BenchmarkEntry(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    judge: str | None = None  # overrides the set's judge for this benchmark


class RunSet(_Strict):
    models: list[str] = Field(min_length=1)
    benchmarks: list[BenchmarkEntry] = Field(min_length=1)
    judge: str | None = None  # None: each benchmark's default judge
    generation: GenerationSection = Field(default_factory=GenerationSection)
    concurrency: int = Field(default=16, ge=1)
    samples: int = Field(default=1, ge=1)  # answers per prompt (temperature > 0)
    api_key_env: str = "OPENAI_API_KEY"
    max_retries: int = Field(default=6, ge=0)
    timeout: float = Field(default=120.0, gt=0)
    batch_size: int | None = Field(default=None, ge=1)
    dtype: str = "auto"
    numerics: str = "fp32"  # the target models' (local, on the CPU): fp32 | bf16 | int8 | auto
    db: str | None = None
    judge_check: str | None = None  # a second judge on a seeded sample of each run's answers (kappa, agreement)
    judge_check_n: int = Field(default=50, ge=1)
    executor: Literal["local", "ray"] = "local"  # where local models generate
    ray_address: str | None = None  # auto | HOST:PORT | ray://HOST:PORT
    ray_actors: int | None = Field(default=None, ge=1)

    @field_validator("ray_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        from .engine.executor import check_ray_address

        try:
            return None if value is None else check_ray_address(value)
        except InputError as err:
            raise ValueError(err.reason) from None


def load_run_set(path: str | Path) -> tuple[RunSet, "LineFinder"]:
    path = Path(path)
    if not path.is_file():
        raise InputError("no such config file", file=str(path))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text ({err.reason})", file=str(path)) from None
    data, lines = _parse(text, path)
    if not isinstance(data, dict):
        raise InputError("a config file holds a mapping (models, benchmarks, judge, ...)", file=str(path), line=1)
    try:
        run_set = RunSet(**data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = tuple(first["loc"])
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise InputError(message, file=str(path), line=lines.line(loc), field=".".join(map(str, loc)) or "config") from None
    return run_set, lines


def check_benchmarks(run_set: RunSet, lines: "LineFinder", file: str) -> None:
    """Unknown benchmarks and bad parameters fail here, before any model is asked anything."""
    from .benchmarks.base import BENCHMARKS
    from .errors import SpecError

    for index, entry in enumerate(run_set.benchmarks):
        where = ("benchmarks", index, "name")
        try:
            bench = BENCHMARKS.create(entry.name)
        except SpecError as err:
            raise InputError(str(err), file=file, line=lines.line(where), field=".".join(map(str, where))) from None
        try:
            bench.params(entry.params, source=file, prefix=f"benchmarks.{index}.params.")
        except InputError as err:
            loc = tuple(int(part) if part.isdigit() else part for part in (err.field or "").split("."))
            raise InputError(err.reason, file=file, line=lines.line(loc), field=err.field) from None


class LineFinder:
    """The 1-based line of a key path in the source file (YAML: exact, from the parser's marks)."""

    def __init__(self, marks: dict[tuple, int] | None = None, text: str = ""):
        self.marks, self.text = marks or {}, text

    def line(self, loc: tuple) -> int | None:
        for size in range(len(loc), 0, -1):  # the deepest known prefix
            if tuple(loc[:size]) in self.marks:
                return self.marks[tuple(loc[:size])]
        for key in reversed([k for k in loc if isinstance(k, str)]):  # TOML: the first line naming the key
            match = re.search(rf"^\s*\[*\s*{re.escape(key)}\s*[=\]]", self.text, re.M)
            if match:
                return self.text.count("\n", 0, match.start()) + 1
        return None


def _parse(text: str, path: Path) -> tuple[Any, LineFinder]:
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            return tomllib.loads(text), LineFinder(text=text)
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"not valid TOML ({err})", file=str(path)) from None
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"not valid YAML ({reason})", file=str(path), line=mark.line + 1 if mark else None) from None
    marks: dict[tuple, int] = {}
    if node is not None:
        _walk(node, (), marks)
    return data, LineFinder(marks, text)


def _walk(node, loc: tuple, marks: dict[tuple, int]) -> None:
    import yaml

    marks[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            marks[loc + (key.value,)] = key.start_mark.line + 1
            _walk(value, loc + (key.value,), marks)
            marks[loc + (key.value,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, loc + (index,), marks)


def run_options(run_set: RunSet, db: str | Path | None = None):
    """The RunOptions of a set: its transport and store settings (sampling is merged per benchmark)."""
    from .api import DEFAULT_DB, RunOptions
    from .models.base import ModelOptions

    model = ModelOptions(api_key_env=run_set.api_key_env, concurrency=run_set.concurrency, timeout=run_set.timeout,
                         max_retries=run_set.max_retries, batch_size=run_set.batch_size, dtype=run_set.dtype,
                         numerics=run_set.numerics)
    return RunOptions(model=model, db=Path(db or run_set.db or DEFAULT_DB), judge_check=run_set.judge_check,
                      judge_check_n=run_set.judge_check_n, samples=run_set.samples,
                      executor=run_set.executor, ray_address=run_set.ray_address, ray_actors=run_set.ray_actors)


def prepare_run_set(path: str | Path, *, db: str | Path | None = None, dry_run: bool = False) -> tuple:
    """(RunOptions, every model x benchmark pair validated and resolved as `api.Prepared`); no call made yet."""
    from dataclasses import replace

    from .api import prepare

    run_set, lines = load_run_set(path)
    check_benchmarks(run_set, lines, str(path))
    options = replace(run_options(run_set, db), dry_run=dry_run)
    prepared = []
    for model in run_set.models:
        for entry in run_set.benchmarks:
            prepared.append(prepare(entry.name, model=model, judge=entry.judge or run_set.judge, params=entry.params,
                                    options=replace(options, generation=_merged_generation(run_set, entry.name))))
    return options, prepared


def _merged_generation(run_set: RunSet, benchmark: str):
    """The file's settings over the benchmark's defaults (e.g. CodeAttack's longer answers)."""
    from .benchmarks.base import load_benchmark
    from .types import GenerationConfig

    chosen = {k: v for k, v in run_set.generation.model_dump().items() if v is not None}
    return GenerationConfig(**{**load_benchmark(benchmark).generation_defaults, **chosen})
