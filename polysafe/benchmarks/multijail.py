"""MultiJail (Deng et al., ICLR 2024): 315 unsafe prompts in English and nine human translations.

Scenarios: *unintentional* (the prompt alone) and *intentional* (inside an English role-play jailbreak:
polysafe's own, or `template_file`, e.g. the paper's AIM text). With a machine `translator`, the English prompts
are translated by the chain (`translate:<lang>`) instead of using the human translations.
`--judge llm:<spec>` is the paper's three-way judge; `back_translate` translates answers to English first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Sequence

from pydantic import Field, field_validator

from ..attacks.base import AttackContext, parse_chain
from ..engine.runner import EvalTask, Scenario
from ..errors import InputError
from ..judges.base import Judge
from ..models.base import ModelOptions
from ..report.tiers import PAPER_TABLE1
from .base import BENCHMARKS, Benchmark, BenchmarkParams, Reference, split_list

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
    reference = Reference("Deng et al., ICLR 2024, Table 1: unsafe rate % by (model, scenario)", PAPER_TABLE1)
    default_judge = "refusal"
    reports = ("md", "tiers", "html")

    def task(self, params: MultiJailParams) -> EvalTask:  # type: ignore[override]
        from ..languages import parse_languages
        from ..data.multijail import limit_per_language, load_multijail

        codes = parse_languages(",".join(params.languages))
        names = parse_scenarios(params.scenario)
        template = params.template_file
        if params.translator != HUMAN:  # English prompts, translated by the chain
            prompts = limit_per_language(load_multijail(params.data, ["en"]), params.limit)
            jailbreak = f"jailbreak:{template}" if template else "jailbreak"
            multijail_scenarios(names, template)  # validates the names and the template file
            scenarios = [Scenario(name, parse_chain("|".join(
                ([] if code == "en" else [f"translate:{code}"]) + ([jailbreak] if name == "intentional" else [])) or "none"))
                for name in names for code in codes]
        else:
            prompts = limit_per_language(load_multijail(params.data, codes), params.limit)
            scenarios = multijail_scenarios(names, template)
        machine = params.translator != HUMAN
        config = {"dataset": dataset_id(params.data), "languages": codes, "limit_per_language": params.limit,
                  "translator": params.translator, "translation": "machine" if machine else "human",
                  "template": template, "back_translate": params.back_translate,
                  **(template_identity(template) if "intentional" in names else {})}
        return EvalTask(name="multijail", prompts=prompts, scenarios=scenarios, config=config)

    def attack_context(self, params: MultiJailParams, options: ModelOptions) -> AttackContext:  # type: ignore[override]
        from ..translators import load_translator

        return AttackContext(translator=load_translator(params.translator, options=options, data=params.data))

    def wrap_judge(self, judge: Judge, params: MultiJailParams, options: ModelOptions) -> Judge:  # type: ignore[override]
        if not params.back_translate:
            return judge
        from ..translators import load_translator
        from ..judges.backtranslate import BackTranslatingJudge

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


def multijail_scenarios(names: Sequence[str], template: str | None = None) -> list[Scenario]:
    """`unintentional`: the prompt alone. `intentional`: the prompt inside an English role-play jailbreak.

    `template` is a path to a text with a `{prompt}` slot; None uses polysafe's own template.
    """
    scenarios = []
    for name in names:
        if name == "unintentional":
            scenarios.append(Scenario("unintentional", parse_chain("none")))
        elif name == "intentional":
            scenarios.append(Scenario("intentional", parse_chain(f"jailbreak:{template}" if template else "jailbreak")))
        else:
            raise InputError(f"unknown scenario '{name}' (unintentional, intentional, both)", field="scenario")
    return scenarios


def parse_scenarios(value: str) -> list[str]:
    value = value.strip().lower()
    return ["unintentional", "intentional"] if value == "both" else [part.strip() for part in value.split(",") if part.strip()]


def template_identity(template_path: str | None) -> dict:
    """Name and sha256 of the intentional scenario's template text, for the reports' setup block."""
    from ..attacks.jailbreak import POLYSAFE_TEMPLATE, read_template

    text = read_template(template_path) if template_path else POLYSAFE_TEMPLATE
    return {"template_name": Path(template_path).name if template_path else None,
            "template_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}


def dataset_id(data: str | None) -> str:
    """How the run records its data: the hub id, or the resolved path (./x.csv and x.csv are one run)."""
    if not data:
        return "hub:DAMO-NLP-SG/MultiJail"
    return data if data == "hub" or data.startswith("hf:") else str(Path(data).resolve())
