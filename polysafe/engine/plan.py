"""`--dry-run`: every call a run would make, by kind (model, judge, translation, back-translation), found
without asking anything, with upper bounds on the tokens each kind would be billed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..attacks.base import AttackContext, Undecodable
from ..judges.base import Judge
from ..judges.backtranslate import needs_translation
from ..models.base import ModelBackend
from ..types import GenerationConfig, JudgeInput
from .cost import prompt_token_bound
from .runner import EvalTask, _judge_job, build_items
from .store import Store

LANGUAGE_NAMES = 64  # tokens the two language names may add to a translation instruction
READ_BACK = 2  # an answer of max_tokens tokens, read by another model's tokenizer: at most this many times as many


@dataclass(frozen=True)
class CallGroup:
    """One kind of call a run would make, on one model."""

    kind: str  # model | judge | translation | back-translation
    spec: str | None  # the model that answers it (prices it), None for a local or offline one
    calls: int
    stored: int
    prompt_tokens: int  # upper bound
    completion_tokens: int  # upper bound: max_tokens for every call


@dataclass(frozen=True)
class RunPlan:
    items: int
    groups: tuple[CallGroup, ...]

    def group(self, kind: str) -> CallGroup | None:
        return next((g for g in self.groups if g.kind == kind), None)

    def calls(self, kind: str) -> int:
        group = self.group(kind)
        return group.calls if group else 0

    # The counts by their older names (the library's API).
    model_calls = property(lambda self: self.calls("model"))
    stored_responses = property(lambda self: self.group("model").stored)
    judge_calls = property(lambda self: self.calls("judge"))
    stored_verdicts = property(lambda self: self.group("judge").stored if self.group("judge") else 0)
    other_calls = property(lambda self: self.calls("translation"))


def judge_model(judge: Judge) -> tuple[Any, Any]:
    """(the judge that asks a model, its back-translator or None); the first is None for an offline judge."""
    inner = getattr(judge, "inner", judge)  # a back-translating wrapper keeps the judge it wraps as `inner`
    asks = inner if getattr(inner, "model", None) is not None else None
    return asks, getattr(judge, "translator", None)


async def plan_eval(task: EvalTask, model: ModelBackend, judge: Judge, store: Store | None, *,
                    gen: GenerationConfig, ctx: AttackContext, samples: int = 1) -> RunPlan:
    """Count the calls a run would make; `store` is read only (None: nothing stored yet). No call is made."""
    dry = AttackContext(translator=ctx.translator, store=store, dry_run=True)
    items = await build_items(task, model, gen, dry, samples)
    unique: dict = {}
    for item in items:
        if not item.attacked.error:
            unique.setdefault(item.record.response_key, item)
    stored = store.ok_response_keys(unique) if store is not None else set()
    responses = store.get_responses(stored) if store is not None else {}
    missing = [item for key, item in unique.items() if key not in stored]
    groups = [CallGroup("model", model.spec, len(missing), len(stored),
                        sum(prompt_token_bound([m["content"] for m in it.request["messages"]]) for it in missing),
                        len(missing) * gen.max_tokens)]
    if dry.pending_calls:
        translator = ctx.translator
        groups.append(_translation_group("translation", translator, dry.pending_texts, 0))

    asks, back = judge_model(judge)
    # What the judge would read: the stored answers not judged yet, and every answer still to come.
    to_judge: dict[str, tuple[JudgeInput | None, Any]] = {}
    for item in items:
        completion = responses.get(item.record.response_key)
        if completion is not None:
            try:
                key, _, judge_input = _judge_job(item, completion, judge)
            except Undecodable:
                continue
            to_judge.setdefault(key, (judge_input, item))
    judged = store.ok_verdict_keys(to_judge) if store is not None else set()
    waiting = [(inp, it) for key, (inp, it) in to_judge.items() if key not in judged]
    waiting += [(None, it) for it in missing]  # answers still to come, each judged once
    if asks is not None:
        groups.append(CallGroup("judge", asks.model.spec, len(waiting), len(judged),
                                sum(_judge_prompt_bound(asks, inp, it, gen) for inp, it in waiting),
                                len(waiting) * asks.generation.max_tokens))
    else:
        groups.append(CallGroup("judge", None, 0, len(judged), 0, 0))
    if back is not None and getattr(back, "makes_calls", True):
        texts = [(inp.response if inp is not None else None) for inp, it in waiting
                 if (needs_translation(inp) if inp is not None else it.attacked.language != "en")]
        groups.append(_translation_group("back-translation", back, texts, gen.max_tokens))
    return RunPlan(items=len(items), groups=tuple(groups))


def _judge_prompt_bound(asks: Any, inp: JudgeInput | None, item: Any, gen: GenerationConfig) -> int:
    """The judge's own messages for a stored answer; for an answer still to come, its messages around an empty
    response, plus the longest answer read back by another tokenizer."""
    if inp is None:
        inp = JudgeInput(query=item.attacked.prompt.reference, prompt=item.attacked.text, response="",
                         language=item.attacked.language)
        extra = READ_BACK * gen.max_tokens
    else:
        extra = 0
    return prompt_token_bound([m.content for m in asks.build_messages(inp)]) + extra


def _translation_group(kind: str, translator: Any, texts: Sequence[str | None], answer_tokens: int) -> CallGroup:
    """`texts`: what each call translates; None for an answer not given yet (bounded by `answer_tokens`)."""
    from ..translators import TranslationRequest

    backend = getattr(translator, "model", None)
    max_tokens = getattr(getattr(translator, "generation", None), "max_tokens", 1024)
    conversation = getattr(translator, "conversation", None)
    prompt = 0
    for text in texts:
        request = TranslationRequest(text=text or "", source="en", target="en")
        messages = [m.content for m in conversation(request)] if conversation else [text or ""]
        prompt += prompt_token_bound(messages) + LANGUAGE_NAMES + (READ_BACK * answer_tokens if text is None else 0)
    return CallGroup(kind, getattr(backend, "spec", None), len(texts), 0, prompt, len(texts) * max_tokens)
