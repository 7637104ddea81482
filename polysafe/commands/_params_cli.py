"""A benchmark's command, generated from its parameter model: one declaration per parameter.

Every field of a benchmark's `Params` becomes an option of `polysafe eval <benchmark>`: its help is the field's
description, its default the field's default, its validation the model's own (a bad value is one line, exit 2).
A field may say how it is spelled on the command line in `json_schema_extra={"cli": {...}}`:
`flags` (e.g. ["--attack", "-a"]; default `--field-name`) and `repeat` (the option may be given several times;
otherwise a list field takes comma-separated values). Every command also takes `--model`, `--judge`, `-P key=value`
(any parameter, for scripts written for the generic form) and the shared eval options. A command module may add
options of its own and run the benchmark its own way (`customize`), e.g. CodeAttack's several `--model`s.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Optional

import typer

from ._common import EvalOptions, ModelOpt, run_benchmark, shared_option_names, with_eval_options

ParamOpt = Annotated[Optional[list[str]], typer.Option("--param", "-P", help="Any benchmark parameter as key=value (repeatable).")]


@dataclass(frozen=True)
class Customization:
    """Options a command module adds to a generated benchmark command, and how it runs the benchmark then:
    `run(name, params: dict, judge, opts, **extra values)`. `replaces` drops a generated option (e.g. --model)."""

    options: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (Annotated[type, typer.Option], default)
    run: Callable[..., None] | None = None
    replaces: tuple[str, ...] = ()


CUSTOMIZATIONS: dict[str, Customization] = {}


def customize(name: str, customization: Customization) -> None:
    CUSTOMIZATIONS[name] = customization


def _flags(name: str, info) -> list[str]:
    extra = (info.json_schema_extra or {}).get("cli", {}) if isinstance(info.json_schema_extra, dict) else {}
    return list(extra.get("flags") or [f"--{name.replace('_', '-')}"])


def _repeat(info) -> bool:
    extra = (info.json_schema_extra or {}).get("cli", {}) if isinstance(info.json_schema_extra, dict) else {}
    return bool(extra.get("repeat"))


def _cli_type(annotation) -> type:
    """The command-line type of a field: bool, int, float, list[str] (repeatable) or str (everything else,
    validated by the parameter model)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if annotation in (bool, int, float):
        return annotation
    return str


def _default_text(info) -> str:
    if info.is_required():
        return ""
    value = info.get_default(call_default_factory=True)
    if value in (None, [], ""):
        return ""
    shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return f" [default: {shown}]"


def option_parameters(params_model) -> list[inspect.Parameter]:
    out = []
    for name, info in params_model.model_fields.items():
        cli_type = _cli_type(info.annotation)
        repeat = _repeat(info)
        kind = Optional[list[str]] if repeat else (cli_type if cli_type is bool else Optional[cli_type])
        help_text = (info.description or "") + ("" if cli_type is bool else _default_text(info))
        option = typer.Option(*_flags(name, info), help=help_text.strip() or None, show_default=False,
                              **({"metavar": "<str>"} if repeat else {}))
        if info.is_required():
            default = inspect.Parameter.empty
            kind = cli_type
        elif cli_type is bool:
            default = bool(info.get_default(call_default_factory=True))
        else:
            default = None
        out.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, option],
                                     default=default))
    return out


def benchmark_command(name: str, params_model, default_judge: str) -> Callable:
    """The typer command function for a benchmark, with the shared eval options."""
    custom = CUSTOMIZATIONS.get(name, Customization())
    fields = list(params_model.model_fields)
    judge_opt = Annotated[Optional[str], typer.Option("--judge", "-j", help=f"Judge spec [default: the benchmark's own, {default_judge}].")]
    common = {"model": (ModelOpt, "smollm2"), "judge": (judge_opt, None), "param": (ParamOpt, None)}
    own = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d)
           for k, (a, d) in common.items() if k not in custom.replaces]
    extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d)
             for k, (a, d) in custom.options.items()]

    def command(**kwargs) -> None:
        from ..benchmarks import parse_param_pairs

        opts: EvalOptions = kwargs.pop("opts")
        values = parse_param_pairs(kwargs.pop("param", None) or [])
        for key in fields:
            given = kwargs.pop(key)
            if given is not None and given != []:
                values[key] = given
        extras = {k: kwargs.pop(k) for k in custom.options}
        if custom.run is not None:
            return custom.run(name, values, opts=opts, **kwargs, **extras)
        run_benchmark(name, model=kwargs["model"], judge=kwargs.get("judge"), params=values, opts=opts)

    parameters = [*option_parameters(params_model), *own, *extra,
                  inspect.Parameter("opts", inspect.Parameter.KEYWORD_ONLY, annotation=EvalOptions, default=EvalOptions())]
    command.__signature__ = inspect.Signature(sorted(parameters, key=lambda p: p.default is not inspect.Parameter.empty))
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__name__ = f"eval_{name}"
    # A benchmark parameter named like a shared option (the profile's sampling `seed`) takes its flag; the shared
    # setting keeps its default for this command.
    return with_eval_options(without=tuple(f for f in fields if f in shared_option_names()))(command)

