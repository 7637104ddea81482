"""`polysafe defend ctrl curate` and `polysafe defend ctrl run`: CTRL's clean-data curation and its stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..types import MAX_NEW_TOKENS
from ._common import DEFAULT_DB, DbOpt, ExecutorOptions, LimitOpt, command_group, console, run_async, with_executor_options
from ._training import TrainingOptions, with_training_options


def _floats(text: str, name: str) -> tuple[float, ...]:
    from ..errors import InputError

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"expected comma-separated numbers (got '{text}')", field=name) from None
    if not values or any(not 0 <= v <= 2 for v in values):
        raise InputError(f"expected numbers in [0, 2] (got '{text}')", field=name)
    return values


def _names(text: str, known: tuple[str, ...], name: str) -> tuple[str, ...]:
    from ..errors import InputError

    values = tuple(v.strip() for v in text.split(",") if v.strip())
    for v in values:
        if v not in known:
            raise InputError(f"unknown value '{v}' (known: {', '.join(known)})", field=name)
    return values


def check_offline_rater(judge: str, objective: str, allowed: bool) -> None:
    """max_ppl keeps the most perplexing revision that clears the helpfulness floor, so the floor is all that
    stands between curation and garbled text: with the offline heuristic it must be asked for explicitly."""
    from ..defenses.ctrl.scoring import HEURISTIC
    from ..errors import InputError

    if judge != HEURISTIC or objective != "max_ppl":
        return
    if not allowed:
        raise InputError("--objective max_ppl needs an LLM helpfulness judge (--judge <model spec>): the offline "
                         "heuristic cannot judge correctness; pass --allow-offline-rater to use it anyway", field="judge")
    console.print("warning: max_ppl curation with the offline heuristic rater: the helpfulness floor is only a "
                  "fluency and coverage check, and cannot tell a wrong answer from a right one", style="yellow",
                  markup=False, highlight=False)


def curate_cmd(
    texts: Annotated[str, typer.Option("--texts", help="Clean Q/A texts: a JSON/JSONL file, or tatsu-lab/alpaca, databricks/databricks-dolly-15k, PKU-Alignment/BeaverTails.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Curated chat JSONL (original and curated versions with scores).")],
    target: Annotated[str, typer.Option("--target", help="The model to defend: perplexity is measured under it (local models).")] = "smollm2",
    reviser: Annotated[str, typer.Option("--reviser", help="Model that writes the revisions.")] = "smollm2",
    judge: Annotated[str, typer.Option("--judge", help="Helpfulness judge: a model spec, or 'heuristic' (offline, much weaker).")] = "heuristic",
    beam_width: Annotated[int, typer.Option("--beam-width", min=1)] = 3,
    rounds: Annotated[int, typer.Option("--rounds", min=1)] = 5,
    objective: Annotated[str, typer.Option("--objective", help="max_ppl (the seed paper) | min_ppl (earlier CTRL).")] = "max_ppl",
    floor: Annotated[float, typer.Option("--floor", min=0.0, help="Keep candidates with helpfulness >= floor x the original's.")] = 0.9,
    temperatures: Annotated[str, typer.Option("--temperatures", help="Sampling grid, temperatures.")] = "0.2,0.4,0.6,0.8,1.0",
    top_ps: Annotated[str, typer.Option("--top-ps", help="Sampling grid, top-p values.")] = "0.2,0.4,0.6,0.8,1.0",
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, max=MAX_NEW_TOKENS, help="New tokens per revision.")] = 256,
    seed_phrases: Annotated[Optional[Path], typer.Option("--seed-phrases", help="Safety seed phrases, one per line (default: the shipped set).")] = None,
    limit: LimitOpt = None,
    db: DbOpt = Path(DEFAULT_DB),
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="Endpoint for an openai:<model> reviser without @url.")] = None,
    api_key_env: Annotated[str, typer.Option("--api-key-env")] = "OPENAI_API_KEY",
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Local models: sequences per forward pass.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    allow_offline_rater: Annotated[bool, typer.Option("--allow-offline-rater", help="Accept the offline heuristic rater with --objective max_ppl (it cannot judge correctness).")] = False,
) -> None:
    """Revise clean texts toward the chosen perplexity objective while keeping them helpful."""
    from ..data.ctrl_sets import load_clean_texts
    from ..defenses.ctrl.beam import OBJECTIVES, BeamConfig
    from ..defenses.ctrl.curate import (CachedReviser, CachedScorer, CurationConfig, curate, curation_meta,
                                        summary_line, write_curated)
    from ..defenses.ctrl.revise import load_seed_phrases
    from ..defenses.ctrl.scoring import load_helpfulness
    from ..engine.store import Store
    from ..errors import InputError
    from ..models import ModelOptions, load_model

    if objective not in OBJECTIVES:
        raise InputError(f"unknown objective '{objective}' (known: {', '.join(OBJECTIVES)})", field="objective")
    check_offline_rater(judge, objective, allow_offline_rater)
    phrases = load_seed_phrases(seed_phrases)
    rows = load_clean_texts(texts, limit=limit)
    config = CurationConfig(BeamConfig(beam_width, rounds, objective, floor), _floats(temperatures, "temperatures"),
                            _floats(top_ps, "top-ps"), max_tokens, seed)
    options = ModelOptions(base_url=base_url, api_key_env=api_key_env, batch_size=batch_size)
    target_model = load_model(target, ModelOptions(batch_size=batch_size))
    if not hasattr(target_model, "tokenizer"):
        raise InputError("perplexity needs a local target model (smollm2, hf:...)", field="target")
    reviser_model = load_model(reviser, options)
    rater = load_helpfulness(judge, ModelOptions(api_key_env=api_key_env, batch_size=batch_size))
    meta = curation_meta(config, target=target, reviser=reviser, helpfulness=rater)
    console.print(f"curating {len(rows)} texts: beam {beam_width} x {rounds} rounds, objective {objective}, "
                  f"grid {len(config.grid())} samples per revision, helpfulness by {rater.method}")

    async def go():
        with Store(db) as store:
            rev = CachedReviser(reviser_model, store, phrases, config)
            scorer = CachedScorer(target_model, rater, store)
            done = []

            def on_text(item):
                done.append(item)
                console.print(f"  {len(done)}/{len(rows)} {item.id}: ppl {item.original.perplexity:.2f} -> "
                              f"{item.curated.perplexity:.2f}, helpfulness {item.original.helpfulness:.2f} -> "
                              f"{item.curated.helpfulness:.2f} (round {item.curated.round})")
            try:
                result = await curate(rows, rev, scorer, config, on_text=on_text)
            finally:
                await reviser_model.aclose()
                await rater.aclose()
            return result, rev.calls, scorer.perplexity_calls, scorer.rating_calls

    curated, calls, ppl_calls, rating_calls = run_async(go())
    write_curated(out, curated, meta)
    console.print(f"reviser calls {calls}, perplexities computed {ppl_calls}, ratings {rating_calls} (the rest from {db})")
    typer.echo(json.dumps(summary_line(curated) | {"objective": objective, "helpfulness": rater.method, "out": str(out)}))


def run_cmd(
    curated: Annotated[Path, typer.Option("--curated", help="Curated chat JSONL from 'defend ctrl curate'.")],
    attack_data: Annotated[str, typer.Option("--attack-data", help="Attack data file (or 'beavertails' for --attack-kind harmful).")],
    harmful: Annotated[str, typer.Option("--harmful", help="Harmful evaluation queries: advbench, AdvBench CSV, Bianchi JSON, or a prompt file.")],
    benign: Annotated[Path, typer.Option("--benign", help="Benign prompts for over-refusal and helpfulness (I-Alpaca format).")],
    base: Annotated[str, typer.Option("--base", help="The released model.")] = "smollm2",
    attack_kind: Annotated[str, typer.Option("--attack-kind", help="aoa | harmful")] = "aoa",
    mix_into: Annotated[Optional[Path], typer.Option("--mix-into", help="Benign customization set the attack is mixed into.")] = None,
    share: Annotated[float, typer.Option("--share", min=0.0, max=0.99)] = 0.1,
    stage: Annotated[str, typer.Option("--stage", help="Comma list of pre, in, post, all (or 'none' for baselines only).")] = "pre,in,post,all",
    baselines: Annotated[str, typer.Option("--baselines", help="Comma list: none, random-drop-20, random-drop-50, ppl-drop-20, ppl-drop-50, safety-data.")] = "none",
    safety_data: Annotated[Optional[Path], typer.Option("--safety-data", help="Explicit safety pairs (Bianchi et al.) for the safety-data baseline.")] = None,
    safety_stage: Annotated[str, typer.Option("--safety-stage", help="Stage at which the safety-data baseline trains.")] = "in",
    judge: Annotated[str, typer.Option("--judge", "-j", help="Judge for harmful answers: refusal (SR only) or harm:<model spec> (1-5 scores).")] = "refusal",
    helpfulness: Annotated[str, typer.Option("--helpfulness", help="Helpfulness judge model spec, or 'heuristic' (weaker).")] = "heuristic",
    limit_harmful: Annotated[Optional[int], typer.Option("--limit-harmful", min=1)] = None,
    limit_benign: Annotated[Optional[int], typer.Option("--limit-benign", min=1)] = None,
    limit_safety: Annotated[Optional[int], typer.Option("--limit-safety", min=1, help="Use the first N safety pairs (default: as many as curated texts).")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, max=MAX_NEW_TOKENS, help="New tokens per evaluated answer.")] = 128,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for adapters and the report.")] = Path("polysafe-results/ctrl"),
    db: DbOpt = Path(DEFAULT_DB),
    train: TrainingOptions = TrainingOptions(),
    run_on: ExecutorOptions = ExecutorOptions(),
) -> None:
    """Attack with fine-tuning under each defense and baseline; one table row per defense."""
    from ..data.ctrl_sets import load_harmful_queries, read_rows
    from ..training.attack_data import load_safety_pairs
    from ..defenses.ctrl.run import CtrlRunConfig, attack_set, render_table, rows_to_json, run_ctrl
    from ..report.defense import before_after
    from ..defenses.ctrl.scoring import load_helpfulness
    from ..defenses.ctrl.stages import BASELINES, STAGES
    from ..training.lora import load_chat_jsonl
    from ..defenses.usefulness import load_benign_prompts
    from ..engine.store import Store
    from ..errors import InputError

    stages = () if stage.strip() == "none" else _names(stage, STAGES, "stage")
    chosen = _names(baselines, BASELINES, "baselines")
    if "safety-data" in chosen and not safety_data:
        raise InputError("the safety-data baseline needs --safety-data FILE", field="safety-data")
    if safety_stage not in STAGES:
        raise InputError(f"unknown stage '{safety_stage}'", field="safety-stage")
    curated_convs = load_chat_jsonl(curated)
    objective = next((row.get("objective") for _, row in read_rows(curated) if isinstance(row, dict)), "unknown")
    cfg = CtrlRunConfig(
        base=base, attack=attack_set(attack_kind, attack_data, mix_into=str(mix_into) if mix_into else None, share=share, seed=train.seed),
        curated=curated_convs, harmful=load_harmful_queries(harmful, limit=limit_harmful),
        benign=load_benign_prompts(benign)[: limit_benign or None], out_dir=out, stages=stages, baselines=chosen,
        safety=load_safety_pairs(safety_data, limit=limit_safety or len(curated_convs)) if safety_data else (),
        safety_stage=safety_stage, judge=judge, finetune=train.finetune_config(),
        max_tokens=max_tokens, objective=str(objective), seed=train.seed)
    rater = load_helpfulness(helpfulness)
    executor = run_on.load()

    async def go():
        with Store(db) as store:
            try:
                rows = await run_ctrl(cfg, rater, store, log=lambda m: console.print(m, markup=False, highlight=False),
                                      executor=executor)
                return rows, before_after(store, [r.run for r in rows], by="scenario")
            finally:
                await rater.aclose()

    rows, comparison = run_async(go())
    table = render_table(rows, cfg, rater, comparison)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ctrl-report.md").write_text(table + "\n", encoding="utf-8")
    (out / "ctrl-report.json").write_text(json.dumps(rows_to_json(rows), indent=2, default=str) + "\n", encoding="utf-8")
    typer.echo(table)


def register(apps) -> None:
    ctrl = command_group(no_args_is_help=True, help="CTRL: curate clean texts against fine-tuning jailbreaks, and defend at every stage.")
    apps.defend.add_typer(ctrl, name="ctrl")

    ctrl.command("curate")(curate_cmd)

    ctrl.command("run")(with_training_options(epochs=3.0, lr=1e-4, batch_size=8)(with_executor_options()(run_cmd)))
