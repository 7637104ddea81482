"""Curation: for each clean text, beam-search revisions sampled over a temperature x top-p grid.

Every revision and every score lives in the store's memo table under a content key (model identity, prompt,
sampling settings / scored text), committed as soon as it exists. The search is deterministic given those
values, so a curation killed at any point and started again replays from the cache and asks no model for
anything it already answered.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from ...data.ctrl_sets import CleanText
from ...keys import content_key
from ...engine.store import Store
from ...errors import BackendError
from ...models.base import ModelBackend
from ...types import GenerationConfig
from .beam import BeamConfig, BeamResult, Candidate, Scores, beam_search
from .revise import clean_revision, revision_prompt
from .scoring import HEURISTIC, HEURISTIC_NOTE, HelpfulnessRater, RatingCache, target_perplexities

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


class Coalescer:
    """Gathers the revision requests of beam searches running side by side into one model call.

    Searches advance in lockstep (score, then revise), so a flush waits until every active search has asked,
    or until no request arrived for `idle` seconds. One big batch keeps a local model's forward passes full.
    """

    def __init__(self, flush: Callable[[list], Awaitable[list]], *, idle: float = 0.2):
        self.flush, self.idle = flush, idle
        self.active = 1
        self._pending: list[tuple[list, asyncio.Future]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def submit(self, requests: list) -> list:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((requests, future))
        self._arrived.set()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return await future

    def finished_one(self) -> None:
        self.active -= 1
        self._arrived.set()

    async def _run(self) -> None:
        while len(self._pending) < self.active:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), self.idle)
            except asyncio.TimeoutError:
                break
        batch, self._pending, self._task = self._pending, [], None
        flat = [r for requests, _ in batch for r in requests]
        try:
            results = await self.flush(flat)
        except Exception as err:  # every waiting search sees the failure
            for _, future in batch:
                future.set_exception(err)
            return
        start = 0
        for requests, future in batch:
            future.set_result(results[start : start + len(requests)])
            start += len(requests)


class CachedReviser:
    """Samples revisions from a model over the grid; each (prompt, sampling setting) is asked once, ever."""

    namespace = "ctrl-revision"

    def __init__(self, model: ModelBackend, store: Store, phrases: Sequence[str], config: CurationConfig):
        self.model, self.store, self.phrases, self.config = model, store, tuple(phrases), config
        self.calls = 0  # conversations sent to the model in this process
        self.coalescer: Coalescer | None = None

    async def revise(self, query: str, answers: Sequence[str]) -> list[list[str]]:
        prompts = [revision_prompt(query, a, self.phrases) for a in answers]
        if self.coalescer is None:
            texts = await self._sample(prompts)
        else:
            texts = await self.coalescer.submit(prompts)
        return [[clean_revision(t) for t in per_prompt] for per_prompt in texts]

    async def _sample(self, prompts: list) -> list[list[str]]:
        """For each prompt, one raw sample per grid setting (cached ones from the store)."""
        out: list[list[str]] = [[] for _ in prompts]
        for gen in self.config.grid():
            keys = [content_key(self.namespace, self.model.identity, [m.to_dict() for m in p], gen) for p in prompts]
            wanted = dict(zip(keys, prompts))
            failed: list[str] = []

            async def sample(missing: list[str], gen=gen) -> dict[str, str]:
                self.calls += len(missing)
                completions = await self.model.generate([wanted[k] for k in missing], gen)
                failed.extend(c.error for c in completions if not c.ok)
                return {k: c.text for k, c in zip(missing, completions) if c.ok}

            texts = await self.store.amemoize(self.namespace, keys, sample)
            if failed:  # the answers that did come are stored, so a rerun asks only for the rest
                raise BackendError(f"reviser {self.model.spec} failed: {failed[0]} "
                                   "(everything answered is cached; run again to resume)")
            for i, key in enumerate(keys):
                out[i].append(texts[key])
        return out


class CachedScorer:
    """Perplexity under the target model and helpfulness from the rater, each computed once per text."""

    def __init__(self, target, rater: HelpfulnessRater, store: Store, *, batch_size: int = 16, rating_attempts: int = 3):
        self.target, self.rater, self.store, self.batch_size = target, rater, store, batch_size
        self.ratings = RatingCache(rater, store, attempts=rating_attempts)
        self.perplexity_calls = 0

    @property
    def rating_calls(self) -> int:
        return self.ratings.asked

    async def score(self, query: str, answers: Sequence[str]) -> list[Scores]:
        ppl_keys = [content_key("ctrl-ppl", self.target.identity, query, a) for a in answers]
        wanted = dict(zip(ppl_keys, answers))

        def measure(missing: list[str]) -> dict[str, str]:
            self.perplexity_calls += len(missing)
            values = target_perplexities(self.target, [(query, wanted[k]) for k in missing], batch_size=self.batch_size)
            return {k: json.dumps(v) for k, v in zip(missing, values)}

        ppl = self.store.memoize("ctrl-ppl", ppl_keys, measure)
        helps = await self.ratings.rate([(query, a) for a in answers])
        return [Scores(json.loads(ppl[p]), h.mean) for p, h in zip(ppl_keys, helps)]


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
    parallel: int = 32,
) -> list[CuratedText]:
    """Beam-search every text; `parallel` searches run side by side with their revisions batched together."""
    out: list[CuratedText] = []
    for start in range(0, len(texts), parallel):
        group = texts[start : start + parallel]
        reviser.coalescer = Coalescer(reviser._sample)
        reviser.coalescer.active = len(group)

        async def one(text: CleanText) -> CuratedText:
            try:
                result: BeamResult = await beam_search(text.query, text.answer, reviser, scorer, config.beam)
            finally:
                reviser.coalescer.finished_one()
            return CuratedText(text.id, text.query, result.original, result.best, result.dropped)

        for curated in await asyncio.gather(*(one(t) for t in group)):
            out.append(curated)
            if on_text:
                on_text(curated)
    reviser.coalescer = None
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



