"""The evaluation loop: prompts -> attack chains -> model -> post-processing -> judge -> store.

Every step consults the store first, so running the same task again asks nothing that is already stored,
and a run killed at any point resumes where it stopped.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from ..attacks.base import AttackChain, AttackContext, AttackedPrompt, Undecodable
from ..errors import InputError
from ..judges.base import Judge
from ..models.base import ModelBackend
from ..types import Completion, Conversation, GenerationConfig, JudgeInput, Message, Prompt, RunSummary, Verdict
from .claims import claimed
from .cost import Budget, prompt_token_bound
from .dispatch import dispatch
from .judge_check import JudgeCheck, check_with_judge, check_with_labels
from .executor import LOCAL, Executor, WorkUnit, make_units
from ..keys import content_key
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
    gen: GenerationConfig  # this sample's settings (its own seed)


def request_for(model: ModelBackend, gen: GenerationConfig, attacked: AttackedPrompt, config: dict | None = None) -> tuple[str, dict]:
    """`config`: `gen.to_dict()`, when the caller already has it (it costs more than the rest)."""
    messages = [m.to_dict() for m in gen.messages(attacked.text)]
    request = {"messages": messages, "config": gen.to_dict() if config is None else config}
    return content_key("response", model.identity, request), request


def sample_configs(gen: GenerationConfig, samples: int) -> list[GenerationConfig]:
    """The settings of each of `samples` answers per prompt: sample i draws with seed `gen.seed + i`, so sample 0
    is exactly a one-sample run (same keys: a one-sample store resumes, and grows into a K-sample one)."""
    check_samples(gen, samples)
    return [gen if i == 0 else replace(gen, seed=gen.seed + i) for i in range(samples)]


def check_samples(gen: GenerationConfig, samples: int) -> None:
    if samples < 1:
        raise InputError(f"--samples must be at least 1 (got {samples})", field="samples")
    if samples > 1 and gen.temperature <= 0:
        raise InputError(f"--samples {samples} needs --temperature > 0: greedy decoding gives the same answer every "
                         "time", field="samples")


def item_key(prompt: Prompt, scenario: Scenario, sample: int) -> str:
    parts = (prompt.id, prompt.language, scenario.name, scenario.chain.spec)
    return content_key("item", *parts) if sample == 0 else content_key("item", *parts, "sample", sample)


async def build_items(task: EvalTask, model: ModelBackend, gen: GenerationConfig, ctx: AttackContext,
                      samples: int = 1) -> list[_Item]:
    items: list[_Item] = []
    configs = [(g, g.to_dict()) for g in sample_configs(gen, samples)]
    for scenario in task.scenarios:
        attacked_prompts = await scenario.chain.apply(task.prompts, ctx)
        for attacked in attacked_prompts:
            prompt = attacked.prompt
            for sample, (sample_gen, config) in enumerate(configs):
                response_key, request = request_for(model, sample_gen, attacked, config)
                if attacked.error:  # never sent: its own key, so it can't stand for a real answer to the same text
                    response_key = content_key("not-sent", response_key, attacked.error)
                record = ItemRecord(
                    key=item_key(prompt, scenario, sample),
                    position=len(items), prompt_id=prompt.id, language=attacked.language, scenario=scenario.name,
                    chain=scenario.chain.spec, category=prompt.category, tags=prompt.tags, query=prompt.reference,
                    prompt=attacked.text, response_key=response_key, sample=sample,
                )
                items.append(_Item(record, attacked, scenario, request, sample_gen))
    return items


async def generate_each(model: ModelBackend, conversations: Sequence, configs: Sequence[GenerationConfig]) -> list[Completion]:
    """Answers for conversations that may each have their own settings (samples differ in seed).

    A backend with `generate_each` takes the mix in one call; otherwise each distinct config is one `generate`."""
    if len(set(configs)) == 1:
        return await model.generate(conversations, configs[0])
    own = getattr(model, "generate_each", None)
    if own is not None:
        return await own(conversations, configs)
    groups: dict[GenerationConfig, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(config, []).append(index)
    answers = await asyncio.gather(*(model.generate([conversations[i] for i in idx], config)
                                     for config, idx in groups.items()))
    out: list = [None] * len(conversations)
    for idx, completions in zip(groups.values(), answers):
        for i, completion in zip(idx, completions):
            out[i] = completion
    return out


class _TurnWriter:
    """Commits the answers that arrive within one event-loop turn in one transaction, early in the next turn.

    Nothing waits between an answer's arrival and its commit (the loop only polls in between), so a killed run
    loses no more than with a commit per answer, at a fraction of the cost. A store error is raised by the next
    `add` or by `close`."""

    def __init__(self, write: Callable[[list], None]):
        self.write = write
        self.rows: list = []
        self.error: BaseException | None = None
        self.scheduled = False

    def add(self, rows: list) -> None:
        if self.error is not None:
            raise self.error
        self.rows.extend(rows)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        try:
            self.flush()
        except Exception as err:  # raised in the engine's own task by the next add, or by close
            self.error = err

    def flush(self) -> None:
        self.scheduled = False
        rows, self.rows = self.rows, []
        if rows:
            self.write(rows)

    def close(self) -> None:
        self.flush()
        if self.error is not None:
            raise self.error


async def generate_missing(items: Sequence[_Item], model: ModelBackend, store: Store,
                           progress: Progress, budget: Budget | None = None,
                           executor: Executor | None = None) -> tuple[int, int]:
    """Ask the model for every response not yet stored, within `budget`. Returns (asked, reused).

    The pending requests go to `executor` (default: this process) in units; results are committed as they arrive."""
    unique: dict[str, _Item] = {}
    for item in items:
        if not item.attacked.error:
            unique.setdefault(item.record.response_key, item)
    stored = store.ok_response_keys(unique)
    pending = [item for key, item in unique.items() if key not in stored]
    if model.batch_size > 1:  # batches of similar length waste less compute on padding
        pending.sort(key=lambda it: sum(len(m["content"]) for m in it.request["messages"]))
    load = getattr(model, "load", None)
    if pending and load is not None:  # loading weights is not generating: the phase's clock starts after it
        await load()
    progress.start("generate", len(pending))
    executor = executor or LOCAL
    items_of: dict[int, Sequence[_Item]] = {}  # the current round's units cut its items in order
    writer = _TurnWriter(lambda rows: store.put_responses(model.identity, rows))

    def on_result(unit: WorkUnit, completions: list[Completion]) -> None:
        batch = items_of[unit.index]
        writer.add([(item.record.response_key, item.request, c) for item, c in zip(batch, completions)])
        if budget is not None:
            budget.settle(request_token_bounds(batch), [(c.prompt_tokens, c.completion_tokens) for c in completions])
        progress.advance("generate", len(batch), tokens=sum(c.completion_tokens for c in completions))

    def admit(unit: WorkUnit) -> bool:
        return budget.admit(request_token_bounds(items_of[unit.index]))

    by_key = {item.record.response_key: item for item in pending}
    asked = 0

    async def ask(keys: list[str]) -> None:  # the keys this process claimed (see `claims`)
        nonlocal asked
        mine = [by_key[k] for k in keys]
        asked += len(mine)
        units = make_units([conversation(it) for it in mine], [it.gen for it in mine],
                           executor.unit_size(model, len(mine)))
        items_of.clear()
        start = 0
        for unit in units:
            items_of[unit.index], start = mine[start : start + len(unit.conversations)], start + len(unit.conversations)
        try:
            await executor.run(model, units, on_result=on_result, admit=admit if budget is not None else None)
        finally:
            writer.flush()  # committed before the claims are released

    try:
        by_others = await claimed(store, list(by_key), store.ok_response_keys, ask)
    finally:
        writer.close()
    progress.advance("generate", by_others)
    progress.finish("generate")
    return (budget.calls if budget is not None else asked), len(stored) + by_others


async def judge_missing(run: str, items: Sequence[_Item], judge: Judge, store: Store, progress: Progress) -> int:
    responses = store.get_responses({it.record.response_key for it in items})
    jobs: list[tuple[str, str, JudgeInput]] = []  # (verdict key, extracted, input)
    links: list[tuple[str, str]] = []
    unreadable: list[tuple[str, str, str, Verdict]] = []  # the attack could not read the reply back: invalid, unjudged
    for item in items:
        completion = responses.get(item.record.response_key)
        if completion is None or not completion.ok:
            continue  # reported as an error; judged once a later run gets an answer
        try:
            verdict_key, extracted, judge_input = _judge_job(item, completion, judge)
        except Undecodable as why:
            key = content_key("verdict", "undecodable", item.scenario.chain.spec, completion.text)
            links.append((item.record.key, key))
            unreadable.append((key, "undecodable", completion.text, Verdict("invalid", rationale=f"undecodable: {why}")))
            continue
        links.append((item.record.key, verdict_key))
        jobs.append((verdict_key, extracted, judge_input))
    if unreadable:
        store.put_verdicts(unreadable)
    store.set_verdict_keys(run, links)
    done = store.ok_verdict_keys(key for key, _, _ in jobs)
    seen: set[str] = set()
    pending = []
    for job in jobs:
        if job[0] not in done and job[0] not in seen:
            seen.add(job[0])
            pending.append(job)
    load = getattr(getattr(judge, "model", None), "load", None)
    if pending and load is not None:
        await load()
    progress.start("judge", len(pending))
    scale = judge.describe().scale

    async def work(batch: Sequence[tuple[str, str, JudgeInput]]) -> list[Verdict]:
        return await judge.judge([inp for _, _, inp in batch])

    def on_done(batch: Sequence[tuple[str, str, JudgeInput]], verdicts: list[Verdict]) -> None:
        store.put_verdicts([(key, judge.identity, extracted if v.judged is None else v.judged, v)
                            for (key, extracted, _), v in zip(batch, verdicts)], scale=scale.name if scale else None)
        progress.advance("judge", len(batch))

    by_key = {job[0]: job for job in pending}
    asked = 0

    async def ask(keys: list[str]) -> None:
        nonlocal asked
        asked += len(keys)
        await dispatch([by_key[k] for k in keys], work, batch_size=judge.batch_size, concurrency=judge.concurrency,
                       on_done=on_done)

    progress.advance("judge", await claimed(store, list(by_key), store.ok_verdict_keys, ask))
    progress.finish("judge")
    return asked


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
    overwrite: bool = False,
    budget: Budget | None = None,
    samples: int = 1,
    check: JudgeCheck | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    """Run a task, resuming the run `run_name` when it exists; `check` adds judge checks (see `judge_check`).

    A run of that name made with another task, model identity or judge is refused (InputError) unless
    `overwrite`, which replaces its items. Every prompt is attacked before anything is stored, so a failing
    step leaves no run behind. `samples` > 1 (temperature > 0) asks for that many answers per prompt, sample i
    with seed `gen.seed + i`; its items are keyed by sample index, and sample 0 keeps a one-sample run's keys."""
    gen = gen or GenerationConfig()
    check_samples(gen, samples)
    progress = progress or Progress()
    ctx = ctx or AttackContext(store=store)
    if ctx.store is None:
        ctx.store = store
    judge.attach_store(store)
    items = await build_items(task, model, gen, ctx, samples)
    record = RunRecord(name=run_name, task=task.name, model=model.spec, judge=judge.spec,
                       config={"generation": gen.to_dict(), **task.config,
                               "scenarios": {s.name: s.chain.spec for s in task.scenarios},
                               **({"precision": model.precision} if getattr(model, "precision", None) else {}),
                               "model_identity": identity_digest(model.identity),
                               "judge_identity": identity_digest(judge.identity),
                               "judge_description": judge.describe().to_dict(),
                               "model_dtype": model_dtype(model),
                               **({"samples": samples} if samples > 1 else {})})
    existing = store.get_run(run_name)
    if existing is not None and not overwrite:
        check_same_run(existing, record)
    store.start_run(record, [it.record for it in items], replace=overwrite and existing is not None)
    for item in items:
        if item.attacked.error:
            store.put_response(item.record.response_key, model.identity, {**item.request, "not_sent": item.attacked.error},
                               Completion.failed(f"not sent: {item.attacked.error}"))
    asked, reused = await generate_missing(items, model, store, progress, budget, executor)
    capped = budget.reason() if budget is not None and budget.capped else None
    store.update_run_config(run_name, {"capped": capped})
    judged = await judge_missing(run_name, items, judge, store, progress)
    rows = store.results(run_name)
    checks = await run_checks(check, items, rows, store, gen.seed, progress) if check is not None else []
    if checks:
        store.update_run_config(run_name, {"judge_checks": checks})
    errors = [r for r in rows if r.label == "error"]
    return RunSummary(run=run_name, items=len(items), generated=asked, cached=reused, judged=judged,
                      errors=len(errors), first_error=(errors[0].rationale if errors else None),
                      prompt_tokens=sum(r.prompt_tokens for r in rows),
                      completion_tokens=sum(r.completion_tokens for r in rows), capped=capped,
                      pending=sum(1 for r in rows if r.label == "pending"),
                      extra={"judge_checks": checks} if checks else {})


async def run_checks(check: JudgeCheck, items: Sequence[_Item], rows, store: Store, seed: int,
                     progress: Progress) -> list[dict]:
    """The judge checks of a run, as stored with it: a second judge on a seeded sample, human labels."""
    out = []
    if check.judge is not None:
        check.judge.attach_store(store)
        responses = store.get_responses({it.record.response_key for it in items})
        jobs = {}
        for item in items:
            completion = responses.get(item.record.response_key)
            if completion is not None and completion.ok:
                try:
                    jobs[item.record.position] = _judge_job(item, completion, check.judge)
                except Undecodable:
                    continue
        result = await check_with_judge(rows, jobs, check.judge, store, n=check.n, seed=seed, progress=progress)
        out.append(result.to_dict())
    if check.labels is not None:
        out.append(check_with_labels(rows, check.labels, check.labels_source or "labels").to_dict())
    return out


def conversation(item: _Item) -> Conversation:
    return tuple(Message(m["role"], m["content"]) for m in item.request["messages"])


def request_token_bounds(batch: Sequence[_Item]) -> list[int]:
    return [prompt_token_bound([m["content"] for m in it.request["messages"]]) for it in batch]


def _judge_job(item: _Item, completion: Completion, judge: Judge) -> tuple[str, str, JudgeInput]:
    """(verdict key, judged text, judge input) for a stored answer; raises Undecodable from the attack."""
    extracted = item.scenario.chain.extract(completion.text)
    judge_input = JudgeInput(query=item.attacked.prompt.reference, prompt=item.attacked.text,
                             response=extracted, language=item.attacked.language)
    return content_key("verdict", judge.identity, judge_input.__dict__), extracted, judge_input


def model_dtype(model: ModelBackend) -> str | None:
    """A local model's resolved dtype (its answers depend on it); None for an endpoint, whose dtype is its own."""
    resolved = getattr(model, "resolved_dtype", None)
    return resolved() if callable(resolved) else None


def identity_digest(identity: str) -> str:
    """A model's or judge's identity as stored with a run: a hash, so a URL it holds is never written out."""
    return content_key("identity", identity)[:16]


def check_same_run(existing: RunRecord, new: RunRecord) -> None:
    """Refuse to mix two measurements under one run name."""
    differences = []
    if existing.task != new.task:
        differences.append(f"task '{existing.task}' (this command: '{new.task}')")
    for part, spec in (("model", "model"), ("judge", "judge")):
        before = existing.config.get(f"{part}_identity")
        if before is None:  # a run stored before identities were kept: compare specs
            same = getattr(existing, spec) == getattr(new, spec)
        else:
            same = before == new.config[f"{part}_identity"]
        if not same:
            old_spec, new_spec = getattr(existing, spec), getattr(new, spec)
            differences.append(f"{part} '{old_spec}' (this command: '{new_spec}')" if old_spec != new_spec
                               else f"{part} '{old_spec}' with other weights or settings")
    before, after = existing.config.get("samples", 1), new.config.get("samples", 1)
    if before != after:
        differences.append(f"{before} sample(s) per prompt (this command: {after})")
    if differences:
        raise InputError(f"run '{existing.name}' already holds {'; '.join(differences)}: choose another --run-name, "
                         "or pass --overwrite to replace its items", field="run-name")
