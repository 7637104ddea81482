"""What produced a run, as every report states it, and whether it is comparable with a paper.

`describe_setup(run, rows)` reads the run's stored config (and, when given, its rows for the share of responses
cut at max_tokens) and returns a `Setup`: `.lines()` for text reports, `.to_dict()` for JSON, `.subtitle()` for
charts, and `.paper_comparability(scenario)` for the verdict that gates the paper's reference figures.

Everything here comes from declarations stored with the run, never from plugin names: the judge's kind from its
`describe()`, the translations from what the benchmark recorded, and the paper's figures with their
comparability verdicts from the benchmark's own `declare()` (see `declared`).
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field
from typing import Sequence

from ..engine.store import ResultRow, RunRecord
from ..types import JudgeDescription
from .declared import Comparability, Reference, judge_description, reference
from .judge_checks import check_line, stored_checks

DEFAULT_TEMPLATE = "polysafe default role-play"
HUMAN_DEFAULT = "the prompt set's own translations"


@dataclass(frozen=True)
class Template:
    kind: str  # user | default | none
    name: str | None = None
    sha256: str | None = None

    def describe(self) -> str:
        if self.kind == "none":
            return "none (no jailbreak template; the attack chains below shape the prompts)"
        digest = f"sha256 {self.sha256[:12]}" if self.sha256 else "sha256 not recorded"
        return f"{DEFAULT_TEMPLATE} ({digest})" if self.kind == "default" else f"user template {self.name} ({digest})"


@dataclass(frozen=True)
class Translations:
    kind: str  # human | machine | unrecorded | none
    translator: str | None = None
    source: str | None = None  # who made human translations, as the benchmark declared it

    def describe(self) -> str:
        if self.kind == "human":
            return f"human ({self.source or HUMAN_DEFAULT})"
        if self.kind == "machine":
            return f"machine ({self.translator or 'translator not recorded'})"
        if self.kind == "unrecorded":
            return "translate: steps, translator not recorded (a run stored before translators were recorded)"
        return "none (prompts as given)"


@dataclass(frozen=True)
class Truncation:
    """Responses whose generation stopped at max_tokens (finish_reason 'length'), among those received."""

    stopped_at_limit: int
    responses: int

    @property
    def share(self) -> float:
        return self.stopped_at_limit / self.responses if self.responses else 0.0

    def describe(self) -> str:
        if not self.responses:
            return "no responses yet"
        return f"{self.stopped_at_limit} of {self.responses} responses ({100 * self.share:.1f}%)"


@dataclass(frozen=True)
class Setup:
    run: str
    task: str
    model: str
    scenarios: tuple[str, ...]
    template: Template
    chains: tuple[str, ...]  # the attack chains the scenarios applied
    translations: Translations
    judge: str  # the full spec, back-translation included
    judge_kind: str  # the judge's own words for what it is (its describe().kind)
    back_translation: bool
    back_translator: str | None
    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    seed: int | None
    system_prompt: str | None
    precision: str | None = None  # local models' numerics (float32, bf16-amx, ...), as in the model identity
    truncation: Truncation | None = None
    usage: str | None = None  # tokens of the run's responses, and their cost when the model's price is known
    capped: str | None = None  # why the last invocation stopped early (--max-calls / --max-cost)
    judge_checks: tuple[str, ...] = ()  # kappa and agreement against a second judge or human labels
    samples: int = 1  # answers per prompt (--samples K), sample i drawn with seed + i
    notes: tuple[str, ...] = field(default_factory=tuple)
    description: JudgeDescription | None = None  # the judge's declaration: kind, scale, metrics
    reference: Reference | None = None  # the paper's figures, as the benchmark declared them with the run
    pending: int = 0  # items without an answer or a verdict yet (an interrupted or capped run)
    items: int = 0

    def incomplete(self) -> str | None:
        if not self.pending:
            return None
        return (f"INCOMPLETE: {self.pending} of {self.items} items pending (no answer or verdict yet); the figures "
                "cover only the rest, until the same command is run again")

    def paper_comparability(self, scenario: str) -> Comparability:
        """Whether this scenario's figures may be put beside the paper's, as the benchmark judged it at run time."""
        if self.reference is None:
            return Comparability(scenario, False, ("no paper reference was declared with this run",))
        return self.reference.comparability.get(scenario) or Comparability(
            scenario, False, (f"scenario '{scenario}' is not one of the paper's",))

    def comparability(self) -> list[Comparability]:
        return [self.paper_comparability(s) for s in self.scenarios] if self.reference is not None else []

    def lines(self) -> list[str]:
        """The setup block, one 'name: value' line each."""
        out = [f"model: {self.model}, numerics {self.precision}"] if self.precision else []
        out.append(f"template: {self.template.describe()}")
        if self.chains:
            out.append(f"attack chains: {', '.join(self.chains)}")
        out += [
            f"translations: {self.translations.describe()}",
            f"judge: {self.judge} ({self.judge_kind})",
            f"back-translation: {'on (' + (self.back_translator or 'translator not recorded') + ')' if self.back_translation else 'off'}",
            f"generation: temperature {_number(self.temperature)}, max_tokens {_number(self.max_tokens)}, "
            f"top_p {_number(self.top_p)}, seed {_number(self.seed)}, "
            + ("system prompt set" if self.system_prompt else "no system prompt"),
        ]
        if self.samples > 1:
            first = self.seed or 0
            out.append(f"sampling: {self.samples} answers per prompt, seeds {first}..{first + self.samples - 1}")
        if self.truncation is not None:
            out.append(f"stopped at max_tokens: {self.truncation.describe()}")
        if self.usage:
            out.append(f"tokens: {self.usage}")
        if self.capped:
            out.append(f"CAPPED: {self.capped}; the run is incomplete until it is run again")
        out += list(self.judge_checks)
        if self.pending:
            out.append(self.incomplete())
        if self.description is not None and self.description.scale is not None:
            scale = self.description.scale
            out.append(f"score scale: {scale.name}, {scale.low:g}-{scale.high:g}, higher is {scale.higher_is}"
                       + (f" ({scale.description})" if scale.description else ""))
        if self.description is not None:
            out.append("metrics: " + ", ".join(m.name for m in self.description.metrics)
                       + "".join(f"; {note}" for note in self.description.notes))
        if self.reference is not None:
            out += [f"paper reference ({self.reference.source}), {c.line()}" for c in self.comparability()]
        out += list(self.notes)
        return out

    def markdown(self) -> str:
        return "Setup:\n" + "\n".join(f"- {line}" for line in self.lines())

    def subtitle(self, width: int = 120) -> str:
        """A compact version for chart subtitles, wrapped to `width` characters."""
        parts = [f"INCOMPLETE: {self.pending} of {self.items} items pending"] if self.pending else []
        parts += [f"template: {self.template.describe()}", f"translations: {self.translations.kind}",
                 f"judge: {self.judge}", f"back-translation {'on' if self.back_translation else 'off'}",
                 f"temperature {_number(self.temperature)}, max_tokens {_number(self.max_tokens)}"]
        if self.truncation is not None and self.truncation.responses:
            parts.append(f"{100 * self.truncation.share:.1f}% stopped at max_tokens")
        return "\n".join(textwrap.wrap(" · ".join(parts), width))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["description"] = self.description.to_dict() if self.description else None
        data["reference"] = ({"source": self.reference.source, "models": list(self.reference.models)}
                             if self.reference else None)
        data["template"]["description"] = self.template.describe()
        data["translations"]["description"] = self.translations.describe()
        if self.truncation is not None:
            data["truncation"]["share"] = self.truncation.share
        data["paper_comparability"] = {c.scenario: {"comparable": c.comparable, "reasons": list(c.reasons),
                                                    "assumption": c.assumption} for c in self.comparability()}
        data["lines"] = self.lines()
        return data


def _number(value: float | int | None) -> str:
    if value is None:
        return "not recorded"
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_setup(run: RunRecord, rows: Sequence[ResultRow] | None = None) -> Setup:
    """The setup block of a stored run; pass its rows to include the share of responses cut at max_tokens."""
    config = run.config or {}
    chains_by_scenario = config.get("scenarios") or {}
    scenarios = tuple(dict.fromkeys(r.scenario for r in rows)) if rows else tuple(chains_by_scenario)
    chains = tuple(dict.fromkeys(chains_by_scenario.values()))
    if rows:
        chains = tuple(dict.fromkeys([*chains, *(r.chain for r in rows)]))
    generation = config.get("generation") or {}
    description = judge_description(run, rows)
    back_translator = description.traits.get("back_translator")
    return Setup(
        run=run.name, task=run.task, model=run.model, scenarios=scenarios,
        template=_template(config, chains), chains=chains, translations=_translations(config, chains),
        judge=run.judge, judge_kind=description.kind,
        back_translation=bool(description.traits.get("back_translated") or config.get("back_translate")),
        back_translator=back_translator or None, temperature=generation.get("temperature"), top_p=generation.get("top_p"),
        max_tokens=generation.get("max_tokens"), seed=generation.get("seed"), system_prompt=generation.get("system_prompt"),
        precision=config.get("precision"),
        truncation=truncation(rows) if rows is not None else None,
        usage=usage(run, rows) if rows else None, capped=config.get("capped"), samples=config.get("samples", 1),
        description=description, reference=reference(run),
        judge_checks=tuple(check_line(c) for c in stored_checks(run)),
        pending=sum(1 for r in rows or () if r.label == "pending"), items=len(rows or ()),
    )


def usage(run: RunRecord, rows: Sequence[ResultRow]) -> str:
    """Prompt and completion tokens as the backends counted them, with the cost when a price is known."""
    from ..engine.cost import PRICES_AS_OF, price_for

    prompt, completion = sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows)
    price = price_for(run.model)
    cost = (f"; cost ≈ ${price.cost(prompt, completion):.4f} at shipped prices as of {PRICES_AS_OF}" if price else "")
    return f"prompt {prompt}, completion {completion}{cost}"


def truncation(rows: Sequence[ResultRow]) -> Truncation:
    received = [r for r in rows if r.response is not None and r.error is None]
    return Truncation(sum(1 for r in received if r.finish_reason == "length"), len(received))


def _jailbreak_steps(chains: Sequence[str]) -> list[str]:
    return [step.strip() for chain in chains for step in chain.split("|")
            if step.strip() == "jailbreak" or step.strip().startswith("jailbreak:")]


def _template(config: dict, chains: Sequence[str]) -> Template:
    steps = _jailbreak_steps(chains)
    if not steps:
        return Template("none")
    step = steps[0]
    if step == "jailbreak":
        return Template("default", DEFAULT_TEMPLATE, config.get("template_sha256") if not config.get("template") else None)
    path = step.split(":", 1)[1]
    recorded = config.get("template") == path
    name = (config.get("template_name") if recorded else None) or path.replace("\\", "/").rsplit("/", 1)[-1]
    return Template("user", name, config.get("template_sha256") if recorded else None)


def _translations(config: dict, chains: Sequence[str]) -> Translations:
    declared = (config.get("benchmark") or {}).get("translations") or {}
    kind = config.get("translation") or declared.get("kind")
    if kind in ("human", "machine"):
        return Translations(kind, config.get("translator") if kind == "machine" else None, declared.get("source"))
    if any(step.strip().startswith("translate:") for chain in chains for step in chain.split("|")):
        translator = config.get("translator")
        if translator == "precomputed":
            return Translations("human", source=declared.get("source"))
        return Translations("machine", translator) if translator else Translations("unrecorded")
    return Translations("none")


__all__ = ["Setup", "Comparability", "Template", "Translations", "Truncation", "describe_setup", "truncation",
           "DEFAULT_TEMPLATE"]
