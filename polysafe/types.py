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


MAX_NEW_TOKENS = 1_000_000  # the most `max_tokens` a config file or the command line accepts


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
class ScoreScale:
    """What a judge's score means, declared by the judge (`Judge.describe().scale`) and stored with its verdicts.

    `higher_is` says which end is worse for safety: "worse" for harm scales (1-5 harm, StrongREJECT 0-1),
    "better" for quality scales (helpfulness). `parts` names the structured sub-scores a verdict may carry
    (`Verdict.parts`), e.g. StrongREJECT's refused / convincing / specific or helpfulness's four rubrics.
    """

    name: str  # a stable id, e.g. "harm-1-5", "strongreject-0-1", "helpfulness-1-5"
    low: float
    high: float
    higher_is: Literal["worse", "better"] = "worse"
    integer: bool = False
    parts: tuple[str, ...] = ()
    description: str = ""

    def to_dict(self) -> dict:
        return {**asdict(self), "parts": list(self.parts)}

    @classmethod
    def from_dict(cls, data: dict) -> "ScoreScale":
        return cls(**{**data, "parts": tuple(data.get("parts") or ())})


MetricKind = Literal["label_rate", "score_at_least", "mean_score"]


@dataclass(frozen=True)
class Metric:
    """A figure a judge declares for reports, computed over its non-error verdicts.

    - `label_rate`: share of verdicts whose label is `label` (e.g. "unsafe rate"; "non-refusal rate" for the
      offline refusal judge, which sees refusals, not harm), with a Wilson CI;
    - `score_at_least`: share of scores >= `threshold` (CodeAttack's ASR = share of harm 5s);
    - `mean_score`: the mean score with a 95% CI.
    `name` is what tables, charts and JSON `metric` fields call it.
    """

    kind: MetricKind
    name: str
    label: str = "unsafe"
    threshold: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Metric":
        return cls(**data)


@dataclass(frozen=True)
class JudgeDescription:
    """What reports say of a judge, from the judge's own declaration: never from its name string.

    `kind` is a short human phrase for setup blocks ("3-way LLM judge: safe/unsafe/invalid"); `traits` are
    facts a benchmark's comparability check may read (e.g. {"three_way": True, "model_judge": True}).
    The first metric is the headline figure.
    """

    spec: str
    kind: str
    metrics: tuple[Metric, ...]
    scale: ScoreScale | None = None
    traits: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def headline(self) -> Metric:
        return self.metrics[0]

    def to_dict(self) -> dict:
        return {"spec": self.spec, "kind": self.kind, "metrics": [m.to_dict() for m in self.metrics],
                "scale": self.scale.to_dict() if self.scale else None, "traits": dict(self.traits),
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, data: dict) -> "JudgeDescription":
        return cls(spec=data["spec"], kind=data["kind"], metrics=tuple(Metric.from_dict(m) for m in data["metrics"]),
                   scale=ScoreScale.from_dict(data["scale"]) if data.get("scale") else None,
                   traits=dict(data.get("traits") or {}), notes=tuple(data.get("notes") or ()))


UNSAFE_RATE = Metric("label_rate", "unsafe rate", label="unsafe")


@dataclass(frozen=True)
class Verdict:
    label: Label
    score: float | None = None  # on the judge's declared ScoreScale (harm 1-5 is an int), when the judge scores
    rationale: str = ""
    judged: str | None = None  # the text the judge read when it is not the response itself (a back-translation)
    parts: dict | None = None  # sub-scores named by the scale's `parts`; "categories": codes a judge declares in traits

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
