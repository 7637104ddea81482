"""CTRL stage composition and baselines: every plan trains on exactly the sets the method specifies."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from polysafe.defenses.ctrl import run as ctrl_run
from polysafe.defenses.ctrl.run import CtrlRunConfig, build_plans
from polysafe.defenses.ctrl.stages import (compose, mix_in, no_defense, perplexity_drop, random_drop, safety_data)
from polysafe.errors import InputError
from polysafe.types import Message


def convs(prefix: str, n: int):
    return [(Message("user", f"{prefix} q{i}"), Message("assistant", f"{prefix} a{i}")) for i in range(n)]


ATTACK, CURATED, SAFETY = convs("attack", 10), convs("curated", 6), convs("safety", 4)


def shape(plan):
    return [(step.role, Counter(c[0].content.split()[0] for c in step.examples)) for step in plan.steps]


def test_each_stage_composes_its_training_sets():
    assert shape(no_defense(ATTACK)) == [("attack", Counter(attack=10))]
    assert shape(compose("pre", ATTACK, CURATED)) == [("defense", Counter(curated=6)), ("attack", Counter(attack=10))]
    assert shape(compose("in", ATTACK, CURATED)) == [("attack", Counter(attack=10, curated=6))]
    assert shape(compose("post", ATTACK, CURATED)) == [("attack", Counter(attack=10)), ("defense", Counter(curated=6))]
    assert shape(compose("all", ATTACK, CURATED)) == [
        ("defense", Counter(curated=6)), ("attack", Counter(attack=10, curated=6)), ("defense", Counter(curated=6))]


def test_stages_use_every_example_exactly_once_per_step():
    plan = compose("all", ATTACK, CURATED)
    assert set(plan.steps[0].examples) == set(CURATED)
    assert set(plan.steps[1].examples) == set(ATTACK) | set(CURATED) and len(plan.steps[1].examples) == 16
    assert plan.steps[2].examples == plan.steps[0].examples
    with pytest.raises(InputError, match="unknown stage"):
        compose("later", ATTACK, CURATED)


@pytest.mark.parametrize("share,kept", [(0.2, 8), (0.5, 5)])
def test_random_drop_keeps_a_seeded_subset(share, kept):
    plan = random_drop(ATTACK, share, seed=3)
    [step] = plan.steps
    assert len(step.examples) == kept and set(step.examples) <= set(ATTACK)
    assert [ATTACK.index(c) for c in step.examples] == sorted(ATTACK.index(c) for c in step.examples)  # order kept
    assert random_drop(ATTACK, share, seed=3) == plan
    others = {random_drop(ATTACK, share, seed=s).steps[0].examples for s in range(10)}
    assert len(others) > 1  # the seed really chooses
    assert plan.name == f"random-drop-{round(share * 100)}"


@pytest.mark.parametrize("share,dropped", [(0.2, {9, 2}), (0.5, {9, 2, 7, 4, 0})])
def test_perplexity_drop_removes_the_most_perplexing_examples(share, dropped):
    ppl = [5.0, 1.0, 9.0, 2.0, 6.0, 3.0, 1.5, 7.0, 2.5, 10.0]
    [step] = perplexity_drop(ATTACK, ppl, share).steps
    assert set(step.examples) == {c for i, c in enumerate(ATTACK) if i not in dropped}


def test_safety_data_baseline_replaces_curated_texts_at_the_stage():
    plan = safety_data("in", ATTACK, SAFETY)
    assert shape(plan) == [("attack", Counter(attack=10, safety=4))]
    assert plan.name == "safety-data-in"
    assert shape(safety_data("post", ATTACK, SAFETY))[1] == ("defense", Counter(safety=4))


def test_mix_in_gives_the_requested_share():
    benign = convs("benign", 90)
    mixed = mix_in(benign, ATTACK, 0.1, seed=1)
    counts = Counter(c[0].content.split()[0] for c in mixed)
    assert counts == Counter(benign=90, attack=10)
    assert set(mixed) >= set(benign)
    assert mixed != benign + ATTACK  # shuffled
    small = mix_in(benign[:9], ATTACK[:1], 0.25)  # too few harmful examples: cycled
    assert Counter(c[0].content.split()[0] for c in small) == Counter(benign=9, attack=3)
    with pytest.raises(InputError):
        mix_in(benign, ATTACK, 1.0)


def test_build_plans_orders_rows_and_selects_baselines(monkeypatch):
    monkeypatch.setattr(ctrl_run, "attack_perplexities", lambda base, attack: [float(i) for i in range(len(attack))])
    cfg = CtrlRunConfig(base="smollm2", attack=ATTACK, curated=CURATED, harmful=[], benign=[], out_dir=Path("."),
                        stages=("pre", "post"), baselines=("none", "random-drop-50", "ppl-drop-20", "safety-data"),
                        safety=SAFETY, safety_stage="pre")
    plans = build_plans(cfg, log=lambda m: None)
    assert [p.name for p in plans] == ["none", "random-drop-50", "ppl-drop-20", "safety-data-pre", "ctrl-pre", "ctrl-post"]
    assert set(plans[2].steps[0].examples) == set(ATTACK[:8])  # perplexities 8 and 9 are the highest
    assert shape(plans[3]) == [("defense", Counter(safety=4)), ("attack", Counter(attack=10))]
