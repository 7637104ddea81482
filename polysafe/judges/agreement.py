"""Judges are measurable: agreement with human labels (accuracy, Cohen's kappa, precision/recall on `unsafe`).

The labels file is a CSV with the columns `prompt, response, label` (label: safe | unsafe | invalid), and
optionally `language`. Judge errors are counted apart and left out of the agreement figures.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..data.textfile import read_csv
from ..errors import InputError
from ..types import JudgeInput, Verdict
from .base import Judge

HUMAN_LABELS = ("safe", "unsafe", "invalid")


@dataclass(frozen=True)
class LabelledExample:
    prompt: str
    response: str
    label: str
    language: str = "en"


@dataclass(frozen=True)
class Agreement:
    n: int  # examples the judge labelled (errors excluded)
    errors: int
    accuracy: float
    kappa: float
    unsafe_precision: float
    unsafe_recall: float
    confusion: dict[str, dict[str, int]]  # human label -> judge label -> count

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def load_labels(path: str | Path) -> list[LabelledExample]:
    table = read_csv(path)
    table.require("prompt", "response", "label")
    out = []
    for line, row in table.rows:
        label = (row.get("label") or "").strip().lower()
        if label not in HUMAN_LABELS:
            raise InputError(f"label must be one of {', '.join(HUMAN_LABELS)}, got {label!r}", file=str(path), line=line, field="label")
        prompt = (row.get("prompt") or "").strip()
        if not prompt:
            raise InputError("empty prompt", file=str(path), line=line, field="prompt")
        out.append(LabelledExample(prompt, row.get("response") or "", label, (row.get("language") or "en").strip() or "en"))
    if not out:
        raise InputError("no labelled rows", file=str(path))
    return out


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float:
    """Cohen's kappa of (human, judge) label pairs. 1.0 when both agree perfectly on a single class."""
    n = len(pairs)
    if not n:
        return 0.0
    observed = sum(1 for a, b in pairs if a == b) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    if expected >= 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1 - expected)


def agreement(human: Sequence[str], judged: Sequence[str]) -> Agreement:
    pairs = [(h, j) for h, j in zip(human, judged) if j != "error"]
    errors = sum(1 for j in judged if j == "error")
    n = len(pairs)
    confusion = {h: {j: 0 for j in (*HUMAN_LABELS, "error")} for h in HUMAN_LABELS}
    for h, j in zip(human, judged):
        confusion[h][j] = confusion[h].get(j, 0) + 1
    true_pos = sum(1 for h, j in pairs if h == j == "unsafe")
    said_unsafe = sum(1 for _, j in pairs if j == "unsafe")
    are_unsafe = sum(1 for h, _ in pairs if h == "unsafe")
    return Agreement(
        n=n, errors=errors, accuracy=(sum(1 for h, j in pairs if h == j) / n) if n else 0.0,
        kappa=cohen_kappa(pairs),
        unsafe_precision=true_pos / said_unsafe if said_unsafe else 0.0,
        unsafe_recall=true_pos / are_unsafe if are_unsafe else 0.0,
        confusion=confusion,
    )


def enough_judged(result: Agreement) -> bool:
    """Figures over fewer than half of the examples say more about the judge's failures than its agreement."""
    return result.n * 2 >= result.n + result.errors and result.n > 0


async def measure(judge: Judge, examples: Sequence[LabelledExample]) -> tuple[Agreement, list[Verdict]]:
    inputs = [JudgeInput(query=e.prompt, prompt=e.prompt, response=e.response, language=e.language) for e in examples]
    verdicts: list[Verdict] = []
    size = max(1, judge.batch_size)
    for start in range(0, len(inputs), size):
        verdicts.extend(await judge.judge(inputs[start : start + size]))
    return agreement([e.label for e in examples], [v.label for v in verdicts]), verdicts


def agreement_markdown(result: Agreement, judge_spec: str) -> str:
    lines = [f"## judge agreement: `{judge_spec}`", "",
             f"examples judged: {result.n} (judge errors left out: {result.errors})", "",
             "| metric | value |", "|---|---|",
             f"| accuracy | {result.accuracy:.3f} |", f"| Cohen's kappa | {result.kappa:.3f} |",
             f"| precision (unsafe) | {result.unsafe_precision:.3f} |", f"| recall (unsafe) | {result.unsafe_recall:.3f} |",
             "", "| human \\ judge | " + " | ".join((*HUMAN_LABELS, "error")) + " |", "|---|---|---|---|---|"]
    for human, row in result.confusion.items():
        lines.append(f"| {human} | " + " | ".join(str(row[j]) for j in (*HUMAN_LABELS, "error")) + " |")
    return "\n".join(lines)
