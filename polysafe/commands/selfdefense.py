"""`polysafe defend self-defense generate|run`: Self-Defense data generation, and the experiment (base model vs one
adapter per unsafe share of the training data: the paper's 3:7 by default, its trade-off study with --unsafe-ratios)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..types import MAX_NEW_TOKENS
from ._common import (DEFAULT_DB, DbOpt, ExecutorOptions, JudgeOpt, LimitOpt, ModelOpt, SeedOpt, command_group, console,
                      run_async, with_executor_options)
from ._training import TrainingOptions, with_training_options

GeneratorOpt = Annotated[Optional[str], typer.Option("--generator", "-g", help="Model that writes and translates the data (default: the model itself).")]
SeedsOpt = Annotated[Optional[Path], typer.Option("--seeds", help='Seed JSONL: {"id", "kind": unsafe|general, "prompt", "answer"} per line (default: polysafe\'s own).')]
LanguagesOpt = Annotated[str, typer.Option("--languages", "-l", help="Target languages, comma-separated (e.g. zh,bn,sw).")]
NUnsafeOpt = Annotated[int, typer.Option("--n-unsafe", min=0, help="English unsafe-prompt / safe-answer pairs in the data, seeds included (the paper: 15).")]
NGeneralOpt = Annotated[Optional[int], typer.Option("--n-general", min=0, help="English general helpful pairs in the data, seeds included (the paper: 35).")]
HelpfulRatioOpt = Annotated[Optional[float], typer.Option("--helpful-ratio", min=0.0, max=0.95, help="Share of general pairs; sets --n-general from --n-unsafe (the paper: 0.7).")]
SeedShareOpt = Annotated[float, typer.Option("--seed-share", min=0.0, max=1.0, help="At most this share of each kind comes from the seed pairs; the generator writes the rest.")]
CheckJudgeOpt = Annotated[Optional[str], typer.Option("--check-judge", help="LLM judge for the refusal check (llm:<model spec>); default: the refusal matcher.")]
TemperatureOpt = Annotated[float, typer.Option("--gen-temperature", min=0.0, help="Sampling temperature when writing English pairs.")]
MultiJailOpt = Annotated[Optional[str], typer.Option("--data", help="Local MultiJail CSV; default: the hub dataset.")]
HeldoutOpt = Annotated[Optional[Path], typer.Option("--heldout", help="MultiJail CSV whose prompts (in --languages and English) must not appear in the data.")]


def _n_general(n_unsafe: int, n_general: int | None, helpful_ratio: float | None) -> int:
    if helpful_ratio is not None:
        return round(n_unsafe * helpful_ratio / (1 - helpful_ratio))
    return 35 if n_general is None else n_general


def _show_generation(result) -> None:
    from rich.table import Table

    mix = result.mix()
    console.print(mix.line() + ("" if mix.ok else " (short of the requested mix: at least half imperative, with "
                                "role-play and manipulative attempts)"), markup=False, highlight=False)
    table = Table("language/kind", "kept")
    for key, count in sorted(result.counts().items()):
        table.add_row(key, str(count))
    console.print(table)
    rejected = Table("rejected: reason", "count")
    for reason, count in sorted(result.rejected.items()):
        rejected.add_row(reason, str(count))
    console.print(rejected if result.rejected else "rejected: none")


def _generation_progress():
    state: dict[str, tuple[int, int]] = {}

    def show(stage: str, done: int, total: int) -> None:
        state[stage] = (done, total)
        console.print(f"  {stage}: {done}/{total}", highlight=False)

    return show


def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Chat JSONL to write.")],
    generator: Annotated[str, typer.Option("--generator", "-g", help="Model spec that writes and translates.")] = "smollm2",
    seeds: SeedsOpt = None,
    languages: LanguagesOpt = "zh,bn,sw",
    n_unsafe: NUnsafeOpt = 15,
    n_general: NGeneralOpt = None,
    helpful_ratio: HelpfulRatioOpt = None,
    check_judge: CheckJudgeOpt = None,
    heldout: HeldoutOpt = None,
    save_dataset_dir: Annotated[Optional[Path], typer.Option("--save-dataset", help="Also save a `datasets` copy here.")] = None,
    temperature: TemperatureOpt = 0.8,
    seed_share: SeedShareOpt = 0.3,
    seed: SeedOpt = 0,
) -> None:
    """Write English pairs from seeds, translate them, check them, and save chat JSONL.

    Exits 1, naming the languages, when a requested language ends with no accepted pair or when every
    generation call failed."""
    from ..languages import parse_languages
    from ..training.lora import write_chat_jsonl
    from ..defenses.selfdefense import GenerationPlan, generate_pairs, load_seeds, save_dataset
    from ..defenses.selfdefense.generate import generation_problems
    from ..defenses.selfdefense.pipeline import heldout_texts
    from ..errors import PolysafeError
    from ..judges import load_judge
    from ..models import load_model

    codes = parse_languages(languages)
    plan = GenerationPlan(languages=codes, n_unsafe=n_unsafe, n_general=_n_general(n_unsafe, n_general, helpful_ratio),
                          seed_share=seed_share, temperature=temperature, seed=seed)
    seed_pairs = load_seeds(seeds)
    held = []
    if heldout:
        from ..data.multijail import load_multijail

        held = heldout_texts(load_multijail(str(heldout), [c for c in codes if c != "en"] or ["en"]))

    async def go():
        backend = load_model(generator)
        judge = load_judge(check_judge) if check_judge else None
        try:
            return await generate_pairs(backend, seed_pairs, plan, heldout=held, judge=judge, progress=_generation_progress())
        finally:
            await backend.aclose()
            if judge:
                await judge.aclose()

    result = run_async(go())
    _show_generation(result)
    problem = generation_problems(result, codes)
    if problem and (not result.pairs or result.all_writing_failed):
        raise PolysafeError(f"{problem}; nothing written")
    write_chat_jsonl(out, result.conversations())
    if save_dataset_dir:
        save_dataset(result.pairs, save_dataset_dir)
    console.print(f"{len(result.pairs)} pairs written to {out}")
    if problem:
        raise PolysafeError(f"{problem} (the pairs of the other languages are in {out})")


def run(
    model: ModelOpt = "smollm2",
    generator: GeneratorOpt = None,
    languages: LanguagesOpt = "zh,bn,sw",
    seeds: SeedsOpt = None,
    n_unsafe: NUnsafeOpt = 15,
    n_general: NGeneralOpt = None,
    helpful_ratio: HelpfulRatioOpt = None,
    unsafe_ratios: Annotated[Optional[str], typer.Option("--unsafe-ratios", help="Trade-off study: one adapter per unsafe share of the training data, e.g. 0,0.3,0.7,1.0 (each set has n-unsafe + n-general pairs per language).")] = None,
    seed_share: SeedShareOpt = 0.3,
    check_judge: CheckJudgeOpt = None,
    data: MultiJailOpt = None,
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="unintentional | intentional | both.")] = "both",
    limit: LimitOpt = 30,
    judge: JudgeOpt = "refusal",
    benign: Annotated[Optional[str], typer.Option("--benign", help="Benign requests for over-refusal: I-Alpaca JSON path or URL (default: its GitHub URL).")] = None,
    benign_limit: Annotated[int, typer.Option("--benign-limit", min=1)] = 50,
    benign_pairs: Annotated[Optional[Path], typer.Option("--benign-pairs", help="Chat JSONL of held-out benign answers for perplexity (default: half of the general seeds, kept out of training).")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, max=MAX_NEW_TOKENS, help="New tokens per evaluated answer.")] = 128,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for data, adapters and report.")] = None,
    db: DbOpt = Path(DEFAULT_DB),
    save_dataset_dir: Annotated[bool, typer.Option("--save-dataset", help="Also save a `datasets` copy of the pool in the output folder.")] = False,
    gen_max_tokens: Annotated[int, typer.Option("--gen-max-tokens", min=16, max=MAX_NEW_TOKENS, help="New tokens per generated pair or translation.")] = 256,
    train: TrainingOptions = TrainingOptions(),
    run_on: ExecutorOptions = ExecutorOptions(),
) -> None:
    """Generate -> fine-tune (one adapter per unsafe share) -> MultiJail on held-out prompts, over-refusal, perplexity."""
    setup, seed_pairs = build_setup(
        model=model, languages=languages, seeds=seeds, n_unsafe=n_unsafe, n_general=n_general, helpful_ratio=helpful_ratio,
        unsafe_ratios=unsafe_ratios, seed_share=seed_share, data=data, scenario=scenario, limit=limit, benign=benign,
        benign_limit=benign_limit, benign_pairs=benign_pairs, max_tokens=max_tokens, out=out,
        save_dataset=save_dataset_dir, gen_max_tokens=gen_max_tokens, train=train)
    report = execute_run(setup, seed_pairs, generator=generator or model, judge=judge, check_judge=check_judge, db=db,
                         executor=run_on.load())
    typer.echo(report.markdown())
    console.print(f"report: {setup.out_dir / 'report.md'}; chart: {setup.out_dir / 'tradeoff.png'}")


def register(apps) -> None:
    selfdefense = command_group(no_args_is_help=True, help="Self-Defense: the model writes multilingual safety data, then is tuned on it.")
    apps.defend.add_typer(selfdefense, name="self-defense")

    selfdefense.command("generate")(generate)

    selfdefense.command("run")(with_training_options(epochs=2.0, lr=2e-4, batch_size=8, max_length=256)(
        with_executor_options()(run)))


def parse_shares(text: str | None, n_unsafe: int, n_general: int) -> tuple[float, ...]:
    """`--unsafe-ratios` as shares in [0, 1]; without it, the one share that n_unsafe:n_general gives."""
    from ..errors import InputError

    if text is None:
        return (n_unsafe / (n_unsafe + n_general),) if n_unsafe + n_general else (0.0,)
    try:
        shares = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"expected comma-separated numbers in [0, 1] (got '{text}')", field="unsafe-ratios") from None
    if not shares or any(not 0 <= v <= 1 for v in shares):
        raise InputError(f"expected comma-separated numbers in [0, 1] (got '{text}')", field="unsafe-ratios")
    return shares


def build_setup(*, model: str, languages: str, seeds: Path | None, n_unsafe: int, n_general: int | None,
                helpful_ratio: float | None, unsafe_ratios: str | None, seed_share: float, data: str | None, scenario: str,
                limit: int | None, benign: str | None, benign_limit: int, benign_pairs: Path | None, max_tokens: int,
                out: Path | None, save_dataset: bool, gen_max_tokens: int, train: TrainingOptions):
    """The experiment's setup from the command's options (loads MultiJail, seeds and benign prompts)."""
    from ..languages import parse_languages
    from ..benchmarks.multijail import multijail_scenarios, parse_scenarios
    from ..data.multijail import limit_per_language, load_multijail
    from ..training.lora import load_chat_jsonl
    from ..defenses.selfdefense import GenerationPlan, load_seeds
    from ..defenses.selfdefense.pipeline import SelfDefenseSetup
    from ..defenses.usefulness import load_benign_prompts, pairs_from_conversations
    from ..engine.runner import EvalTask
    from ..errors import InputError
    from ..types import GenerationConfig

    codes = parse_languages(languages)
    n_general = _n_general(n_unsafe, n_general, helpful_ratio)
    shares = parse_shares(unsafe_ratios, n_unsafe, n_general)
    eval_prompts = limit_per_language(load_multijail(data, codes), limit)
    scenarios = multijail_scenarios(parse_scenarios(scenario))
    seed_pairs = load_seeds(seeds)
    if benign_pairs:
        perplexity_pairs = pairs_from_conversations(load_chat_jsonl(benign_pairs))
    else:  # every second general seed is held out of generation and training
        held = [s for s in seed_pairs if s.kind == "general"][1::2]
        if not held:
            raise InputError("need at least two general seeds to hold one out for perplexity (or pass --benign-pairs)", field="seeds")
        seed_pairs = [s for s in seed_pairs if s not in held]
        perplexity_pairs = [(s.prompt, s.answer) for s in held]
    out_dir = out or Path("polysafe-results") / f"selfdefense-{model.replace(':', '-').replace('/', '_').replace('+', '_')}"

    def task(prompts):
        return EvalTask(name="selfdefense:multijail", prompts=prompts, scenarios=scenarios,
                        config={"dataset": data or "hub", "languages": codes, "limit_per_language": limit})

    setup = SelfDefenseSetup(
        model_spec=model,
        plan=GenerationPlan(languages=codes, seed_share=seed_share, seed=train.seed, max_tokens=gen_max_tokens),
        finetune=train.finetune_config(), eval_prompts=eval_prompts, eval_task=task,
        benign_prompts=load_benign_prompts(benign)[:benign_limit], benign_pairs=perplexity_pairs, out_dir=out_dir,
        shares=shares, total=n_unsafe + n_general, eval_gen=GenerationConfig(max_tokens=max_tokens),
        save_dataset=save_dataset)
    return setup, seed_pairs


def execute_run(setup, seed_pairs, *, generator: str, judge: str, check_judge: str | None, db: Path, executor=None):
    from ..defenses.selfdefense.pipeline import run_self_defense
    from ..engine.store import Store
    from ..judges import load_judge
    from ..models import ModelOptions, load_model
    from .finetune import training_progress

    def load_evaluated(spec: str):  # with the options of the executor that will generate its answers
        return load_model(spec, executor.model_options(ModelOptions()) if executor else None)

    async def go():
        gen_backend = load_model(generator)
        eval_judge = load_judge(judge)
        checker = load_judge(check_judge) if check_judge else None
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            with Store(db) as store, training_progress() as train_progress:
                return await run_self_defense(setup, generator=gen_backend, judge=eval_judge, store=store,
                                              check_judge=checker, seeds=seed_pairs, load_backend=load_evaluated,
                                              train_progress=train_progress, say=lambda m: console.print(m, markup=False),
                                              executor=executor)
        finally:
            await gen_backend.aclose()
            await eval_judge.aclose()
            if checker:
                await checker.aclose()

    return run_async(go())
