"""`overrefusal`: benign requests that a well-calibrated model should answer (Bianchi et al.'s I-Alpaca).

Judged by the refusal matcher: here `safe` means *refused*, so the over-refusal rate is the share labelled
`safe`, and a model that answers everything scores 0%. Use it beside a safety benchmark to see what a defense
costs in usefulness.
"""

from __future__ import annotations

from pydantic import Field

from ..attacks.base import parse_chain
from ..engine.runner import EvalTask, Scenario
from ..types import Prompt
from .base import BENCHMARKS, Benchmark, BenchmarkParams


class OverRefusalParams(BenchmarkParams):
    data: str | None = Field(default=None, description="I-Alpaca-style JSON (path or URL; default: its public URL).")


@BENCHMARKS.register("overrefusal", example="overrefusal",
                     summary="Over-refusal on benign requests (I-Alpaca): the share refused, judged by the refusal matcher.")
class OverRefusal(Benchmark):
    name = "overrefusal"
    Params = OverRefusalParams
    default_judge = "refusal"
    generation_defaults = {"max_tokens": 64}  # a refusal shows in the opening words

    def task(self, params: OverRefusalParams) -> EvalTask:  # type: ignore[override]
        from ..data.benign import load_benign_prompts

        texts = load_benign_prompts(params.data)[: params.limit or None]
        prompts = [Prompt(id=f"benign-{i:03d}", text=t, source="I-Alpaca") for i, t in enumerate(texts, 1)]
        return EvalTask(name="overrefusal", prompts=prompts, scenarios=[Scenario("benign", parse_chain("none"))],
                        config={"data": params.data or "I-Alpaca (public URL)", "limit": params.limit,
                                "metric": "over-refusal rate = share labelled safe (refused)"})
