"""`polysafe profile`: one model, every form, the same seed queries; one page with the paired differences."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import EvalOptions, JudgeOpt, ModelOpt, run_benchmark, with_eval_options

FORMATS = {"md": "paired", "json": "paired-json", "html": "paired-html", "png": "paired-png"}


def profile(
    model: ModelOpt = "smollm2",
    judge: JudgeOpt = "refusal",
    prompts: Annotated[int, typer.Option("--prompts", "-n", min=1, help="N English seed queries, sent in every cell.")] = 50,
    axes: Annotated[str, typer.Option("--axes", help="Comma-separated: languages, jailbreak, code, ciphers, compose.")] = "languages,jailbreak,code,ciphers,compose",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the stratified draw of the seed queries (the generation seed stays 0).")] = 0,
    ids: Annotated[Optional[str], typer.Option("--ids", help="Seed ids in this order, comma-separated (instead of the draw).")] = None,
    languages: Annotated[Optional[str], typer.Option("--languages", "-l", help="Languages of the language, jailbreak and compose cells (default: MultiJail's nine).")] = None,
    variants: Annotated[Optional[str], typer.Option("--variants", help="CodeAttack variants (default: the paper's five).")] = None,
    ciphers: Annotated[Optional[str], typer.Option("--ciphers", help="Cipher cells: base64, rot13, caesar, morse, leetspeak, cipherchat-<cipher>.")] = None,
    compose: Annotated[Optional[str], typer.Option("--compose", help="form+language cells, e.g. 'python_list+bn,base64+sw' (default: python_list x bn, sw, jv).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Local MultiJail CSV; default: the hub dataset.")] = None,
    prompts_file: Annotated[Optional[Path], typer.Option("--prompts-file", help="English seed queries from a prompt file (id, text [, category]).")] = None,
    translator: Annotated[Optional[str], typer.Option("--translator", help="llm:<model spec> | hf:<path> (default: MultiJail's human translations; none for --prompts-file).")] = None,
    template_file: Annotated[Optional[Path], typer.Option("--template-file", help="Jailbreak text with a {prompt} slot (default: polysafe's own).")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Comma-separated: md, json, html, png.")] = "md,html",
    opts: EvalOptions = EvalOptions(),
) -> None:
    """Profile a model: the same English seed queries in every language, jailbreak, code and cipher form, with
    paired differences from plain English (exact McNemar, Holm) on one page."""
    from ..errors import InputError

    chosen = [part.strip() for part in fmt.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in FORMATS]
    if unknown or not chosen:
        raise InputError(f"unknown format {', '.join(unknown) or '(none)'} (choose from {', '.join(FORMATS)})", field="format")
    params = {"prompts": prompts, "axes": axes, "seed": seed, "ids": ids, "data": data,
              "prompts_file": str(prompts_file) if prompts_file else None, "translator": translator,
              "template_file": str(template_file) if template_file else None, "compose": compose}
    params.update({k: v for k, v in (("languages", languages), ("variants", variants), ("ciphers", ciphers)) if v})
    run_benchmark("profile", model=model, judge=judge, params=params, opts=opts, reports=[FORMATS[f] for f in chosen])


def register(apps) -> None:
    apps.root.command("profile")(with_eval_options(without=("seed",))(profile))
