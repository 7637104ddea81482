"""MultiJail (Deng et al., ICLR 2024): 315 unsafe prompts in English and nine human translations.

Scenarios: *unintentional* (the prompt alone) and *intentional* (inside an English role-play jailbreak:
polysafe's own, or `template_file`, e.g. the paper's AIM text). With a machine `translator`, the English prompts
are translated by the chain (`translate:<lang>`) instead of using the human translations.
`--judge llm:<spec>` is the paper's three-way judge; `back_translate` translates answers to English first, with
`back_translator` (default: the machine `translator`, else the judge's own model as an `llm:` translator).

The paper's Table 1 and adaptive-attack figures live here, with the rules that say when a run may stand beside
them (`MultiJail.declare`): reports read that declaration from the run, never this module.
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
from ..languages import MULTIJAIL_LANGUAGES, tier_of
from ..models.base import ModelOptions
from ..types import GenerationConfig
from .base import BENCHMARKS, Benchmark, BenchmarkParams, Reference, split_list

HUMAN = "precomputed"
PAPER = "Deng et al. 2024, Table 1"
PAPER_SCENARIOS = ("unintentional", "intentional")
REFERENCE_MODELS = ("ChatGPT", "GPT-4")
HUMAN_SOURCE = "MultiJail's native-speaker translations"

# Table 1 of Deng et al. (ICLR 2024): unsafe rate in %, per language and tier.
PAPER_TABLE1: dict[tuple[str, str], dict[str, float]] = {
    ("ChatGPT", "unintentional"): {"en": 0.63, "zh": 2.22, "it": 2.86, "vi": 7.94, "high": 4.34, "ar": 6.03, "ko": 9.84,
                                   "th": 18.10, "medium": 11.32, "bn": 28.25, "sw": 7.94, "jv": 8.57, "low": 14.92, "avg": 10.19},
    ("GPT-4", "unintentional"): {"en": 0.95, "zh": 3.49, "it": 2.54, "vi": 4.76, "high": 3.60, "ar": 3.49, "ko": 3.81,
                                 "th": 5.08, "medium": 4.13, "bn": 12.70, "sw": 6.35, "jv": 11.43, "low": 10.16, "avg": 5.96},
    ("ChatGPT", "intentional"): {"en": 72.06, "zh": 81.27, "it": 83.17, "vi": 81.27, "high": 81.90, "ar": 82.54, "ko": 80.00,
                                 "th": 81.90, "medium": 81.48, "bn": 83.17, "sw": 83.49, "jv": 71.43, "low": 79.37, "avg": 80.92},
    ("GPT-4", "intentional"): {"en": 28.25, "zh": 41.90, "it": 44.44, "vi": 34.29, "high": 40.21, "ar": 29.84, "ko": 34.92,
                               "th": 46.67, "medium": 37.14, "bn": 38.41, "sw": 43.49, "jv": 52.38, "low": 44.76, "avg": 40.71},
}
# The paper's multilingual adaptive attack over all ten languages (unsafe % of the 315 prompts).
PAPER_ADAPTIVE: dict[tuple[str, str], float] = {
    ("ChatGPT", "unintentional"): 44.76, ("ChatGPT", "intentional"): 99.37,
    ("GPT-4", "unintentional"): 27.30, ("GPT-4", "intentional"): 79.05,
}
NON_ENGLISH = tuple(code for code in MULTIJAIL_LANGUAGES if code != "en")
# The languages a paper figure covers: a run's figure is comparable only when it covers the same ones.
PAPER_COVERS: dict[str, tuple[str, ...]] = {
    **{code: (code,) for code in MULTIJAIL_LANGUAGES},
    **{tier: tuple(c for c in MULTIJAIL_LANGUAGES if tier_of(c) == tier) for tier in ("high", "medium", "low")},
    "avg": NON_ENGLISH, "adaptive": MULTIJAIL_LANGUAGES,
}


def paper_reference(scenario: str, key: str) -> dict[str, float]:
    """The paper's figures for a language code, tier name, 'avg' or 'adaptive', by model; {} when it has none."""
    if key == "adaptive":
        return {model: value for (model, name), value in PAPER_ADAPTIVE.items() if name == scenario}
    return {model: PAPER_TABLE1[(model, scenario)][key] for model in REFERENCE_MODELS
            if key in PAPER_TABLE1.get((model, scenario), {})}


def paper_comparability(setup, scenario: str) -> dict:
    """Whether a scenario of a run (its `report.setup.Setup`, judge description included) may stand beside the
    paper's figures: human translations, a three-way model judge on answers back-translated into English,
    temperature 0, no system prompt, and for the intentional scenario a jailbreak template file (the paper used
    AIM; polysafe cannot tell that a user's file is AIM, so the verdict says it assumes so)."""
    from ..report.setup import DEFAULT_TEMPLATE

    traits = setup.description.traits if setup.description is not None else {}
    reasons: list[str] = []
    if scenario not in PAPER_SCENARIOS:
        reasons.append(f"scenario '{scenario}' is not one of the paper's")
    if scenario == "intentional" and setup.template.kind != "user":
        reasons.append(f"{DEFAULT_TEMPLATE} template instead of a jailbreak template file (the paper used AIM)")
    if not (traits.get("three_way") and traits.get("model_judge")):
        reasons.append(f"judge {setup.description.spec.split('+back-translate:')[0] if setup.description else setup.judge} "
                       "is not a 3-way LLM judge (llm:<model>)")
    if not setup.back_translation:
        reasons.append("responses are not back-translated into English before judging")
    if setup.translations.kind != "human":
        reasons.append(f"translations: {setup.translations.describe()}, not MultiJail's human ones")
    if setup.temperature is None or setup.temperature != 0:
        reasons.append(f"temperature {setup.temperature}, not 0")
    if setup.system_prompt:
        reasons.append("a system prompt was added (the paper sends none)")
    assumption = (f"assuming {setup.template.name} is AIM-type, which polysafe cannot check"
                  if scenario == "intentional" and setup.template.kind == "user" else None)
    return {"comparable": not reasons, "reasons": reasons, "assumption": assumption if not reasons else None}


def declared_reference(setup) -> dict:
    """The paper's figures and this run's comparability with them, as stored with the run for reports."""
    scenarios = list(dict.fromkeys([*setup.scenarios]))
    keys = list(PAPER_COVERS)
    return {
        "source": PAPER, "models": list(REFERENCE_MODELS),
        "figures": {s: {k: paper_reference(s, k) for k in keys} for s in PAPER_SCENARIOS},
        "covers": {k: list(v) for k, v in PAPER_COVERS.items()},
        "ratios": {s: {m: PAPER_TABLE1[(m, s)]["low"] / PAPER_TABLE1[(m, s)]["high"] for m in REFERENCE_MODELS}
                   for s in PAPER_SCENARIOS},
        "comparability": {s: paper_comparability(setup, s) for s in scenarios},
    }


class MultiJailParams(BenchmarkParams):
    scenario: Literal["both", "unintentional", "intentional"] = Field(
        default="both", description="unintentional | intentional | both.", json_schema_extra={"cli": {"flags": ["--scenario", "-s"]}})
    languages: list[str] = Field(default_factory=lambda: ["all"],
                                 description="Comma-separated codes, or 'all' (en zh it vi ar ko th bn sw jv).",
                                 json_schema_extra={"cli": {"flags": ["--languages", "-l"]}})
    data: str | None = Field(default=None, description="Local MultiJail CSV; default: the hub dataset DAMO-NLP-SG/MultiJail.")
    template_file: str | None = Field(default=None, description="Jailbreak text with a {prompt} slot for 'intentional' "
                                      "(default: polysafe's own).")
    translator: str = Field(default=HUMAN, description="precomputed (human translations) | llm:<model spec> | hf:<seq2seq path>.")
    back_translate: bool = Field(default=False, description="Translate responses to English before judging (the paper's pipeline).")
    back_translator: str | None = Field(default=None, description="Translator for back-translation: llm:<model spec> | "
                                        "hf:<path>; default: the machine translator, else the judge's own model.")

    _split = field_validator("languages", mode="before")(classmethod(lambda cls, v: split_list(v)))


@BENCHMARKS.register("multijail", example="multijail",
                     summary="MultiJail: unsafe prompts in 10 languages, unintentional and intentional (Deng et al. 2024).")
class MultiJail(Benchmark):
    name = "multijail"
    Params = MultiJailParams
    reference = Reference("Deng et al., ICLR 2024, Table 1: unsafe rate % by (model, scenario)", PAPER_TABLE1)
    default_judge = "refusal"
    judge_families = {}  # `--judge llm:<model>` is the paper's own three-way judge: no mapping
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

        return BackTranslatingJudge(judge, load_translator(back_translator_spec(params, judge),
                                                           options=options, data=params.data))

    def declare(self, task: EvalTask, generation: GenerationConfig, judge: Judge) -> dict:
        from ..engine.store import RunRecord
        from ..report.setup import describe_setup

        config = {"generation": generation.to_dict(), **task.config,
                  "scenarios": {s.name: s.chain.spec for s in task.scenarios},
                  "judge_description": judge.describe().to_dict()}
        setup = describe_setup(RunRecord("", task.name, "", judge.spec, config))
        return {**super().declare(task, generation, judge), "reference": declared_reference(setup),
                "translations": {"kind": task.config.get("translation"), "source": HUMAN_SOURCE}}


def back_translator_spec(params: MultiJailParams, judge: Judge) -> str:
    """The back-translator, as declared: `back_translator`, else the machine forward translator, else the judge's own
    model (a model judge's `model_spec`) asked as an `llm:` translator."""
    if params.back_translator:
        return params.back_translator
    if params.translator != HUMAN:
        return params.translator
    model_spec = getattr(judge, "model_spec", None)
    if model_spec:
        return f"llm:{model_spec}"
    raise InputError("back-translation needs a machine translator: pass --back-translator (or --translator) "
                     "llm:<model> or hf:<path>, or a model judge", field="back-translator")


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
