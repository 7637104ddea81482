"""MultiJail (Deng et al., ICLR 2024): 315 unsafe prompts in English and nine human translations.

Scenarios: *unintentional* (the prompt alone) and *intentional* (inside an English role-play jailbreak:
polysafe's own, or `template_file`, e.g. the paper's AIM text). With a machine `translator`, the English prompts
are translated by the chain (`translate:<lang>`) instead of using the human translations.
`--judge llm:<spec>` is the paper's three-way judge; `back_translate` translates answers to English first.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ..attacks.base import AttackContext, parse_chain
from ..engine.runner import EvalTask, Scenario
from ..errors import InputError
from ..judges.base import Judge
from ..models.base import ModelOptions
from .base import BENCHMARKS, Benchmark, BenchmarkParams, split_list

HUMAN = "precomputed"


class MultiJailParams(BenchmarkParams):
    scenario: Literal["both", "unintentional", "intentional"] = "both"
    languages: list[str] = Field(default_factory=lambda: ["all"], description="Language codes, or 'all'.")
    data: str | None = Field(default=None, description="Local MultiJail CSV (default: the hub dataset).")
    template_file: str | None = Field(default=None, description="Jailbreak text with a {prompt} slot for 'intentional'.")
    translator: str = Field(default=HUMAN, description="precomputed (human) | llm:<model spec> | hf:<seq2seq path>.")
    back_translate: bool = False

    _split = field_validator("languages", mode="before")(classmethod(lambda cls, v: split_list(v)))


@BENCHMARKS.register("multijail", example="multijail",
                     summary="MultiJail: unsafe prompts in 10 languages, unintentional and intentional (Deng et al. 2024).")
class MultiJail(Benchmark):
    name = "multijail"
    Params = MultiJailParams
    default_judge = "refusal"
    reports = ("md", "tiers", "html")

    def task(self, params: MultiJailParams) -> EvalTask:  # type: ignore[override]
        from ..data.languages import parse_languages
        from ..data.multijail import limit_per_language, load_multijail, multijail_scenarios, parse_scenarios

        codes = parse_languages(",".join(params.languages))
        names = parse_scenarios(params.scenario)
        template = params.template_file
        if params.translator != HUMAN:
            prompts = limit_per_language(load_multijail(params.data, ["en"]), params.limit)
            jailbreak = f"jailbreak:{template}" if template else "jailbreak"
            multijail_scenarios(names, template)  # validates the names and the template file
            scenarios = [Scenario(name, parse_chain("|".join(
                ([] if code == "en" else [f"translate:{code}"]) + ([jailbreak] if name == "intentional" else [])) or "none"))
                for name in names for code in codes]
        else:
            prompts = limit_per_language(load_multijail(params.data, codes), params.limit)
            scenarios = multijail_scenarios(names, template)
        config = {"dataset": params.data or "hub:DAMO-NLP-SG/MultiJail", "languages": codes,
                  "limit_per_language": params.limit, "translator": params.translator, "template": template,
                  "back_translate": params.back_translate}
        return EvalTask(name="multijail", prompts=prompts, scenarios=scenarios, config=config)

    def attack_context(self, params: MultiJailParams, options: ModelOptions) -> AttackContext:  # type: ignore[override]
        from ..data.translation import load_translator

        return AttackContext(translator=load_translator(params.translator, options=options, data=params.data))

    def wrap_judge(self, judge: Judge, params: MultiJailParams, options: ModelOptions) -> Judge:  # type: ignore[override]
        if not params.back_translate:
            return judge
        from ..data.translation import load_translator
        from ..judges.llm import BackTranslatingJudge

        return BackTranslatingJudge(judge, load_translator(back_translator_spec(params.translator, judge.spec),
                                                           options=options, data=params.data))


def back_translator_spec(translator: str, judge_spec: str) -> str:
    """Back-translation needs a machine translator: the forward one, else the judge's own model."""
    if translator != HUMAN:
        return translator
    if judge_spec.startswith("llm:"):
        return "llm:" + judge_spec[len("llm:"):]
    raise InputError("back-translation needs a machine translator: pass --translator llm:<model> or hf:<path>",
                     field="translator")
