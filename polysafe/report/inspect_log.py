"""A stored run as an inspect_ai eval log, so `inspect view --log-dir DIR` lists polysafe runs beside others.

The log is built with inspect_ai's own log API (`EvalLog`, `EvalSpec`, `EvalSample`, `Score`) and written by its
`write_eval_log`; polysafe writes no part of the format itself. A run's K sampled answers per prompt are its
epochs. Each sample carries the prompt sent, the answer, the verdict as a score (1 when the judge's declared rate
metric counts the answer, else 0; errors and pending items are unscored) and polysafe's metadata: language,
scenario, chain, the English source, what the judge read, its label and rationale, finish reason and tokens.
The log carries the model, the
generation config, the judge, token totals and the results' metrics (every figure the judge declares, the
standard error of its rate, the error rate), which the viewer shows as the run's summary.

inspect_ai is an optional extra (`pip install 'polysafe[inspect]'`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from pathlib import Path
from typing import Sequence

from ..engine.store import ResultRow, RunRecord
from ..errors import PolysafeError
from ..types import Metric
from .declared import counts, judge_description, rate_metric, rate_of

SCORER = "polysafe"
PROVENANCE_KEYS = ("generation", "scenarios", "model_identity", "judge_identity", "model_dtype", "capped", "benchmark",
                   "judge_description")  # metadata, not task arguments
JUDGED = ("safe", "unsafe", "invalid")
STOP_REASONS = {"stop": "stop", "length": "max_tokens"}


def declared_metrics(run: RunRecord, rows: Sequence[ResultRow]) -> tuple[Metric | None, dict[str, float]]:
    """The judge's rate metric (what a sample's score counts) and every figure it declares, by name."""
    description = judge_description(run, rows)
    figures: dict[str, float] = {}
    for metric in description.metrics:
        name = re.sub(r"[^A-Za-z0-9]+", "_", metric.name).strip("_")
        if metric.kind == "mean_score":
            scores = [r.score for r in rows if r.score is not None and r.label in JUDGED]
            figures[name] = sum(scores) / len(scores) if scores else 0.0
        else:
            figures[name] = rate_of(metric, rows).value
    return rate_metric(description), figures


def log_file_name(run: RunRecord) -> str:
    """`<timestamp>_<task>_<id>.eval`: the viewer takes the task name shown in its list from the file name."""
    stamp = _utc(run.created).strftime("%Y-%m-%dT%H-%M-%S+00-00")
    task = re.sub(r"[^A-Za-z0-9-]+", "-", f"polysafe-{run.task.split(':')[0]}").strip("-")
    return f"{stamp}_{task}_{log_id(run)}.eval"


def log_id(run: RunRecord) -> str:
    """Stable per run, so exporting a run again replaces its log instead of adding another."""
    return hashlib.sha256(f"polysafe-run:{run.name}".encode()).hexdigest()[:22]


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp or 0, dt.timezone.utc)


def _inspect_model(spec: str) -> str:
    provider, _, rest = spec.partition(":")
    return f"{provider}/{rest}" if rest else f"polysafe/{provider}"


def build_log(run: RunRecord, rows: Sequence[ResultRow]):
    try:
        from inspect_ai.log import (EvalConfig, EvalDataset, EvalLog, EvalMetric, EvalResults, EvalSample, EvalScore,
                                    EvalSpec, EvalStats)
        from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, GenerateConfig, ModelOutput, ModelUsage
        from inspect_ai.scorer import Score
    except ImportError:
        raise PolysafeError("the inspect format needs inspect_ai: pip install 'polysafe[inspect]'") from None
    from .. import __version__

    generation = run.config.get("generation") or {}
    seed = generation.get("seed")
    model = _inspect_model(run.model)
    counted, figures = declared_metrics(run, rows)
    samples = []
    for row in rows:
        text = row.response if row.response is not None and not row.error else ""
        hit = counts(counted, row) if counted is not None else None
        scored = hit is not None
        samples.append(EvalSample(
            id=f"{row.scenario}/{row.language}/{row.prompt_id}", epoch=row.sample + 1, input=row.prompt, target="",
            messages=[ChatMessageUser(content=row.prompt)] + ([ChatMessageAssistant(content=text)] if text else []),
            output=ModelOutput.from_content(model=model, content=text, stop_reason=STOP_REASONS.get(row.finish_reason or "", "unknown"),
                                            error=row.error),
            scores=({SCORER: Score(value=1.0 if hit else 0.0, answer=row.label,
                                   explanation=row.rationale or None,
                                   metadata={"label": row.label, "score": row.score})} if scored else {}),
            metadata={"language": row.language, "scenario": row.scenario, "chain": row.chain, "prompt_id": row.prompt_id,
                      "category": row.category, "tags": list(row.tags), "english_source": row.query,
                      "judged_text": row.extracted, "label": row.label, "judge_score": row.score,
                      "judge_rationale": row.rationale or None, "error": row.error, "finish_reason": row.finish_reason,
                      "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
                      "sample": row.sample, "seed": None if seed is None else seed + row.sample},
            model_usage={model: ModelUsage(input_tokens=row.prompt_tokens, output_tokens=row.completion_tokens,
                                           total_tokens=row.prompt_tokens + row.completion_tokens)},
        ))
    judged = [r for r in rows if r.label in JUDGED]
    metrics = {name: EvalMetric(name=name, value=value) for name, value in figures.items()}
    if counted is not None:  # the standard error of the headline rate, as inspect's own scorers report it
        rate = rate_of(counted, rows)
        metrics["stderr"] = EvalMetric(name="stderr", value=math.sqrt(rate.value * (1 - rate.value) / rate.total)
                                       if rate.total else 0.0)
    errors = sum(r.label == "error" for r in rows)
    metrics["error_rate"] = EvalMetric(name="error_rate", value=errors / len(rows) if rows else 0.0)
    epochs = max((r.sample for r in rows), default=0) + 1
    prompts, completions = sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows)
    spec = EvalSpec(
        eval_id=log_id(run), run_id=log_id(run), created=_utc(run.created).isoformat(), task=f"polysafe/{run.task}",
        task_id=log_id(run), task_args={k: v for k, v in run.config.items() if k not in PROVENANCE_KEYS},
        dataset=EvalDataset(name=run.task, samples=len({(r.scenario, r.language, r.prompt_id) for r in rows})),
        model=model,
        model_generate_config=GenerateConfig(temperature=generation.get("temperature"), top_p=generation.get("top_p"),
                                             max_tokens=generation.get("max_tokens"), seed=seed,
                                             system_message=generation.get("system_prompt")),
        config=EvalConfig(epochs=epochs),
        metadata={"polysafe_version": __version__, "run": run.name, "judge": run.judge, "model_spec": run.model,
                  "model_identity": run.config.get("model_identity"), "dtype": run.config.get("model_dtype"),
                  "scenarios": run.config.get("scenarios"), "capped": run.config.get("capped"),
                  "judge_description": run.config.get("judge_description")},
    )
    return EvalLog(
        status="success", eval=spec,
        results=EvalResults(total_samples=len(rows), completed_samples=len(judged), scores=[EvalScore(
            name=SCORER, scorer=run.judge, scored_samples=len(judged), unscored_samples=len(rows) - len(judged),
            metrics=metrics)]),
        stats=EvalStats(started_at=_utc(run.created).isoformat(), completed_at=_utc(run.updated).isoformat(),
                        model_usage={model: ModelUsage(input_tokens=prompts, output_tokens=completions,
                                                       total_tokens=prompts + completions)}),
        samples=samples,
    )


def write_inspect_log(run: RunRecord, rows: Sequence[ResultRow], directory: Path) -> Path:
    from inspect_ai.log import write_eval_log

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / log_file_name(run)
    for old in directory.glob(f"*_{log_id(run)}.eval"):  # an earlier export of this run, under another timestamp
        if old != path:
            old.unlink()
    write_eval_log(build_log(run, rows), str(path))
    return path
