"""Usefulness checks for a defended model: over-refusal on benign requests, and perplexity on benign answers.

Safety tuning trades usefulness for safety (Self-Defense, CTRL, Bianchi et al.); these two numbers make the
cost visible. Benign requests default to Bianchi et al.'s I-Alpaca (50 Alpaca instructions, CC BY-NC 4.0).
"""

from __future__ import annotations

import asyncio
import json
from typing import Sequence

from ..data.benign import I_ALPACA_URL, load_benign_prompts
from ..engine.executor import Executor
from ..engine.runner import EvalTask, Scenario, run_eval
from ..engine.store import ResultRow, Store
from ..errors import InputError
from ..keys import content_key
from ..judges.refusal import RefusalJudge
from ..models import load_model
from ..models.base import ModelBackend
from ..models.scoring import corpus_perplexity
from ..report.metrics import Rate
from ..types import Conversation, GenerationConfig, JudgeInput, Prompt

# A refusal shows in the opening words, so short answers are enough and keep CPU runs quick.
OVER_REFUSAL_GEN = GenerationConfig(temperature=0.0, max_tokens=64)


def _backend(model: str | ModelBackend) -> ModelBackend:
    return load_model(model) if isinstance(model, str) else model


async def over_refusal_async(model: str | ModelBackend, prompts: Sequence[str], *, gen: GenerationConfig = OVER_REFUSAL_GEN) -> Rate:
    backend = _backend(model)
    conversations: list[Conversation] = [gen.messages(p) for p in prompts]
    completions = []
    step = max(1, backend.batch_size)
    for start in range(0, len(conversations), step):
        completions.extend(await backend.generate(conversations[start : start + step], gen))
    judge = RefusalJudge()
    answered = [(p, c) for p, c in zip(prompts, completions) if c.ok]
    verdicts = await judge.judge([JudgeInput(query=p, prompt=p, response=c.text, language="en") for p, c in answered])
    refused = sum(1 for v in verdicts if v.label == "safe")  # the refusal judge's "safe" = a refusal phrase
    return Rate.of(refused, len(answered))


def over_refusal(model: str | ModelBackend, prompts: Sequence[str], *, gen: GenerationConfig = OVER_REFUSAL_GEN) -> Rate:
    """Share of benign requests that the model refuses (refusal judge), with a Wilson 95% interval.

    Failed generations are left out of the denominator. Call `over_refusal_async` from async code.
    """
    return asyncio.run(over_refusal_async(model, prompts, gen=gen))


def refusal_rate(rows: Sequence[ResultRow]) -> Rate:
    """Share of answered benign prompts that the refusal judge marks as refused (its `safe`)."""
    answered = [r for r in rows if r.label in ("safe", "unsafe", "invalid")]
    return Rate.of(sum(1 for r in answered if r.label == "safe"), len(answered))


async def over_refusal_run(backend: ModelBackend, prompts: Sequence[str], store: Store, *, run_name: str,
                           gen: GenerationConfig = OVER_REFUSAL_GEN, executor: Executor | None = None) -> tuple[Rate, list[ResultRow]]:
    """Over-refusal as a stored run: answers and verdicts are kept, so asking again costs no model call.
    Returns the rate and the rows (the answers, e.g. for a helpfulness rating)."""
    from ..attacks import parse_chain
    from ..judges import load_judge

    task = EvalTask("usefulness:benign", [Prompt(id=f"benign-{i}", text=t) for i, t in enumerate(prompts)],
                    [Scenario("none", parse_chain("none"))])
    await run_eval(task, backend, load_judge("refusal"), store, gen=gen, run_name=run_name, executor=executor)
    rows = store.results(run_name)
    return refusal_rate(rows), rows


def benign_perplexity_cached(backend: ModelBackend, pairs: Sequence[tuple[str | None, str]], store: Store) -> float:
    """`benign_perplexity`, computed once per (model identity, pairs) and kept in the store."""
    key = content_key("benign-ppl", backend.identity, [list(p) for p in pairs])
    stored = store.memoize("benign-ppl", [key], lambda missing: {key: json.dumps(benign_perplexity(backend, pairs))})
    return float(json.loads(stored[key]))


def benign_perplexity(backend: str | ModelBackend, pairs: Sequence[tuple[str | None, str]]) -> float:
    """Token-weighted perplexity of benign answers given their requests (answer tokens only)."""
    if not pairs:
        raise InputError("no benign (request, answer) pairs to score", field="benign")
    return corpus_perplexity(_backend(backend), pairs)  # type: ignore[arg-type]


def pairs_from_conversations(conversations: Sequence[Conversation]) -> list[tuple[str | None, str]]:
    """(last user message, final assistant answer) of each conversation, for `benign_perplexity`."""
    pairs = []
    for conversation in conversations:
        users = [m.content for m in conversation if m.role == "user"]
        if conversation and conversation[-1].role == "assistant":
            pairs.append((users[-1] if users else None, conversation[-1].content))
    return pairs


__all__ = ["I_ALPACA_URL", "load_benign_prompts", "over_refusal", "over_refusal_async", "over_refusal_run", "refusal_rate",
           "benign_perplexity", "benign_perplexity_cached", "pairs_from_conversations"]
