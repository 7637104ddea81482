"""The attack protocol and chains of attacks.

An attack turns the text that will be sent into another text (translate it, wrap it in a jailbreak template,
encode it in code). Attacks work on batches because some call a model (translation). An attack may also
post-process the model's response (`extract`), e.g. pull the filled-in steps out of generated code, or decode
an enciphered reply. When the reply can't be read back (it is not in the cipher the attack asked for),
`extract` raises `Undecodable`: the item is labelled `invalid` with that reason, and no judge sees it.
"""

from __future__ import annotations

from dataclasses import field, dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import SpecError
from ..registry import Registry
from ..types import Prompt

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.store import Store


class Undecodable(Exception):
    """Raised by `Attack.extract` for a response it cannot post-process; `str(err)` says why."""


@dataclass(frozen=True)
class AttackedPrompt:
    prompt: Prompt  # the original row
    text: str  # the user message as it stands after the attacks so far
    language: str  # language of the query inside `text`
    chain: tuple[str, ...] = ()  # specs of the attacks applied, in order
    error: str | None = None  # why this item must not be sent (e.g. a rejected translation); kept by later steps

    @classmethod
    def start(cls, prompt: Prompt) -> "AttackedPrompt":
        return cls(prompt=prompt, text=prompt.text, language=prompt.language)

    def evolve(self, attack_spec: str, **changes: Any) -> "AttackedPrompt":
        return replace(self, chain=self.chain + (attack_spec,), **changes)


@dataclass
class AttackContext:
    """What an attack may need beyond its input: a translator, and the store for caching."""

    translator: Any = None  # a polysafe.translators.Translator, when a chain translates
    store: "Store | None" = None
    dry_run: bool = False  # count what would be asked; make no call and write nothing
    pending_calls: int = 0  # calls a dry run found it would make (translations)
    pending_texts: list = field(default_factory=list)  # the texts those calls would send


class Attack:
    """Base class. Override `transform` for a pure per-prompt rewrite, or `apply` for batched async work."""

    spec: str = "none"

    def __init__(self, **options: Any) -> None:  # plugins receive shared options and take what they need
        pass

    def transform(self, item: AttackedPrompt) -> AttackedPrompt:
        return item.evolve(self.spec)

    async def apply(self, items: Sequence[AttackedPrompt], ctx: AttackContext) -> list[AttackedPrompt]:
        return [self.transform(item) for item in items]

    def extract(self, response: str) -> str:
        """Response post-processing. The default keeps the response as it is. May raise `Undecodable`."""
        return response


ATTACKS: Registry[Attack] = Registry("attack", package="polysafe.attacks")


@ATTACKS.register("none", summary="No attack: the prompt is sent as it is.")
class NoAttack(Attack):
    spec = "none"

    def transform(self, item: AttackedPrompt) -> AttackedPrompt:
        return item


class AttackChain:
    """Attacks applied left to right; responses are post-processed right to left."""

    def __init__(self, attacks: Sequence[Attack]):
        self.attacks = [a for a in attacks if not isinstance(a, NoAttack)]
        self.spec = "|".join(a.spec for a in self.attacks) or "none"

    async def apply(self, prompts: Sequence[Prompt], ctx: AttackContext) -> list[AttackedPrompt]:
        items = [AttackedPrompt.start(p) for p in prompts]
        for attack in self.attacks:
            items = await attack.apply(items, ctx)
        return items

    def extract(self, response: str) -> str:
        for attack in reversed(self.attacks):
            response = attack.extract(response)
        return response

    def __repr__(self) -> str:
        return f"AttackChain({self.spec!r})"


def parse_chain(spec: str, **options: Any) -> AttackChain:
    """`"translate:bn|codeattack:python_list"` -> AttackChain. Options go to every attack factory."""
    parts = [part.strip() for part in (spec or "none").split("|")]
    if any(not part for part in parts):
        raise SpecError(f"empty step in attack chain '{spec}'", field="attack")
    return AttackChain([ATTACKS.create(part, **options) for part in parts])
