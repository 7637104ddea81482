"""Scoring text under a local model: per-example perplexity of an answer given its prompt.

Only the answer's tokens count (the prompt is context). Used by CTRL's curation and by usefulness checks.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..types import Message
from .local import LocalCausalLM


def answer_spans(backend: LocalCausalLM, query: str | None, answer: str, *, chat: bool = True) -> tuple[list[int], int]:
    """Token ids of (prompt + answer) and the index where the answer starts."""
    tok = backend.tokenizer
    if query is None:
        ids = tok(answer, add_special_tokens=False)["input_ids"]
        return ids, 0
    if chat:
        prefix = backend.render((Message("user", query),))
        full = prefix + answer
    else:
        prefix, full = query, query + answer
    prefix_ids = tok(prefix, add_special_tokens=False)["input_ids"]
    full_ids = tok(full, add_special_tokens=False)["input_ids"]
    return full_ids, len(prefix_ids)


def answer_nll(backend: LocalCausalLM, pairs: Sequence[tuple[str | None, str]], *, batch_size: int = 16, chat: bool = True) -> list[tuple[float, int]]:
    """(summed negative log-likelihood in nats, number of answer tokens) for each (query, answer)."""
    import torch

    from ._lowered import within_float16

    model = backend.model
    encoded = [answer_spans(backend, q, a, chat=chat) for q, a in pairs]
    results: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    pad = backend.tokenizer.pad_token_id or 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(encoded[i][0]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):  # right padding: positions stay those of an unpadded sequence
            seq = encoded[i][0]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        with torch.inference_mode():
            logits = within_float16(model, lambda: model(input_ids=ids.to(model.device),
                                                         attention_mask=mask.to(model.device)).logits.float())
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = ids[:, 1:].to(logprobs.device)
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, i in enumerate(chunk):
            seq, answer_start = encoded[i]
            first = max(answer_start, 1)  # the first token has no prediction
            span = token_lp[row, first - 1 : len(seq) - 1]
            results[i] = (float(-span.sum()), int(span.numel()))
    return results


def perplexity(backend: LocalCausalLM, pairs: Sequence[tuple[str | None, str]], *, batch_size: int = 16, chat: bool = True) -> list[float]:
    """exp(mean NLL of the answer tokens) per pair; inf for an empty answer."""
    return [math.exp(nll / n) if n else math.inf for nll, n in answer_nll(backend, pairs, batch_size=batch_size, chat=chat)]


def corpus_perplexity(backend: LocalCausalLM, pairs: Sequence[tuple[str | None, str]], *, batch_size: int = 16, chat: bool = True) -> float:
    """Token-weighted perplexity over a whole set."""
    scored = answer_nll(backend, pairs, batch_size=batch_size, chat=chat)
    tokens = sum(n for _, n in scored)
    return math.exp(sum(nll for nll, _ in scored) / tokens) if tokens else math.inf
