"""`polysafe lab generalization`: does safety tuned in English carry over to other languages, code and ciphers?

1. Split MultiJail's ids into train and held-out evaluation ids (seeded, stratified by category: splits.py).
2. Adapter A, English safety tuning: Bianchi et al.'s safety pairs mixed with helpful pairs (data.py).
   Adapter B, multilingual safety tuning (the Self-Defense idea): A's data plus train-split MultiJail prompts in
   all ten languages, answered with a refusal in the prompt's language (answers.py).
3. Prove that no training prompt shares an id or a (near) duplicate text with an evaluation prompt, in any
   language (overlap.py); overlapping training examples are dropped first, and counted.
4. Train both with the LoRA fine-tuning of `polysafe finetune` (same steps for both), then profile the base
   model, A and B on the same held-out seed ids (the `profile` benchmark), measure their over-refusal on benign
   prompts held apart from training (the `overrefusal` benchmark), and lay the three side by side (page.py).

Everything is reused when it exists: adapters are keyed by base model, training data and training config;
answers and verdicts live in the store. Rerunning the same command trains nothing and calls no model.
"""

from __future__ import annotations

import asyncio
import gc
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..api import Prepared, RunOptions, prepare, run_prepared
from ..attacks.base import parse_chain
from ..data.multijail import load_multijail
from ..engine.progress import Progress
from ..engine.runner import EvalTask, Scenario
from ..engine.store import Store
from ..errors import InputError
from ..keys import content_key
from ..models.base import ModelOptions
from ..training.lora import FinetuneConfig, finetune, write_chat_jsonl
from ..types import GenerationConfig, Prompt
from .answers import SOURCE as ANSWERS_SOURCE
from .data import Example, english_safety, fetch_once, helpful_from_file, helpful_seeds, mix, multilingual_safety, whole_sentences
from .overlap import OverlapIndex, Text, check_no_overlap, find_overlaps
from .splits import Split, pick_stratified, split_ids

Say = Callable[[str], None]
TrainProgress = Callable[[int, int, float], None]
JUDGE = "refusal"
SELF_DISTILLED = "helpful:self-distilled"


@dataclass(frozen=True)
class LabConfig:
    """What the lab trains and measures. The defaults are the demo's size (minutes on two CPU cores)."""

    safety: str  # Bianchi et al.'s safety_only_data_Instructions.json
    benign: str | None = None  # I-Alpaca (path or URL; default: its public URL)
    multijail: str | None = None  # MultiJail CSV (default: the hub)
    helpful: str | None = None  # a user's (instruction, answer) file; default: seeds + self-distilled answers
    base: str = "smollm2"
    out_dir: Path = Path("polysafe-results/lab-generalization")
    db: Path = Path("polysafe-results/polysafe.db")
    run_prefix: str = "lab"
    # splits and sizes
    seed: int = 0
    eval_share: float = 0.5
    prompts: int = 10  # held-out seed ids per profile cell
    safety_examples: int = 64
    helpful_share: float = 0.5
    multilingual_ids: int = 8  # train-split ids added to B, each in every language
    benign_eval: int = 30  # I-Alpaca's first N: over-refusal; the rest: prompts of the self-distilled helpful pairs
    helpful_tokens: int = 96  # new tokens of a self-distilled helpful answer
    # the profile
    axes: tuple[str, ...] = ("languages", "code", "ciphers")
    languages: tuple[str, ...] = ("zh", "ar", "bn", "sw")
    variants: tuple[str, ...] = ("python_list",)
    ciphers: tuple[str, ...] = ("base64",)
    compose: tuple[str, ...] | None = None
    template_file: str | None = None
    max_tokens: int = 48
    model_options: ModelOptions = field(default_factory=ModelOptions)
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(
        learning_rate=2e-3, batch_size=4, max_length=160, max_steps=40, lora_r=8, lora_alpha=16))

    def __post_init__(self) -> None:
        if self.prompts < 2:
            raise InputError("a profile cell needs at least 2 seed queries", field="prompts")
        if self.safety_examples < 1:
            raise InputError("need at least one safety example", field="safety-examples")
        if self.multilingual_ids < 1:
            raise InputError("need at least one MultiJail id for adapter B", field="multilingual-ids")
        if self.benign_eval < 1:
            raise InputError("need at least one benign prompt for over-refusal", field="benign-eval")
        if not 0 <= self.helpful_share < 1:
            raise InputError(f"must be in [0, 1) (got {self.helpful_share})", field="helpful-share")
        if not 0 < self.eval_share < 1:
            raise InputError(f"must be between 0 and 1 (got {self.eval_share})", field="eval-share")

    def profile_params(self, ids: Sequence[str]) -> dict[str, Any]:
        params: dict[str, Any] = {"ids": list(ids), "axes": list(self.axes), "languages": list(self.languages),
                                  "variants": list(self.variants), "ciphers": list(self.ciphers), "data": self.multijail}
        if self.compose is not None:
            params["compose"] = list(self.compose)
        if self.template_file:
            params["template_file"] = self.template_file
        return params

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(out_dir=str(self.out_dir), db=str(self.db), finetune=self.finetune.to_dict(),
                    model_options={"batch_size": self.model_options.batch_size, "dtype": self.model_options.dtype})
        return data


@dataclass
class Adapter:
    label: str  # "A" or "B"
    title: str
    spec: str
    examples: list[Example]
    data_file: Path
    trained: bool  # trained by this invocation (False: reused)
    steps: int
    seconds: float
    losses: list[float]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for example in self.examples:
            key = example.source if example.source != "multijail" else f"multijail/{example.language}"
            out[key] = out.get(key, 0) + 1
        return out


@dataclass
class ModelRuns:
    label: str  # "base", "A", "B"
    title: str
    spec: str
    profile_run: str
    overrefusal_run: str
    calls: int  # model calls made by this invocation for this model
    errors: int = 0  # items stored as errors (the next run retries them)
    first_error: str | None = None


@dataclass
class LabResult:
    config: LabConfig
    split: Split
    eval_ids: list[str]
    adapters: list[Adapter]
    models: list[ModelRuns]
    helpful_source: str
    dropped: dict[str, int]  # overlap filter: source -> training examples dropped
    compared: int  # (training, evaluation) text pairs checked for overlap
    calls: int  # model calls made by this invocation, helpful answers included
    files: dict[str, Path] = field(default_factory=dict)


# -- data ---------------------------------------------------------------------------------------------------
def evaluation_texts(prompts: Sequence[Prompt], split: Split, benign: Sequence[str]) -> list[Text]:
    """Every held-out MultiJail prompt in every language, and the over-refusal prompts."""
    held = set(split.evaluation)
    texts = [Text("multijail", f"{p.id}/{p.language}", p.text, p.id, p.language) for p in prompts if p.id in held]
    return texts + [Text("I-Alpaca", f"benign-{i:03d}", t) for i, t in enumerate(benign, 1)]


def drop_overlaps(examples: Sequence[Example], evaluation: Sequence[Text] | OverlapIndex) -> tuple[list[Example], int]:
    hits = {(o.train.source, o.train.key) for o in find_overlaps([e.text() for e in examples], evaluation)}
    kept = [e for e in examples if (e.source, e.key) not in hits]
    return kept, len(examples) - len(kept)


async def self_distilled_helpful(config: LabConfig, prompts: Sequence[str], progress: Progress | None) -> tuple[list[Example], int]:
    """Benign prompts answered by the base model itself: answers that refuse or are invalid are dropped, and an
    answer cut at the token limit is trimmed to its last full sentence."""
    if not prompts:
        return [], 0
    numbered = enumerate(prompts, start=config.benign_eval + 1)  # I-Alpaca's item numbers
    task = EvalTask("lab-helpful", [Prompt(id=f"alpaca-{i:03d}", text=t, source="I-Alpaca") for i, t in numbered],
                    [Scenario("benign", parse_chain("none"))],
                    config={"purpose": "helpful answers for the lab's training data", "data": config.benign or "I-Alpaca (public URL)"})
    prepared = _prepare(task, config.base, config, GenerationConfig(max_tokens=config.helpful_tokens), "base-helpful")
    summary = await run_prepared(prepared, config.db, progress=progress)
    del prepared
    gc.collect()
    with Store(config.db) as store:
        rows = store.results(summary.run)
    out = []
    for row in rows:
        if row.label != "unsafe" or not row.response:  # the refusal judge's "unsafe" = answered, not refused
            continue
        answer = whole_sentences(row.response) if row.finish_reason == "length" else row.response.strip()
        if answer:
            out.append(Example(SELF_DISTILLED, row.prompt_id, row.prompt, answer))
    return out, summary.generated


# -- training -----------------------------------------------------------------------------------------------
def adapter_key(config: LabConfig, examples: Sequence[Example]) -> str:
    return content_key("lab-adapter", config.base, [e.to_dict()["messages"] for e in examples], config.finetune.to_dict())[:16]


def train_adapter(config: LabConfig, label: str, title: str, examples: Sequence[Example], say: Say,
                  train_progress: TrainProgress | None, train=None) -> Adapter:
    """Train, or reuse the adapter that the same base, data and config made before."""
    key = adapter_key(config, examples)
    folder = config.out_dir / "adapters" / f"{label}-{key}"
    data_file = write_chat_jsonl(config.out_dir / f"train-{label}.jsonl", [e.conversation() for e in examples])
    (config.out_dir / f"train-{label}.sources.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in e.to_dict().items() if k != "messages"}, ensure_ascii=False) + "\n"
                for e in examples), encoding="utf-8")
    summary_file = folder / "training.json"
    if summary_file.is_file():
        saved = json.loads(summary_file.read_text(encoding="utf-8"))
        say(f"adapter {label}: reusing {folder}")
        return Adapter(label, title, f"{config.base}+lora:{folder}", list(examples), data_file, False,
                       saved.get("steps", 0), saved.get("seconds", 0.0), saved.get("losses", []))
    say(f"adapter {label} ({title}): fine-tuning on {len(examples)} examples, {config.finetune.max_steps or 'all'} steps ...")
    result = (train or finetune)(config.base, [e.conversation() for e in examples], folder, config.finetune,
                                 progress=train_progress)
    gc.collect()  # the training model holds reference cycles: free it before the next model loads
    say(f"adapter {label}: {result.steps} steps in {result.seconds:.0f} s; loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    return Adapter(label, title, result.model_spec, list(examples), data_file, True, result.steps, result.seconds,
                   result.losses)


# -- evaluation ---------------------------------------------------------------------------------------------
def _prepare(benchmark, model: str, config: LabConfig, gen: GenerationConfig, label: str,
             params: dict | None = None) -> Prepared:
    options = RunOptions(model=config.model_options, generation=gen, db=config.db)
    prepared = prepare(benchmark, model=model, judge=JUDGE, params=params, options=options)
    digest = prepared.run_name.rsplit("-", 1)[-1]
    task = prepared.task.name.split(":")[0]
    return replace(prepared, run_name=f"{config.run_prefix}-{label}-{task}-{digest}")


async def evaluate_model(config: LabConfig, label: str, title: str, spec: str, eval_ids: Sequence[str],
                         progress: Progress | None, say: Say) -> ModelRuns:
    gen = GenerationConfig(max_tokens=config.max_tokens)
    profile = _prepare("profile", spec, config, gen, label, config.profile_params(eval_ids))
    say(f"profiling {label} ({spec}): {len(profile.task.scenarios)} cells x {len(eval_ids)} held-out seeds")
    first = await run_prepared(profile, config.db, progress=progress)
    refusal = _prepare("overrefusal", spec, config, gen, label, {"data": config.benign, "limit": config.benign_eval})
    # The same weights answer both runs: one load (backends load lazily, so the second one never does).
    second = await run_prepared(replace(refusal, model=profile.model), config.db, progress=progress)
    del profile, refusal
    gc.collect()  # free this model's weights and cache before the next model loads
    calls = first.generated + second.generated
    errors = first.errors + second.errors
    say(f"  {label}: {calls} model calls, {first.cached + second.cached} answers reused"
        + (f", {errors} errors (first: {first.first_error or second.first_error})" if errors else ""))
    return ModelRuns(label, title, spec, first.run, second.run, calls, errors, first.first_error or second.first_error)


# -- the experiment -----------------------------------------------------------------------------------------
async def run_generalization_async(config: LabConfig, *, say: Say = print, progress: Progress | None = None,
                                   train_progress: TrainProgress | None = None, train=None) -> LabResult:
    from ..data.benign import load_benign_prompts

    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    config.db.parent.mkdir(parents=True, exist_ok=True)
    prompts = load_multijail(config.multijail)
    split = split_ids(prompts, eval_share=config.eval_share, seed=config.seed)
    split.write(out / "split.json")
    eval_ids = pick_stratified(split.evaluation, split.categories, config.prompts, seed=config.seed)
    say(f"split (seed {config.seed}): {len(split.train)} train ids, {len(split.evaluation)} held-out ids; "
        f"profiling {len(eval_ids)} held-out ids per cell")

    benign = load_benign_prompts(config.benign)
    benign_eval, benign_rest = benign[: config.benign_eval], benign[config.benign_eval :]
    evaluation = OverlapIndex(evaluation_texts(prompts, split, benign_eval))

    calls = 0
    if config.helpful:
        helpful, helpful_source = helpful_from_file(config.helpful), f"{config.helpful} (the user's file)"
    else:
        distilled, calls = await self_distilled_helpful(config, benign_rest, progress)
        helpful = helpful_seeds() + distilled
        helpful_source = (f"polysafe's {len(helpful) - len(distilled)} hand-written general pairs (Self-Defense seeds) and "
                          f"{len(distilled)} I-Alpaca instructions not used for over-refusal (its items "
                          f"{config.benign_eval + 1}-{len(benign)}), answered by the base model itself (greedy, "
                          f"{config.helpful_tokens} tokens, cut to whole sentences; refusals and invalid answers dropped)")

    safety = english_safety(fetch_once(config.safety, out / "downloads"), config.safety_examples, seed=config.seed)
    mj_ids = pick_stratified(split.train, split.categories, config.multilingual_ids, seed=config.seed)
    multilingual = multilingual_safety(prompts, mj_ids)
    dropped: dict[str, int] = {}
    kept = []
    for name, examples in (("bianchi2024", safety), ("helpful", helpful), ("multijail", multilingual)):
        clean, n = drop_overlaps(examples, evaluation)
        dropped[name] = n
        kept.append(clean)
    safety, helpful, multilingual = kept
    if dropped and any(dropped.values()):
        say(f"dropped for overlapping the evaluation prompts: {dropped}")
    data_a = mix(safety, helpful, config.helpful_share)
    data_b = data_a + multilingual
    compared = check_no_overlap([e.text() for e in data_b], evaluation)  # B holds all of A's data
    say(f"no overlap: {len(data_b)} training prompts x {len(evaluation.texts)} evaluation texts checked (ids, exact, near duplicates)")

    adapters = [train_adapter(config, "A", "English safety tuning", data_a, say, train_progress, train),
                train_adapter(config, "B", "multilingual safety tuning", data_b, say, train_progress, train)]
    models = []
    for label, title, spec in [("base", "base model", config.base), *((a.label, a.title, a.spec) for a in adapters)]:
        runs = await evaluate_model(config, label, title, spec, eval_ids, progress, say)
        calls += runs.calls
        models.append(runs)
    return LabResult(config, split, eval_ids, adapters, models, helpful_source, dropped, compared, calls)


def run_generalization(config: LabConfig, **kwargs) -> LabResult:
    return asyncio.run(run_generalization_async(config, **kwargs))


__all__ = ["ANSWERS_SOURCE", "Adapter", "LabConfig", "LabResult", "ModelRuns", "run_generalization",
           "run_generalization_async"]
