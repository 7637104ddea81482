"""Which training sets each defense trains on, and in what order. Pure functions: no model is touched.

A plan is a sequence of fine-tuning steps applied one after the other to the released model:
- none:  attack
- pre:   defense(curated) -> attack
- in:    attack(attack + curated)
- post:  attack -> defense(curated)
- all:   defense(curated) -> attack(attack + curated) -> defense(curated)
Baselines change the attacker's data only: random drop (20% / 50%), perplexity drop (the 20% / 50% with the
highest perplexity under the released model), or explicit safety data (Bianchi et al.) in place of the
curated texts, at the chosen stage.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Sequence

from ...errors import InputError
from ...types import Conversation

Stage = Literal["pre", "in", "post", "all"]
STAGES: tuple[Stage, ...] = ("pre", "in", "post", "all")
BASELINES = ("none", "random-drop-20", "random-drop-50", "ppl-drop-20", "ppl-drop-50", "safety-data")
Role = Literal["defense", "attack"]


@dataclass(frozen=True)
class Step:
    role: Role
    examples: tuple[Conversation, ...]


@dataclass(frozen=True)
class Plan:
    name: str  # the row of the report
    steps: tuple[Step, ...]


def compose(stage: Stage, attack: Sequence[Conversation], defense: Sequence[Conversation], *, name: str | None = None) -> Plan:
    """The training steps for a defense applied at `stage` with `defense` data (curated texts or safety pairs)."""
    attack, defense = tuple(attack), tuple(defense)
    if stage == "pre":
        steps = (Step("defense", defense), Step("attack", attack))
    elif stage == "in":
        steps = (Step("attack", attack + defense),)
    elif stage == "post":
        steps = (Step("attack", attack), Step("defense", defense))
    elif stage == "all":
        steps = (Step("defense", defense), Step("attack", attack + defense), Step("defense", defense))
    else:
        raise InputError(f"unknown stage '{stage}' (known: {', '.join(STAGES)})", field="stage")
    return Plan(name or f"ctrl-{stage}", steps)


def no_defense(attack: Sequence[Conversation]) -> Plan:
    return Plan("none", (Step("attack", tuple(attack)),))


def random_drop(attack: Sequence[Conversation], share: float, *, seed: int = 0) -> Plan:
    """Drop round(share x n) attack examples chosen at random (seeded); the rest keep their order."""
    _check_share(share)
    n_drop = round(share * len(attack))
    dropped = set(random.Random(seed).sample(range(len(attack)), n_drop))
    kept = tuple(c for i, c in enumerate(attack) if i not in dropped)
    return Plan(f"random-drop-{round(share * 100)}", (Step("attack", kept),))


def perplexity_drop(attack: Sequence[Conversation], perplexities: Sequence[float], share: float) -> Plan:
    """Drop the round(share x n) attack examples with the highest perplexity (ties: the later example goes)."""
    _check_share(share)
    if len(perplexities) != len(attack):
        raise ValueError("one perplexity per attack example")
    n_drop = round(share * len(attack))
    by_ppl = sorted(range(len(attack)), key=lambda i: (perplexities[i], i), reverse=True)
    dropped = set(by_ppl[:n_drop])
    kept = tuple(c for i, c in enumerate(attack) if i not in dropped)
    return Plan(f"ppl-drop-{round(share * 100)}", (Step("attack", kept),))


def safety_data(stage: Stage, attack: Sequence[Conversation], safety_pairs: Sequence[Conversation]) -> Plan:
    return compose(stage, attack, safety_pairs, name=f"safety-data-{stage}")


def _check_share(share: float) -> None:
    if not 0 <= share < 1:
        raise InputError(f"drop share must be in [0, 1) (got {share})", field="share")


def mix_in(benign: Sequence[Conversation], harmful: Sequence[Conversation], share: float, *, seed: int = 0) -> list[Conversation]:
    """A customization set where harmful examples make up `share` of the total: all of `benign`, plus
    round(share / (1 - share) x len(benign)) harmful examples (cycled if there are too few), shuffled (seeded)."""
    if not 0 < share < 1:
        raise InputError(f"--share must be in (0, 1) (got {share})", field="share")
    if not harmful:
        raise InputError("no harmful examples to mix in", field="data")
    n_harmful = max(1, round(share / (1 - share) * len(benign)))
    chosen = [harmful[i % len(harmful)] for i in range(n_harmful)]
    mixed = list(benign) + chosen
    random.Random(seed).shuffle(mixed)
    return mixed
