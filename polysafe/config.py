"""Run sets from a config file: models x benchmarks, one judge, generation settings, concurrency.

    polysafe eval --config run.yaml        # or run.toml

Every pair runs like `polysafe eval <benchmark>` (resumable, nothing asked twice). An unknown key or a bad value
is one line naming the file, the key and its line, before anything runs.

A config file is hostile input like any other: YAML aliases are counted as if expanded (a "billion laughs" file
stops at once), nesting is bounded (`MAX_DEPTH`), a key given twice is an error naming its line, and values are
strictly typed (no `true` for a number, integers in sane ranges).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InputError
from .types import MAX_NEW_TOKENS


MAX_DEPTH = 32  # nesting of a config file; real ones use 4
MAX_NODES = 100_000  # values in a config file, YAML aliases counted as expanded


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class GenerationSection(_Strict):
    temperature: float | None = Field(default=None, ge=0.0, le=10.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
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
    concurrency: int = Field(default=16, ge=1, le=4096)
    samples: int = Field(default=1, ge=1, le=10_000)  # answers per prompt (temperature > 0)
    api_key_env: str = "OPENAI_API_KEY"
    max_retries: int = Field(default=6, ge=0, le=100)
    timeout: float = Field(default=120.0, gt=0, le=86_400)
    batch_size: int | None = Field(default=None, ge=1, le=65_536)
    dtype: str = "auto"
    numerics: str = "fp32"  # the target models' (local, on the CPU): fp32 | bf16 | fp16 | int8 | auto
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
        for key, value in entry.params.items():  # -P values are strings the parameters coerce; a file's are typed
            field = bench.Params.model_fields.get(key)
            if isinstance(value, bool) and field is not None and not _accepts_bool(field.annotation):
                where = ("benchmarks", index, "params", key)
                raise InputError("a number or text is expected, not true/false", file=file, line=lines.line(where),
                                 field=".".join(map(str, where)))
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


def _accepts_bool(annotation) -> bool:
    from typing import get_args

    return annotation is bool or bool in get_args(annotation) or annotation is Any


def _parse(text: str, path: Path) -> tuple[Any, LineFinder]:
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InputError(f"not valid TOML ({err})", file=str(path)) from None
        except RecursionError:
            raise InputError(f"nested more than {MAX_DEPTH} levels deep", file=str(path)) from None
        _check_depth(data, path)
        return data, LineFinder(text=text)
    import yaml

    _check_flow_depth(text, path)
    _check_events(text, path)
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


def _check_depth(data: Any, path: Path) -> None:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"nested more than {MAX_DEPTH} levels deep", file=str(path))
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)


_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'')


def _check_flow_depth(text: str, path: Path) -> None:
    """Bracket nesting (YAML flow style, JSON) before the parser sees it: PyYAML's scanner slows down
    quadratically in deep flow nesting, so 2,000 levels would take a second before any event says so."""
    depth = 0
    blanked = _QUOTED.sub(lambda quoted: " " * len(quoted.group()), text)  # offsets kept for the line number
    for bracket in re.finditer(r"[\[\]{}]", blanked):
        depth = depth + 1 if bracket.group() in "[{" else max(0, depth - 1)
        if depth > MAX_DEPTH:
            raise InputError(f"nested more than {MAX_DEPTH} levels deep", file=str(path),
                             line=text.count("\n", 0, bracket.start()) + 1)


def _check_events(text: str, path: Path) -> None:
    """Before anything is built: nesting depth, the size with aliases expanded, and duplicate keys, read from the
    parser's event stream (which neither recurses nor expands aliases)."""
    import yaml

    frames: list[dict] = []  # open collections: size so far, anchor, mapping keys seen, whether a key comes next
    anchors: dict[str, int] = {}
    total = 0

    def add(size: int, line: int) -> None:
        nonlocal total
        total += size
        if total > MAX_NODES:
            raise InputError(f"more than {MAX_NODES} values (YAML aliases counted as expanded)", file=str(path), line=line)
        if frames:
            frames[-1]["size"] += size

    def key_position(event, line: int) -> None:
        frame = frames[-1] if frames else None
        if frame is None or frame["keys"] is None:
            return
        if frame["next_is_key"] and isinstance(event, yaml.ScalarEvent) and event.value != "<<":
            if event.value in frame["keys"]:
                raise InputError(f"key '{event.value}' given twice", file=str(path), line=line)
            frame["keys"].add(event.value)
        frame["next_is_key"] = not frame["next_is_key"]

    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            line = event.start_mark.line + 1 if event.start_mark else None
            if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                key_position(event, line)
                size = anchors.get(event.anchor, 0) if isinstance(event, yaml.AliasEvent) else 1
                if isinstance(event, yaml.ScalarEvent) and event.anchor:
                    anchors[event.anchor] = 1
                add(size, line)
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                key_position(event, line)
                if len(frames) >= MAX_DEPTH:
                    raise InputError(f"nested more than {MAX_DEPTH} levels deep", file=str(path), line=line)
                frames.append({"size": 0, "anchor": event.anchor, "next_is_key": True,
                               "keys": set() if isinstance(event, yaml.MappingStartEvent) else None})
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                frame = frames.pop()
                if frame["anchor"]:
                    anchors[frame["anchor"]] = frame["size"] + 1
                add(1, line)  # the collection itself; its items were counted as they came
                if frames:
                    frames[-1]["size"] += frame["size"]
    except yaml.YAMLError:
        return  # the parse below reports it with its line
    except RecursionError:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep", file=str(path)) from None


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
