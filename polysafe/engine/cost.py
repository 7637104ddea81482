"""Knowing the cost before paying it: token prices, call and cost caps.

Prices are US dollars per million tokens (input, output). The shipped table covers a few well-known models and
is dated; `--price-in/--price-out` override it for any model. Estimates are upper bounds: each call uses its
whole `max_tokens`, and a prompt has at most one token per UTF-8 byte of its messages (byte-level BPE and
byte-fallback tokenizers never make a token smaller than a byte) plus a few per message for the chat format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

PRICES_AS_OF = "2026-11"
PRICES: dict[str, tuple[float, float]] = {  # model name -> ($ per 1M input tokens, $ per 1M output tokens)
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4-0613": (30.00, 60.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo-0613": (1.50, 2.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}


@dataclass(frozen=True)
class Price:
    per_million_in: float
    per_million_out: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.per_million_in + completion_tokens * self.per_million_out) / 1e6


def price_for(model_spec: str, price_in: float | None = None, price_out: float | None = None) -> Price | None:
    """The given prices, else the shipped table's for `openai:<name>[@url]`; None when unknown."""
    if price_in is not None or price_out is not None:
        return Price(price_in or 0.0, price_out or 0.0)
    name = model_spec.partition(":")[2].partition("@")[0] if model_spec.startswith("openai:") else ""
    known = PRICES.get(name)
    return Price(*known) if known else None


MESSAGE_OVERHEAD = 8  # tokens a chat format adds per message and for the reply (OpenAI's: 3 and 3)


def prompt_token_bound(messages: Sequence[str]) -> int:
    """At most how many prompt tokens a request with these message texts is billed: the one estimate of polysafe
    (dry runs and the cost cap both use it)."""
    return sum(len(text.encode("utf-8")) + MESSAGE_OVERHEAD for text in messages) + MESSAGE_OVERHEAD


class Budget:
    """Caps on the calls and the cost of one invocation; the cost cap is never passed.

    `admit(prompt_tokens)` is asked before a batch starts, with each request's `prompt_token_bound`: it reserves the
    batch's worst case (every call using its whole `max_tokens`) and says no once the calls, or the money spent
    plus reserved by every batch in flight, would pass a cap. `settle(prompt_tokens, usage)` replaces the
    reservation with what the answers really used. Both run on the event loop, so concurrent batches never race.
    """

    def __init__(self, *, max_calls: int | None = None, max_cost: float | None = None, price: Price | None = None,
                 max_tokens: int = 0):
        self.max_calls, self.max_cost, self.price, self.max_tokens = max_calls, max_cost, price, max_tokens
        self.calls = 0
        self.spent = 0.0
        self.reserved = 0.0
        self.capped = False
        self.why = ""

    def _worst(self, requests: Sequence[int]) -> float:
        return sum(self.price.cost(tokens, self.max_tokens) for tokens in requests) if self.price else 0.0

    def admit(self, requests: Sequence[int]) -> bool:
        if self.capped:
            return False
        worst = self._worst(requests)
        if self.max_calls is not None and self.calls + len(requests) > self.max_calls:
            self.capped, self.why = True, f"--max-calls {self.max_calls} reached ({self.calls} calls made)"
        elif self.max_cost is not None and self.price is not None and self.spent + self.reserved + worst > self.max_cost:
            self.capped = True
            self.why = (f"--max-cost ${self.max_cost:g} reached (${self.spent:.4f} spent; the next batch could cost "
                        f"up to ${worst:.4f})")
        if not self.capped:
            self.calls += len(requests)
            self.reserved += worst
        return not self.capped

    def settle(self, requests: Sequence[int], usage: list[tuple[int, int]]) -> None:
        self.reserved = max(0.0, self.reserved - self._worst(requests))
        if self.price is not None:
            self.spent += sum(self.price.cost(p, c) for p, c in usage)

    def reason(self) -> str:
        return self.why
