"""Judge checks inside the loop: how far the run's judge agrees with a second judge, or with human labels.

- **A second judge** (`--judge-check SPEC`, `--judge-check-n 50`) re-judges a random sample of the run's judged
  answers, drawn with the run's seed (`random.Random(seed)` over the items in run order), so the same command
  draws the same sample. Its verdicts go to the store like any verdict, keyed by its identity and input: a rerun
  asks it nothing.
- **Human labels** (`--labels FILE`, the `prompt, response, label` CSV of `judge-agreement`) are matched to the
  run's items by prompt (the English query or the prompt sent) and response text; rows that match no item are
  counted and left out.

Either way the figures are Cohen's kappa and the agreement rate over the pairs where both sides gave a label
(`judges.agreement`, the code `judge-agreement` uses); an `error` or unjudged answer on either side is counted apart.
Each check is saved in the run's config (`judge_checks`) with its disagreeing items, which reports list and link.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from ..judges.agreement import LabelledExample, cohen_kappa
from ..judges.base import Judge
from ..keys import content_key
from ..types import Verdict
from .dispatch import dispatch
from .progress import Progress
from .store import ResultRow, Store

JUDGED = ("safe", "unsafe", "invalid")
MAX_LISTED = 200  # disagreeing items kept with the run (the figures count them all)


@dataclass(frozen=True)
class Disagreement:
    position: int
    prompt_id: str
    language: str
    scenario: str
    run_label: str  # the run's judge
    other_label: str  # the second judge, or the human label


@dataclass(frozen=True)
class CheckResult:
    kind: str  # judge | labels
    against: str  # the second judge's spec, or the labels file's name
    sampled: int  # items re-judged, or label rows read
    compared: int  # pairs where both sides gave a label
    left_out: int  # errors or unjudged answers on either side (labels: also rows matching no item)
    agreement: float | None
    kappa: float | None
    disagreements: tuple[Disagreement, ...] = ()
    identity: str | None = None  # a digest of the second judge's identity
    seed: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["disagreements"] = [asdict(d) for d in self.disagreements[:MAX_LISTED]]
        data["disagreeing"] = len(self.disagreements)
        return data


def compare_labels(kind: str, against: str, sampled: int, pairs: Sequence[tuple[ResultRow, str]], *,
                   left_out: int = 0, **extra) -> CheckResult:
    """Agreement and kappa of (run row, other label) pairs; pairs with a side not in safe/unsafe/invalid are left out."""
    usable = [(row, other) for row, other in pairs if row.label in JUDGED and other in JUDGED]
    left_out += len(pairs) - len(usable)
    agree = sum(1 for row, other in usable if row.label == other)
    disagreements = tuple(Disagreement(row.position, row.prompt_id, row.language, row.scenario, row.label, other)
                          for row, other in usable if row.label != other)
    return CheckResult(kind, against, sampled, len(usable), left_out,
                       agreement=agree / len(usable) if usable else None,
                       kappa=cohen_kappa([(row.label, other) for row, other in usable]) if usable else None,
                       disagreements=disagreements, **extra)


def sample_rows(rows: Sequence[ResultRow], n: int, seed: int) -> list[ResultRow]:
    """A seeded random sample of the judged rows (all of them when there are at most n), in run order."""
    judged = [row for row in rows if row.label in JUDGED]
    chosen = judged if len(judged) <= n else random.Random(seed).sample(judged, n)
    return sorted(chosen, key=lambda row: row.position)


async def check_with_judge(rows: Sequence[ResultRow], jobs: dict[int, tuple[str, str, object]], judge: Judge,
                           store: Store, *, n: int, seed: int, progress: Progress | None = None) -> CheckResult:
    """Re-judge a sample of `rows` with `judge`. `jobs`: item position -> (verdict key, judged text, JudgeInput)
    under `judge`, for the items whose answer it can read; the verdicts land in the store like the run's own."""
    progress = progress or Progress()
    sample = [row for row in sample_rows(rows, n, seed) if row.position in jobs]
    keys = {row.position: jobs[row.position][0] for row in sample}
    done = store.ok_verdict_keys(keys.values())
    pending, seen = [], set()
    for row in sample:
        key = keys[row.position]
        if key not in done and key not in seen:
            seen.add(key)
            pending.append(jobs[row.position])
    progress.start("judge check", len(pending))
    scale = judge.describe().scale

    async def work(batch):
        return await judge.judge([inp for _, _, inp in batch])

    def on_done(batch, verdicts: list[Verdict]) -> None:
        store.put_verdicts([(key, judge.identity, text if v.judged is None else v.judged, v)
                            for (key, text, _), v in zip(batch, verdicts)], scale=scale.name if scale else None)
        progress.advance("judge check", len(batch))

    await dispatch(pending, work, batch_size=judge.batch_size, concurrency=judge.concurrency, on_done=on_done)
    progress.finish("judge check")
    labels = _verdict_labels(store, keys.values())
    pairs = [(row, labels.get(keys[row.position], "error")) for row in sample]
    return compare_labels("judge", judge.spec, len(sample), pairs, identity=content_key("identity", judge.identity)[:16],
                          seed=seed, notes=(f"random sample of {len(sample)} judged answers (seed {seed})",))


def check_with_labels(rows: Sequence[ResultRow], examples: Sequence[LabelledExample], source: str) -> CheckResult:
    """Human labels matched to the run's items by (prompt or English query, response), both stripped."""
    by_text: dict[tuple[str, str], list[ResultRow]] = {}
    for row in rows:
        for prompt in dict.fromkeys((row.query.strip(), row.prompt.strip())):
            by_text.setdefault((prompt, (row.response or "").strip()), []).append(row)
    pairs, unmatched = [], 0
    for example in examples:
        matched = by_text.get((example.prompt.strip(), example.response.strip()), [])
        unmatched += not matched
        pairs += [(row, example.label) for row in matched]
    notes = (f"{unmatched} of {len(examples)} labelled rows match no item of the run",) if unmatched else ()
    return compare_labels("labels", Path(source).name, len(examples), pairs, left_out=unmatched, notes=notes)


def _verdict_labels(store: Store, keys) -> dict[str, str]:
    # the store's own chunked IN query (SQLite's parameter limit)
    return dict(store._select_in("SELECT key, label FROM verdicts WHERE key IN ({})", list(keys)))


@dataclass(frozen=True)
class JudgeCheck:
    """The checks asked for a run: a second judge on `n` sampled answers, and/or human labels."""

    judge: Judge | None = None
    n: int = 50
    labels: Sequence[LabelledExample] | None = None
    labels_source: str | None = None


__all__ = ["CheckResult", "Disagreement", "JudgeCheck", "check_with_judge", "check_with_labels", "compare_labels",
           "sample_rows"]
