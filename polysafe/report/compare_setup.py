"""What makes runs unlike for like: every setup difference between the runs a comparison puts side by side.

A comparison is only as good as the runs' likeness. `setup_differences` names each setting that differs between
the runs (generation config, judge, prompt set, template, translations, model weights or dtype behind one model
name) and each run that is not a finished measurement (CAPPED, incomplete, or without any verdict). `compare`
states them in a warning on stderr and a note in every format; `--strict` refuses to compare.
Models and attack chains are what comparisons usually vary, so they are listed with the runs, not as differences.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from .base import ReportInput
from .setup import describe_setup, truncation

JUDGED = ("safe", "unsafe", "invalid")


def prompt_set(data: ReportInput) -> str:
    """The run's source prompts (id and reference text, languages aside) as a count and a short hash."""
    pairs = sorted({(row.prompt_id, row.query) for row in data.rows})
    digest = hashlib.sha256("\x00".join(f"{i}\x01{q}" for i, q in pairs).encode()).hexdigest()[:12]
    return f"{len(pairs)} prompts, sha256 {digest}"


def _facts(data: ReportInput) -> dict[str, str]:
    setup = describe_setup(data.run, data.rows)
    config = data.run.config or {}
    return {
        "task": data.run.task,
        "prompt set": prompt_set(data),
        "template": setup.template.describe(),
        "translations": setup.translations.describe(),
        "judge": data.run.judge,
        "judge identity (version, rubric or judge model)": str(config.get("judge_identity", "not recorded")),
        "temperature": str(setup.temperature), "top_p": str(setup.top_p), "max_tokens": str(setup.max_tokens),
        "seed": str(setup.seed), "system prompt": "set" if setup.system_prompt else "none",
    }


def run_state(data: ReportInput) -> str | None:
    """Why a run is not a finished measurement, or None."""
    pending = sum(1 for row in data.rows if row.label == "pending")
    judged = sum(1 for row in data.rows if row.label in JUDGED)
    capped = (data.run.config or {}).get("capped")
    states = []
    if capped:
        states.append(f"CAPPED ({capped})")
    if pending:
        states.append(f"incomplete: {pending} of {len(data.rows)} items pending")
    if not judged:
        states.append("empty: no judged answer")
    return "; ".join(states) or None


def truncation_share(data: ReportInput) -> str:
    return truncation(data.rows).describe()


def setup_differences(inputs: Sequence[ReportInput]) -> tuple[str, ...]:
    facts = [_facts(data) for data in inputs]
    names = [data.run.name for data in inputs]
    out = []
    for key in facts[0]:
        values = [f[key] for f in facts]
        if len(set(values)) > 1:
            out.append(f"{key} differs: " + ", ".join(f"{n}: {v}" for n, v in zip(names, values)))
    by_model: dict[str, set[str]] = {}
    for data in inputs:
        by_model.setdefault(data.run.model, set()).add(str((data.run.config or {}).get("model_identity")))
    out += [f"model {model} differs in weights, dtype or endpoint between the runs"
            for model, identities in by_model.items() if len(identities) > 1]
    out += [f"run {data.run.name} is {state}" for data in inputs if (state := run_state(data))]
    return tuple(out)
