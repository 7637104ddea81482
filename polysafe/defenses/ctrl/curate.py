"""Curation: for each clean text, beam-search revisions sampled over a temperature x top-p grid.

Every revision and every score lives in the store's memo table under a content key (model identity, prompt,
sampling settings / scored text), committed as soon as it exists. The search is deterministic given those
values, so a curation killed at any point and started again replays from the cache and asks no model for
anything it already answered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ...data.ctrl_sets import CleanText
from ...engine.keys import content_key
from ...engine.store import Store
from ...errors import BackendError
from ...models.base import ModelBackend
from ...types import GenerationConfig
from .beam import BeamConfig, BeamResult, Candidate, Scores, beam_search
from .revise import clean_revision, revision_prompt
from .scoring import HEURISTIC, HEURISTIC_NOTE, HelpfulnessRater, target_perplexities

DEFAULT_GRID = (0.2, 0.4, 0.6, 0.8, 1.0)  # the method notes' 5 x 5 grid, for temperature and for top-p


@dataclass(frozen=True)
class CurationConfig:
    beam: BeamConfig = BeamConfig()
    temperatures: tuple[float, ...] = DEFAULT_GRID
    top_ps: tuple[float, ...] = DEFAULT_GRID
    max_tokens: int = 256
    seed: int = 0

    def grid(self) -> list[GenerationConfig]:
        return [GenerationConfig(temperature=t, top_p=p, max_tokens=self.max_tokens, seed=self.seed)
                for t in self.temperatures for p in self.top_ps]


class CachedReviser:
    """Samples revisions from a model over the grid; each (prompt, sampling setting) is asked once, ever."""

    namespace = "ctrl-revision"

    def __init__(self, model: ModelBackend, store: Store, phrases: Sequence[str], config: CurationConfig):
        self.model, self.store, self.phrases, self.config = model, store, tuple(phrases), config
        self.calls = 0  # conversations sent to the model in this process

    async def revise(self, query: str, answers: Sequence[str]) -> list[list[str]]:
        prompts = [revision_prompt(query, a, self.phrases) for a in answers]
        out: list[list[str]] = [[] for _ in answers]
        for gen in self.config.grid():
            keys = [content_key(self.namespace, self.model.identity, [m.to_dict() for m in p], gen) for p in prompts]
            cached = self.store.memo_get_many(self.namespace, keys)
            missing = [i for i, k in enumerate(keys) if k not in cached]
            if missing:
                self.calls += len(missing)
                completions = await self.model.generate([prompts[i] for i in missing], gen)
                for i, completion in zip(missing, completions):
                    if not completion.ok:
                        raise BackendError(f"reviser {self.model.spec} failed: {completion.error} "
                                           "(everything before is cached; run again to resume)")
                    cached[keys[i]] = completion.text
                    self.store.memo_put(self.namespace, keys[i], completion.text)
            for i, key in enumerate(keys):
                out[i].append(clean_revision(cached[key]))
        return out


class CachedScorer:
    """Perplexity under the target model and helpfulness from the rater, each computed once per text."""

    def __init__(self, target, rater: HelpfulnessRater, store: Store, *, batch_size: int = 16):
        self.target, self.rater, self.store, self.batch_size = target, rater, store, batch_size
        self.perplexity_calls = 0
        self.rating_calls = 0

    async def score(self, query: str, answers: Sequence[str]) -> list[Scores]:
        ppl_keys = [content_key("ctrl-ppl", self.target.identity, query, a) for a in answers]
        help_keys = [content_key("ctrl-help", self.rater.identity, query, a) for a in answers]
        ppl = {k: json.loads(v) for k, v in self.store.memo_get_many("ctrl-ppl", ppl_keys).items()}
        helps = {k: json.loads(v) for k, v in self.store.memo_get_many("ctrl-help", help_keys).items()}
        todo = [i for i, k in enumerate(ppl_keys) if k not in ppl]
        if todo:
            self.perplexity_calls += len(todo)
            values = target_perplexities(self.target, [(query, answers[i]) for i in todo], batch_size=self.batch_size)
            for i, value in zip(todo, values):
                ppl[ppl_keys[i]] = value
                self.store.memo_put("ctrl-ppl", ppl_keys[i], json.dumps(value))
        todo = [i for i, k in enumerate(help_keys) if k not in helps]
        if todo:
            self.rating_calls += len(todo)
            ratings = await self.rater.rate([(query, answers[i]) for i in todo])
            for i, rating in zip(todo, ratings):
                # An unreadable rating counts as 0 (the candidate fails the floor); it is kept so it is not re-asked.
                value = {"mean": rating.mean if rating else 0.0, "rubrics": rating.rubrics if rating else None}
                helps[help_keys[i]] = value
                self.store.memo_put("ctrl-help", help_keys[i], json.dumps(value))
        return [Scores(ppl[p], helps[h]["mean"]) for p, h in zip(ppl_keys, help_keys)]


@dataclass(frozen=True)
class CuratedText:
    id: str
    query: str
    original: Candidate
    curated: Candidate
    dropped: int

    def to_json(self, meta: dict) -> dict:
        return {
            "id": self.id,
            "messages": [{"role": "user", "content": self.query}, {"role": "assistant", "content": self.curated.text}],
            "original": _scores(self.original),
            "curated": _scores(self.curated) | {"round": self.curated.round},
            "revised": self.curated.round > 0,
            "dropped_under_floor": self.dropped,
            **meta,
        }


def _scores(c: Candidate) -> dict:
    return {"text": c.text, "perplexity": c.perplexity, "helpfulness": c.helpfulness}


async def curate(
    texts: Sequence[CleanText],
    reviser: CachedReviser,
    scorer: CachedScorer,
    config: CurationConfig,
    *,
    on_text: Callable[[CuratedText], None] | None = None,
) -> list[CuratedText]:
    out = []
    for text in texts:
        result: BeamResult = await beam_search(text.query, text.answer, reviser, scorer, config.beam)
        curated = CuratedText(text.id, text.query, result.original, result.best, result.dropped)
        out.append(curated)
        if on_text:
            on_text(curated)
    return out


def curation_meta(config: CurationConfig, *, target: str, reviser: str, helpfulness: HelpfulnessRater) -> dict:
    meta = {"objective": config.beam.objective, "beam_width": config.beam.width, "rounds": config.beam.rounds,
            "floor": config.beam.floor, "target": target, "reviser": reviser, "helpfulness": helpfulness.method}
    if helpfulness.method == HEURISTIC:
        meta["helpfulness_note"] = HEURISTIC_NOTE
    return meta


def write_curated(path: str | Path, curated: Sequence[CuratedText], meta: dict) -> None:
    """Chat JSONL: `messages` holds the curated pair (what training reads); the rest records the search."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for item in curated:
            handle.write(json.dumps(item.to_json(meta), ensure_ascii=False) + "\n")
    tmp.replace(path)


def summary_line(curated: Sequence[CuratedText]) -> dict:
    revised = [c for c in curated if c.curated.round > 0]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {"texts": len(curated), "revised": len(revised),
            "mean_ppl_original": mean([c.original.perplexity for c in curated]),
            "mean_ppl_curated": mean([c.curated.perplexity for c in curated]),
            "mean_help_original": mean([c.original.helpfulness for c in curated]),
            "mean_help_curated": mean([c.curated.helpfulness for c in curated])}



