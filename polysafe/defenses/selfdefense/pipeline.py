"""The Self-Defense experiment: generate -> fine-tune -> MultiJail on held-out prompts, plus usefulness.

One run trains one adapter per share of safety (unsafe) data in the training set, the paper's trade-off study
(its default, 0.3, is the 3:7 of its main experiment). All sets come from one generated pool (`compose.py`):
for each share the same number of pairs per language, unsafe and general in the share's ratio. The base model
and every adapter are evaluated on the same held-out MultiJail prompts (unsafe rate per scenario and language)
and for usefulness (over-refusal on benign prompts, perplexity of held-out benign answers).

Everything is reused when it exists: the pool (keyed by generator, seeds, plan and held-out prompts), each
adapter (keyed by base model, training set and training config), and every answer and verdict (the store).
Adding a share to a sweep costs only that share's training and evaluation.

Held out: the evaluated MultiJail prompts are passed to generation as `heldout`, so no generated pair that
equals or nearly equals one of them (in its language or in English) is kept; the benign perplexity set is
never trained on.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ...keys import content_key
from ...engine.executor import Executor
from ...engine.runner import EvalTask, run_eval
from ...engine.store import Store
from ...errors import InputError, PolysafeError
from ...judges.base import Judge
from ...models.base import ModelBackend
from ...report.defense import before_after
from ...report.metrics import GroupStats, Rate, summarize
from ...types import GenerationConfig, Prompt
from ...training.lora import FinetuneConfig, FinetuneResult, finetune, write_chat_jsonl
from ..usefulness import benign_perplexity_cached, over_refusal_run
from .compose import select_training_set, share_counts
from .generate import GenerationPlan, GenerationResult, Pair, SeedPair, generate_pairs, generation_problems, save_dataset

Say = Callable[[str], None]
Train = Callable[..., FinetuneResult]


if TYPE_CHECKING:  # pragma: no cover
    from ...report.compare import Comparison


@dataclass
class Usefulness:
    over_refusal: Rate
    perplexity: float


@dataclass
class ModelResult:
    """One evaluated model: the base (share None) or the adapter trained with `share` unsafe data."""

    label: str
    share: float | None
    spec: str
    stats: list[GroupStats]
    usefulness: Usefulness
    pairs: int = 0  # training pairs (all languages)
    unsafe_pairs: int = 0
    steps: int = 0  # optimizer steps trained in this process (0 when the adapter was reused)
    losses: list[float] = field(default_factory=list)
    run: str = ""  # the stored MultiJail run of this model


@dataclass
class SelfDefenseReport:
    models: list[ModelResult]  # the base model first, then one per share in the order asked
    generation: GenerationResult
    data_files: dict[str, Path]
    comparison: "Comparison | None" = None  # every model's run against the base's (report/compare.py)

    def markdown(self) -> str:
        from ...report.defense import selfdefense_markdown

        return selfdefense_markdown(self)

    def to_dict(self) -> dict:
        g = self.generation
        return {
            "models": [{"label": m.label, "share": m.share, "spec": m.spec, "run": m.run, "stats": [s.to_dict() for s in m.stats],
                        "usefulness": asdict(m.usefulness), "pairs": m.pairs, "unsafe_pairs": m.unsafe_pairs,
                        "steps": m.steps, "losses": m.losses} for m in self.models],
            "generation": {"pool": g.counts(), "rejected": dict(g.rejected), "rejected_examples": g.examples,
                           "requests": g.requests, "unsafe_mix": asdict(g.mix())},
            "data_files": {k: str(v) for k, v in self.data_files.items()},
        }


@dataclass
class SelfDefenseSetup:
    model_spec: str
    plan: GenerationPlan  # languages, seeds and sampling of the generation; its counts are set from the shares
    finetune: FinetuneConfig
    eval_prompts: Sequence[Prompt]
    eval_task: Callable[[Sequence[Prompt]], EvalTask]
    benign_prompts: Sequence[str]
    benign_pairs: Sequence[tuple[str | None, str]]
    out_dir: Path
    shares: tuple[float, ...] = (0.3,)
    total: int = 50  # English pairs per training set (and per language)
    eval_gen: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_tokens=128))
    save_dataset: bool = False

    def __post_init__(self) -> None:
        if not self.shares or any(not 0 <= s <= 1 for s in self.shares):
            raise InputError(f"unsafe shares must be numbers in [0, 1] (got {list(self.shares)})", field="unsafe-ratios")
        if self.total < 1:
            raise InputError("a training set needs at least one pair", field="n-unsafe")

    def pool_plan(self) -> GenerationPlan:
        """Enough pairs of each kind for every share: the most unsafe and the most general any share needs."""
        counts = [share_counts(s, self.total) for s in self.shares]
        plan = GenerationPlan(**{**asdict(self.plan), "languages": list(self.plan.languages)})
        plan.n_unsafe, plan.n_general = max(u for u, _ in counts), max(g for _, g in counts)
        return plan


def heldout_texts(prompts: Sequence[Prompt]) -> list[tuple[str, str]]:
    """Every evaluated wording: the prompt in its language and its English reference."""
    texts = {(p.language, p.text) for p in prompts}
    texts |= {("en", p.english) for p in prompts if p.english}
    return sorted(texts)


def share_label(share: float) -> str:
    return f"unsafe {100 * share:g}%"


async def load_or_generate_pool(setup: SelfDefenseSetup, generator: ModelBackend, seeds: Sequence[SeedPair],
                                check_judge: Judge | None, say: Say) -> GenerationResult:
    """The generated pool, from `pool.json` in the output folder when the same generation made it before."""
    plan = setup.pool_plan()
    heldout = heldout_texts(setup.eval_prompts)
    key = content_key("selfdefense-pool", generator.identity, [asdict(s) for s in seeds], asdict(plan), heldout,
                      check_judge.spec if check_judge else None)
    path = setup.out_dir / "pool.json"
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("key") == key:
            say(f"reusing the generated pool in {path}")
            return _result_from_json(saved)
    say(f"generating with {generator.spec}: {plan.n_unsafe} unsafe and {plan.n_general} general English pairs ...")
    result = await generate_pairs(generator, seeds, plan, heldout=heldout, judge=check_judge,
                                  progress=lambda stage, done, total: say(f"  {stage}: {done}/{total}"))
    problem = generation_problems(result, plan.languages)
    if problem:
        raise PolysafeError(f"self-defense generation: {problem}")
    path.write_text(json.dumps(_result_to_json(result, key), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return result


def _result_to_json(result: GenerationResult, key: str) -> dict:
    return {"key": key, "pool": [asdict(p) for p in result.pool], "pairs": [asdict(p) for p in result.pairs],
            "rejected": dict(result.rejected), "rejected_by_language": [[k[0], k[1], v] for k, v in result.rejected_by_language.items()],
            "examples": result.examples, "requests": result.requests}


def _result_from_json(saved: dict) -> GenerationResult:
    result = GenerationResult(pairs=[Pair(**p) for p in saved["pairs"]], pool=[Pair(**p) for p in saved["pool"]],
                              examples=saved["examples"], requests=saved["requests"])
    result.rejected = Counter(saved["rejected"])
    result.rejected_by_language = Counter({(lang, reason): n for lang, reason, n in saved["rejected_by_language"]})
    return result


def train_share(setup: SelfDefenseSetup, share: float, pool: Sequence[Pair], train: Train, say: Say,
                train_progress=None) -> tuple[str, list[Pair], FinetuneResult | None, Path]:
    """The adapter for one share: trained now, or reused from its folder (keyed by what it was trained on)."""
    n_unsafe, n_general = share_counts(share, setup.total)
    pairs = select_training_set(pool, n_unsafe, n_general)
    if not pairs:
        raise PolysafeError(f"no training pairs for unsafe share {share}")
    conversations = [p.conversation() for p in pairs]
    key = content_key("selfdefense-adapter", setup.model_spec, [[m.to_dict() for m in c] for c in conversations],
                      setup.finetune.to_dict())[:16]
    tag = f"unsafe{round(100 * share):03d}"
    data_file = write_chat_jsonl(setup.out_dir / f"train-{tag}.jsonl", conversations)
    adapter = setup.out_dir / "adapters" / f"{tag}-{key}"
    if (adapter / "training.json").is_file():
        say(f"{share_label(share)}: reusing adapter {adapter.name}")
        return f"{setup.model_spec}+lora:{adapter}", pairs, None, data_file
    say(f"{share_label(share)}: fine-tuning on {len(pairs)} pairs ({n_unsafe}:{n_general} per language) ...")
    result = train(setup.model_spec, conversations, adapter, setup.finetune, progress=train_progress)
    return result.model_spec, pairs, result, data_file


async def evaluate_model(setup: SelfDefenseSetup, backend: ModelBackend, judge: Judge, store: Store, progress=None,
                         say: Say = print, executor: Executor | None = None) -> tuple[list[GroupStats], Usefulness, str]:
    task = setup.eval_task(setup.eval_prompts)
    run_name = f"selfdefense-{content_key(backend.identity, task.config, setup.eval_gen, judge.spec)[:12]}"
    summary = await run_eval(task, backend, judge, store, gen=setup.eval_gen, run_name=run_name, progress=progress,
                             executor=executor)
    say(f"  {summary.items} items, {summary.generated} generated, {summary.errors} errors (run {run_name})")
    stats = summarize(store.results(run_name), lambda r: (r.scenario, r.language))
    benign_run = f"selfdefense-benign-{content_key(backend.identity, list(setup.benign_prompts))[:12]}"
    refused, _ = await over_refusal_run(backend, setup.benign_prompts, store, run_name=benign_run, executor=executor)
    return stats, Usefulness(refused, benign_perplexity_cached(backend, setup.benign_pairs, store)), run_name


async def run_self_defense(setup: SelfDefenseSetup, *, generator: ModelBackend, judge: Judge, store: Store,
                           check_judge: Judge | None = None, seeds: Sequence[SeedPair],
                           load_backend: Callable[[str], ModelBackend], progress=None,
                           train_progress: Callable[[int, int, float], None] | None = None,
                           say: Say = print, train: Train | None = None, executor: Executor | None = None) -> SelfDefenseReport:
    """`train(base_spec, conversations, adapter_dir, config, progress=...)` defaults to the LoRA `finetune`;
    `executor` runs the evaluations' generations (default: this process)."""
    train = train or finetune
    out = setup.out_dir
    out.mkdir(parents=True, exist_ok=True)
    generation = await load_or_generate_pool(setup, generator, seeds, check_judge, say)
    if setup.save_dataset:
        save_dataset(generation.pool, out / "dataset")
    say(f"pool: {len(generation.pool)} pairs {generation.counts()}; rejected {dict(generation.rejected)}")

    adapters = []
    data_files: dict[str, Path] = {}
    for share in dict.fromkeys(setup.shares):
        spec, pairs, trained, data_file = train_share(setup, share, generation.pool, train, say, train_progress)
        adapters.append((share, spec, pairs, trained))
        data_files[share_label(share)] = data_file

    models = []
    for share, spec, pairs, trained in [(None, setup.model_spec, [], None)] + adapters:
        label = "base" if share is None else share_label(share)
        say(f"evaluating {label}: {spec}")
        backend = load_backend(spec)
        try:
            stats, usefulness, run_name = await evaluate_model(setup, backend, judge, store, progress, say, executor)
        finally:
            await backend.aclose()
        models.append(ModelResult(label, share, spec, stats, usefulness, len(pairs), sum(p.kind == "unsafe" for p in pairs),
                                  trained.steps if trained else 0, trained.losses if trained else [], run_name))

    report = SelfDefenseReport(models, generation, data_files, before_after(store, [m.run for m in models]))
    (out / "report.md").write_text(report.markdown() + "\n", encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    from .chart import tradeoff_png

    (out / "tradeoff.png").write_bytes(tradeoff_png(report))
    return report
