"""The evaluation loop: prompts -> attack chains -> model -> post-processing -> judge -> store.

Every step consults the store first, so running the same task again asks nothing that is already stored,
and a run killed at any point resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..attacks.base import AttackChain, AttackContext, AttackedPrompt
from ..judges.base import Judge
from ..models.base import ModelBackend
from ..types import Completion, GenerationConfig, JudgeInput, Prompt, RunSummary, Verdict
from .dispatch import dispatch
from .keys import content_key
from .progress import Progress
from .store import ItemRecord, RunRecord, Store


@dataclass(frozen=True)
class Scenario:
    """A named attack chain. MultiJail's scenarios, CodeAttack's variants and plain chains are all Scenarios."""

    name: str
    chain: AttackChain


@dataclass
class EvalTask:
    name: str
    prompts: Sequence[Prompt]
    scenarios: Sequence[Scenario]
    config: dict = field(default_factory=dict)  # task-level settings, stored with the run


@dataclass(frozen=True)
class _Item:
    record: ItemRecord
    attacked: AttackedPrompt
    scenario: Scenario
    request: dict  # what the model is asked: messages and generation config


def request_for(model: ModelBackend, gen: GenerationConfig, attacked: AttackedPrompt) -> tuple[str, dict]:
    messages = [m.to_dict() for m in gen.messages(attacked.text)]
    request = {"messages": messages, "config": gen.to_dict()}
    return content_key("response", model.identity, request), request


async def build_items(task: EvalTask, model: ModelBackend, gen: GenerationConfig, ctx: AttackContext) -> list[_Item]:
    items: list[_Item] = []
    for scenario in task.scenarios:
        attacked_prompts = await scenario.chain.apply(task.prompts, ctx)
        for attacked in attacked_prompts:
            prompt = attacked.prompt
            response_key, request = request_for(model, gen, attacked)
            record = ItemRecord(
                key=content_key("item", prompt.id, prompt.language, scenario.name, scenario.chain.spec),
                position=len(items), prompt_id=prompt.id, language=attacked.language, scenario=scenario.name,
                chain=scenario.chain.spec, category=prompt.category, tags=prompt.tags, query=prompt.reference,
                prompt=attacked.text, response_key=response_key,
            )
            items.append(_Item(record, attacked, scenario, request))
    return items


async def generate_missing(items: Sequence[_Item], model: ModelBackend, gen: GenerationConfig, store: Store, progress: Progress) -> tuple[int, int]:
    """Ask the model for every response not yet stored. Returns (asked, reused)."""
    unique: dict[str, _Item] = {}
    for item in items:
        unique.setdefault(item.record.response_key, item)
    stored = store.ok_response_keys(unique)
    pending = [item for key, item in unique.items() if key not in stored]
    if model.batch_size > 1:  # batches of similar length waste less compute on padding
        pending.sort(key=lambda it: sum(len(m["content"]) for m in it.request["messages"]))
    progress.start("generate", len(pending))

    async def work(batch: Sequence[_Item]) -> list[Completion]:
        from ..types import Message

        conversations = [tuple(Message(m["role"], m["content"]) for m in it.request["messages"]) for it in batch]
        return await model.generate(conversations, gen)

    def on_done(batch: Sequence[_Item], completions: list[Completion]) -> None:
        for item, completion in zip(batch, completions):
            store.put_response(item.record.response_key, model.identity, item.request, completion)
        progress.advance("generate", len(batch), tokens=sum(c.completion_tokens for c in completions))

    await dispatch(pending, work, batch_size=model.batch_size, concurrency=model.concurrency, on_done=on_done)
    progress.finish("generate")
    return len(pending), len(stored)


async def judge_missing(run: str, items: Sequence[_Item], judge: Judge, store: Store, progress: Progress) -> int:
    responses = store.get_responses({it.record.response_key for it in items})
    jobs: list[tuple[str, str, JudgeInput]] = []  # (verdict key, extracted, input)
    links: list[tuple[str, str]] = []
    for item in items:
        completion = responses.get(item.record.response_key)
        if completion is None or not completion.ok:
            continue  # reported as an error; judged once a later run gets an answer
        extracted = item.scenario.chain.extract(completion.text)
        judge_input = JudgeInput(query=item.attacked.prompt.reference, prompt=item.attacked.text,
                                 response=extracted, language=item.attacked.language)
        verdict_key = content_key("verdict", judge.identity, judge_input.__dict__)
        links.append((item.record.key, verdict_key))
        jobs.append((verdict_key, extracted, judge_input))
    store.set_verdict_keys(run, links)
    done = store.ok_verdict_keys(key for key, _, _ in jobs)
    seen: set[str] = set()
    pending = []
    for job in jobs:
        if job[0] not in done and job[0] not in seen:
            seen.add(job[0])
            pending.append(job)
    progress.start("judge", len(pending))

    async def work(batch: Sequence[tuple[str, str, JudgeInput]]) -> list[Verdict]:
        return await judge.judge([inp for _, _, inp in batch])

    def on_done(batch: Sequence[tuple[str, str, JudgeInput]], verdicts: list[Verdict]) -> None:
        store.put_verdicts([(key, judge.identity, extracted, v) for (key, extracted, _), v in zip(batch, verdicts)])
        progress.advance("judge", len(batch))

    await dispatch(pending, work, batch_size=judge.batch_size, concurrency=judge.concurrency, on_done=on_done)
    progress.finish("judge")
    return len(pending)


async def run_eval(
    task: EvalTask,
    model: ModelBackend,
    judge: Judge,
    store: Store,
    *,
    gen: GenerationConfig | None = None,
    run_name: str,
    ctx: AttackContext | None = None,
    progress: Progress | None = None,
) -> RunSummary:
    gen = gen or GenerationConfig()
    progress = progress or Progress()
    ctx = ctx or AttackContext(store=store)
    if ctx.store is None:
        ctx.store = store
    items = await build_items(task, model, gen, ctx)
    store.save_run(RunRecord(name=run_name, task=task.name, model=model.spec, judge=judge.spec,
                             config={"generation": gen.to_dict(), **task.config,
                                     "scenarios": {s.name: s.chain.spec for s in task.scenarios}}))
    store.add_items(run_name, [it.record for it in items])
    asked, reused = await generate_missing(items, model, gen, store, progress)
    judged = await judge_missing(run_name, items, judge, store, progress)
    rows = store.results(run_name)
    errors = [r for r in rows if r.label == "error"]
    return RunSummary(run=run_name, items=len(items), generated=asked, cached=reused, judged=judged,
                      errors=len(errors), first_error=(errors[0].rationale if errors else None))
