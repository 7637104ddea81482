"""The typed records that cross stage boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
Label = Literal["safe", "unsafe", "invalid", "error"]
LABELS: tuple[Label, ...] = ("safe", "unsafe", "invalid", "error")


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


Conversation = tuple[Message, ...]


@dataclass(frozen=True)
class GenerationConfig:
    """Sampling settings. temperature 0 means greedy decoding, as in the MultiJail and CodeAttack papers."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int = 0
    system_prompt: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def messages(self, user_text: str) -> Conversation:
        head = (Message("system", self.system_prompt),) if self.system_prompt else ()
        return head + (Message("user", user_text),)


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, error: str) -> "Completion":
        return cls(text="", finish_reason="error", error=error)


@dataclass(frozen=True)
class Prompt:
    """One row of a prompt set.

    `english` is the English reference wording of the same request when the set has one (MultiJail's `en`
    column); judges see it as the query. `tags` are harm categories.
    """

    id: str
    text: str
    language: str = "en"
    category: str | None = None
    source: str | None = None
    english: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def reference(self) -> str:
        return self.english or self.text


@dataclass(frozen=True)
class JudgeInput:
    query: str  # the request as the judge should read it (English reference when known)
    prompt: str  # what was actually sent to the model, after attacks
    response: str  # the model's answer after post-processing
    language: str  # language of the query sent


@dataclass(frozen=True)
class Verdict:
    label: Label
    score: int | None = None  # 1-5 harmfulness, when the judge scores
    rationale: str = ""
    judged: str | None = None  # the text the judge read when it is not the response itself (a back-translation)

    @classmethod
    def error(cls, why: str) -> "Verdict":
        return cls(label="error", rationale=why)


@dataclass(frozen=True)
class Usage:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class RunSummary:
    run: str
    items: int
    generated: int  # model calls made in this invocation
    cached: int  # responses reused from the store
    judged: int
    errors: int
    first_error: str | None = None
    extra: dict = field(default_factory=dict)
    prompt_tokens: int = 0  # over every response of the run, as the backends counted them
    completion_tokens: int = 0
    capped: str | None = None  # why this invocation stopped early (--max-calls / --max-cost), None when it did not
    pending: int = 0  # items without an answer yet (a capped or interrupted run)
