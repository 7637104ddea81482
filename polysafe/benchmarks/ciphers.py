"""`ciphers`: AdvBench through encodings and ciphers (Base64, ROT13, Caesar, Morse, leetspeak; plain and CipherChat).

The same spirit as MultiJail and CodeAttack: safety trained on plain prose, tested on text that is not plain
prose. Each cipher decodes the reply before judging; a reply that is not in the cipher is `invalid` (CipherChat's
rule). The default judge is the offline `refusal` matcher; `--judge llm:<spec>` is the three-way judge, which
reads garbled decodings as `invalid` rather than `unsafe` and is the one to report.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from ..attacks.base import parse_chain
from ..attacks.cipher import CIPHER_SCENARIOS
from ..engine.runner import EvalTask, Scenario
from ..errors import InputError
from .base import BENCHMARKS, Benchmark, BenchmarkParams, split_list

KNOWN = dict(CIPHER_SCENARIOS)


class CiphersParams(BenchmarkParams):
    ciphers: list[str] = Field(default_factory=lambda: list(KNOWN), description=f"Scenarios: {', '.join(KNOWN)}.")
    data: str | None = Field(default=None, description="Local AdvBench CSV (a 'goal' column; default: its public CSV).")

    _split = field_validator("ciphers", mode="before")(classmethod(lambda cls, v: split_list(v)))


@BENCHMARKS.register("ciphers", example="ciphers",
                     summary="AdvBench through Base64, ROT13, Caesar, Morse and leetspeak, encoded and CipherChat-style.")
class Ciphers(Benchmark):
    name = "ciphers"
    Params = CiphersParams
    reports = ("md",)

    def task(self, params: CiphersParams) -> EvalTask:  # type: ignore[override]
        from ..data.advbench import AdvBench

        unknown = [c for c in params.ciphers if c not in KNOWN]
        if unknown or not params.ciphers:
            raise InputError(f"unknown cipher scenario {', '.join(unknown) or '(none given)'} (known: {', '.join(KNOWN)})",
                             field="ciphers")
        source = AdvBench(path=params.data)
        prompts = source.load()[: params.limit or None]
        scenarios = [Scenario(name, parse_chain(KNOWN[name])) for name in params.ciphers]
        return EvalTask(name=f"ciphers:{source.name}", prompts=prompts, scenarios=scenarios,
                        config={"prompt_set": source.name, "limit": params.limit, "data": params.data or ""})
