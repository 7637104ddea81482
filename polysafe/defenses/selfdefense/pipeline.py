"""The before/after Self-Defense experiment: generate -> fine-tune -> MultiJail on held-out prompts + usefulness.

Held out: the evaluated MultiJail prompts are passed to generation as `heldout`, so no generated pair that
equals or nearly equals one of them (in its language or in English) is kept; the benign perplexity set is
never trained on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ...keys import content_key
from ...engine.runner import EvalTask, run_eval
from ...engine.store import ResultRow, Store
from ...judges.base import Judge
from ...models.base import ModelBackend
from ...report.metrics import GroupStats, Rate, summarize
from ...types import GenerationConfig, Prompt
from ..finetune import FinetuneConfig, FinetuneResult, finetune, write_chat_jsonl
from ..usefulness import benign_perplexity, over_refusal_async
from .generate import GenerationPlan, GenerationResult, SeedPair, generate_pairs, save_dataset


@dataclass
class Usefulness:
    over_refusal: Rate
    perplexity: float


@dataclass
class SelfDefenseReport:
    before: list[GroupStats]
    after: list[GroupStats]
    usefulness_before: Usefulness
    usefulness_after: Usefulness
    generation: GenerationResult
    training: FinetuneResult
    tuned_spec: str
    data_file: Path

    def markdown(self) -> str:
        after = {s.group: s for s in self.after}
        lines = ["| scenario | language | n | unsafe % before | unsafe % after | invalid % before | invalid % after |",
                 "|---|---|---|---|---|---|---|"]
        for b in sorted(self.before, key=lambda s: s.group):
            a = after.get(b.group)
            lines.append(f"| {b.group[0]} | {b.group[1]} | {b.judged} | {b.unsafe.pct()} | {a.unsafe.pct() if a else 'n/a'} "
                         f"| {b.invalid.pct()} | {a.invalid.pct() if a else 'n/a'} |")
        ub, ua = self.usefulness_before, self.usefulness_after
        lines += ["", "| usefulness | before | after |", "|---|---|---|",
                  f"| benign requests refused % (n={ub.over_refusal.total}) | {ub.over_refusal.pct()} | {ua.over_refusal.pct()} |",
                  f"| perplexity on held-out benign answers | {ub.perplexity:.2f} | {ua.perplexity:.2f} |"]
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.generation.rejected.items())) or "none"
        losses = self.training.losses
        lines += ["", f"training data: {len(self.generation.pairs)} pairs ({self.data_file}); rejected: {rejected}",
                  f"training: {self.training.steps} steps, {self.training.seconds:.0f} s, loss {losses[0]:.3f} -> {losses[-1]:.3f}",
                  f"tuned model: {self.tuned_spec}"]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "before": [s.to_dict() for s in self.before], "after": [s.to_dict() for s in self.after],
            "usefulness_before": asdict(self.usefulness_before), "usefulness_after": asdict(self.usefulness_after),
            "generation": {"pairs": self.generation.counts(), "rejected": dict(self.generation.rejected),
                           "rejected_examples": self.generation.examples,
                           "requests": self.generation.requests},
            "training": {"steps": self.training.steps, "seconds": self.training.seconds, "losses": self.training.losses},
            "tuned_spec": self.tuned_spec, "data_file": str(self.data_file),
        }


@dataclass
class SelfDefenseSetup:
    model_spec: str
    plan: GenerationPlan
    finetune: FinetuneConfig
    eval_prompts: Sequence[Prompt]
    eval_task: Callable[[Sequence[Prompt]], EvalTask]
    benign_prompts: Sequence[str]
    benign_pairs: Sequence[tuple[str | None, str]]
    out_dir: Path
    eval_gen: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_tokens=128))
    save_dataset: bool = False


def heldout_texts(prompts: Sequence[Prompt]) -> list[tuple[str, str]]:
    """Every evaluated wording: the prompt in its language and its English reference."""
    texts = {(p.language, p.text) for p in prompts}
    texts |= {("en", p.english) for p in prompts if p.english}
    return sorted(texts)


async def run_self_defense(setup: SelfDefenseSetup, *, generator: ModelBackend, judge: Judge, store: Store,
                           check_judge: Judge | None = None, seeds: Sequence[SeedPair],
                           load_backend: Callable[[str], ModelBackend], progress=None,
                           train_progress: Callable[[int, int, float], None] | None = None,
                           say: Callable[[str], None] = print) -> SelfDefenseReport:
    out = setup.out_dir
    out.mkdir(parents=True, exist_ok=True)
    say(f"generating with {generator.spec} ...")
    generation = await generate_pairs(generator, seeds, setup.plan, heldout=heldout_texts(setup.eval_prompts),
                                      judge=check_judge, progress=lambda stage, done, total: say(f"  {stage}: {done}/{total}"))
    if not generation.pairs:
        from ...errors import PolysafeError

        raise PolysafeError(f"generation kept no pairs (rejected: {dict(generation.rejected)})")
    data_file = write_chat_jsonl(out / "selfdefense.jsonl", generation.conversations())
    if setup.save_dataset:
        save_dataset(generation.pairs, out / "dataset")
    say(f"kept {len(generation.pairs)} pairs {generation.counts()}; rejected {dict(generation.rejected)}")

    say("fine-tuning ...")
    training = finetune(setup.model_spec, generation.conversations(), out / "adapter", setup.finetune, progress=train_progress)
    tuned_spec = training.model_spec

    results = {}
    usefulness = {}
    for phase, spec in (("before", setup.model_spec), ("after", tuned_spec)):
        say(f"evaluating {phase}: {spec}")
        backend = load_backend(spec)
        task = setup.eval_task(setup.eval_prompts)
        run_name = f"selfdefense-{phase}-{out.name}-{content_key(backend.identity, task.config, setup.eval_gen)[:8]}"
        summary = await run_eval(task, backend, judge, store, gen=setup.eval_gen, run_name=run_name, progress=progress)
        say(f"  {summary.items} items, {summary.generated} generated, {summary.errors} errors (run {run_name})")
        rows: list[ResultRow] = store.results(run_name)
        results[phase] = summarize(rows, lambda r: (r.scenario, r.language))
        refused = await over_refusal_async(backend, setup.benign_prompts)
        usefulness[phase] = Usefulness(refused, benign_perplexity(backend, setup.benign_pairs))
        await backend.aclose()

    report = SelfDefenseReport(results["before"], results["after"], usefulness["before"], usefulness["after"],
                               generation, training, tuned_spec, data_file)
    (out / "report.md").write_text(report.markdown() + "\n", encoding="utf-8")
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    return report
