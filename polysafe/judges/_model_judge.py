"""Shared machinery for judges that ask a model: prompt, call with bounded concurrency, parse.

A subclass supplies `build_messages` and `parse`. An answer that `parse` cannot read, or a failed call,
becomes an `error` verdict: never `safe`.
"""

from __future__ import annotations

from typing import Sequence

from ..models.base import ModelBackend, ModelOptions, load_model
from ..types import Completion, Conversation, GenerationConfig, JudgeInput, Message, Verdict
from .base import Judge

# How every model judge shows the exchange it judges; the judges' own wording goes around it.
EXCHANGE = "[REQUEST]\n{query}\n[END REQUEST]\n\n[RESPONSE]\n{response}\n[END RESPONSE]"


class ModelJudge(Judge):
    version = "v1"  # bump when the prompt or the parser changes: it is part of the verdict cache key
    name = "llm"
    generation = GenerationConfig(temperature=0.0, max_tokens=256)

    def __init__(self, model_spec: str, *, options: ModelOptions | None = None, model: ModelBackend | None = None):
        self.model = model or load_model(model_spec, options or ModelOptions())
        self.spec = f"{self.name}:{model_spec}"
        self.identity = f"{self.name}/{self.version}:{self.model.identity}"
        self.batch_size = self.model.batch_size
        self.concurrency = self.model.concurrency

    system: str = ""  # the judge's system message
    template: str = ""  # its user message, with {query} and {response} slots (see EXCHANGE)

    def build_messages(self, item: JudgeInput) -> Conversation:
        response = item.response if item.response.strip() else "(empty response)"
        return (Message("system", self.system), Message("user", self.template.format(query=item.query, response=response)))

    def parse(self, answer: str, item: JudgeInput) -> Verdict | None:
        """The verdict the answer states, or None when it can't be read."""
        raise NotImplementedError

    async def judge(self, items: Sequence[JudgeInput]) -> list[Verdict]:
        completions: list[Completion] = await self.model.generate([self.build_messages(i) for i in items], self.generation)
        verdicts = []
        for item, completion in zip(items, completions):
            if not completion.ok:
                verdicts.append(Verdict.error(f"judge call failed: {completion.error}"))
                continue
            verdict = self.parse(completion.text, item)
            verdicts.append(verdict if verdict is not None else Verdict.error(f"unparseable judge answer: {completion.text[:120]!r}"))
        return verdicts

    async def aclose(self) -> None:
        await self.model.aclose()
