"""`file`: a user's own prompt file (CSV or JSONL: id, text [, language, category]) through any attack chain."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..attacks.base import AttackContext, parse_chain
from ..engine.runner import EvalTask, Scenario
from ..models.base import ModelOptions
from .base import BENCHMARKS, Benchmark, BenchmarkParams, resolved, translator_spec


class FileParams(BenchmarkParams):
    prompts: str = Field(description="CSV or JSONL with id, text [, language, category].",
                         json_schema_extra={"cli": {"flags": ["--prompts", "-p"]}})
    attack: str = Field(default="none", description="Attack chain, e.g. 'none' or 'translate:bn|codeattack:python_list'.",
                        json_schema_extra={"cli": {"flags": ["--attack", "-a"]}})
    translator: str | None = Field(default=None, description="For translate: steps: llm:<model spec> | hf:<seq2seq path>.")


@BENCHMARKS.register("file", example="file", summary="Your own prompt file through any attack chain.")
class PromptFile(Benchmark):
    name = "file"
    reports = ("md", "html")
    Params = FileParams

    def task(self, params: FileParams) -> EvalTask:  # type: ignore[override]
        from ..data.prompts import load_prompt_file

        path = Path(params.prompts)
        rows = load_prompt_file(path)[: params.limit or None]
        chain = parse_chain(params.attack)
        return EvalTask(name=f"file:{path.name}", prompts=rows, scenarios=[Scenario(chain.spec, chain)],
                        config={"prompts": resolved(params.prompts), "limit": params.limit,
                                "translator": translator_spec([params.attack], params.translator)})

    def attack_context(self, params: FileParams, options: ModelOptions) -> AttackContext:  # type: ignore[override]
        spec = translator_spec([params.attack], params.translator)
        if spec is None:
            return AttackContext()
        from ..translators import load_translator

        return AttackContext(translator=load_translator(spec, options=options))
