"""CodeAttack (Ren et al., ACL 2024): the harmful query hidden in a data structure inside a code-completion task.

One scenario per variant (or per attack chain ending in one). Prompts: AdvBench by default, `multijail` for
code x language on human translations, or a prompt file. `--judge llm:<spec>` is the 1-5 harmfulness judge
(ASR = share of 5s), as the paper judges: declared in `judge_families`.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from ..attacks.base import AttackContext, parse_chain
from ..engine.runner import EvalTask, Scenario
from ..errors import InputError
from ..models.base import ModelOptions
from .base import BENCHMARKS, Benchmark, BenchmarkParams, Reference, resolved, split_list, translator_spec

PAPER_VARIANTS = ["python_string", "python_list", "python_stack", "cpp_string", "go_string"]
# Ren et al. (ACL 2024): ASR % (share of harmfulness 5, GPT-4 judge), one trial, by encoding and model.
PAPER_ASR = {
    "string": {"GPT-3.5": 94, "GPT-4-0613": 22, "GPT-4-1106": 12, "Claude-1": 89, "Claude-2": 24, "Llama-2-7b": 33,
               "Llama-2-70b": 40, "CodeLlama-70b": 93},
    "list": {"GPT-3.5": 92, "GPT-4-0613": 28, "GPT-4-1106": 32, "Claude-1": 87, "Claude-2": 36, "Llama-2-7b": 88,
             "Llama-2-70b": 90, "CodeLlama-70b": 93},
    "stack": {"GPT-3.5": 84, "GPT-4-0613": 80, "GPT-4-1106": 81, "Claude-1": 84, "Claude-2": 84, "Llama-2-7b": 54,
              "Llama-2-70b": 70, "CodeLlama-70b": 82},
}


class CodeAttackParams(BenchmarkParams):
    variants: list[str] = Field(default_factory=lambda: list(PAPER_VARIANTS),
                                description="Comma-separated: python_string, python_list, python_stack, cpp_string, "
                                "go_string (+ python_*_plus).", json_schema_extra={"cli": {"flags": ["--variants", "-v"]}})
    attacks: list[str] = Field(default_factory=list, description="An attack chain instead of --variants, e.g. "
                               "'translate:sw|codeattack:python_stack'; repeatable.",
                               json_schema_extra={"cli": {"flags": ["--attack", "-a"], "repeat": True}})
    prompt_set: str = Field(default="advbench", description="advbench (public CSV) | multijail (hub) | file:<path>.")
    data: str | None = Field(default=None, description="Local copy of the prompt set: AdvBench CSV with a 'goal' column, "
                             "or MultiJail CSV.")
    prompts: str | None = Field(default=None, description="A polysafe prompt file (id, text [, language, category]) "
                                "instead of the prompt set.", json_schema_extra={"cli": {"flags": ["--prompts", "-p"]}})
    languages: list[str] = Field(default_factory=list, description="Only these languages, e.g. 'en,bn,sw' (prompt sets "
                                 "with languages).", json_schema_extra={"cli": {"flags": ["--languages", "-l"]}})
    translator: str | None = Field(default=None, description="For translate: steps: llm:<model spec> | hf:<path>.")

    _split = field_validator("variants", "languages", mode="before")(classmethod(lambda cls, v: split_list(v)))


@BENCHMARKS.register("codeattack", example="codeattack",
                     summary="CodeAttack: harmful requests encoded in Python/C++/Go data structures (Ren et al. 2024).")
class CodeAttack(Benchmark):
    name = "codeattack"
    Params = CodeAttackParams
    reference = Reference("Ren et al., ACL 2024: ASR % (share of 5s) by encoding (Python) and model", PAPER_ASR)
    default_judge = "refusal"
    judge_families = {"llm": "harm"}  # a model judge here is the paper's 1-5 harmfulness judge (Qi et al. rubric)
    reports = ("scores",)
    generation_defaults = {"max_tokens": 512}  # the paper's targets answered with 512-1000 new tokens

    def declare(self, task, generation, judge) -> dict:
        declared = super().declare(task, generation, judge)
        if task.config.get("prompt_set") == "multijail" and not task.config.get("translator"):
            declared["translations"] = {"kind": "human", "source": "MultiJail's native-speaker translations"}
        return declared

    def task(self, params: CodeAttackParams) -> EvalTask:  # type: ignore[override]
        from ..attacks.codeattack import get_variant
        from ..data import PROMPT_SETS
        from ..languages import parse_languages
        from ..data.multijail import limit_per_language
        from ..data.prompts import FilePromptSet

        if params.data and params.prompts:
            raise InputError("give data (a prompt-set CSV) or prompts (a polysafe prompt file), not both", field="prompts")
        if params.attacks:
            scenarios = [Scenario(chain.spec, chain) for chain in map(parse_chain, params.attacks)]
        else:
            if not params.variants:
                raise InputError("no variant given", field="variants")
            scenarios = [Scenario(get_variant(n).name, parse_chain(f"codeattack:{get_variant(n).name}")) for n in params.variants]
        if len({s.name for s in scenarios}) != len(scenarios):
            raise InputError("the same variant or chain is given twice", field="variants")
        codes = parse_languages(",".join(params.languages)) if params.languages else None
        name, argument = PROMPT_SETS.split(params.prompt_set)
        if params.prompts or name == "file":
            source = FilePromptSet(params.prompts or argument)
        else:  # specs are checked before this: loading may download
            source = PROMPT_SETS.create(params.prompt_set, path=params.data, source=params.data, languages=codes)
        rows = limit_per_language(source.load(), params.limit)
        if codes:
            rows = [p for p in rows if p.language in codes]
        if not rows:
            raise InputError(f"no prompts in {', '.join(codes or [])}", field="languages")
        config = {"prompt_set": source.name, "limit": params.limit, "data": resolved(params.data or params.prompts),
                  "languages": codes, "translator": translator_spec(params.attacks, params.translator)}
        return EvalTask(name=f"codeattack:{source.name}", prompts=rows, scenarios=scenarios, config=config)

    def attack_context(self, params: CodeAttackParams, options: ModelOptions) -> AttackContext:  # type: ignore[override]
        if translator_spec(params.attacks, params.translator) is None:
            return AttackContext()
        from ..translators import load_translator

        data = params.data if params.prompt_set == "multijail" else None
        return AttackContext(translator=load_translator(translator_spec(params.attacks, params.translator) or "precomputed",
                                                        options=options, data=data))

