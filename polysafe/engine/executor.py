"""Executors: where a run's pending generations are computed. The driver plans, an executor works.

The runner (the driver) makes the items and their keys, skips what is stored, and cuts the rest into units
(a batch of conversations plus the generation config); the executor computes each unit with the run's model
and hands every result back as it finishes. The driver alone writes the store, so resuming works the same
whichever executor ran. `local` runs units in this process; `ray` on the actors of a Ray cluster
(executor_ray.py). Benchmarks and reports never know which one ran.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from ..errors import InputError
from ..models.base import ModelBackend, ModelOptions
from ..types import Completion, Conversation, GenerationConfig
from .dispatch import dispatch

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class WorkUnit:
    """One batch of pending generations: what an executor ships to whoever computes it."""

    index: int
    conversations: tuple[Conversation, ...]
    configs: tuple[GenerationConfig, ...]  # one per conversation (samples of a prompt differ in seed)


OnResult = Callable[[WorkUnit, list[Completion]], None]
Admit = Callable[[WorkUnit], bool]


class Executor(Protocol):
    name: str

    def model_options(self, options: ModelOptions) -> ModelOptions:
        """The options a local model is loaded with here (Ray: the actors' device, so that the model identity
        carries the dtype they decode in). Ray joins the cluster here: one that cannot be reached, or has no room
        for an actor, fails before anything is sent."""

    def unit_size(self, model: ModelBackend, pending: int) -> int:
        """Conversations per unit for `pending` generations."""

    async def run(self, model: ModelBackend, units: Sequence[WorkUnit], *, on_result: OnResult,
                  admit: Admit | None = None) -> None:
        """Compute every unit, calling `on_result` in the driver as each ends. `admit(unit)` is asked before a
        unit is sent; once it says no, nothing more is sent (a budget cap)."""


def make_units(conversations: Sequence[Conversation], configs: Sequence[GenerationConfig], size: int) -> list[WorkUnit]:
    size = max(1, size)
    return [WorkUnit(n, tuple(conversations[start : start + size]), tuple(configs[start : start + size]))
            for n, start in enumerate(range(0, len(conversations), size))]


class LocalExecutor:
    """This process: `model.concurrency` units at once, sharing the model's continuous-batching loop."""

    name = "local"

    def model_options(self, options: ModelOptions) -> ModelOptions:
        return options

    def unit_size(self, model: ModelBackend, pending: int) -> int:
        return model.batch_size

    async def run(self, model: ModelBackend, units: Sequence[WorkUnit], *, on_result: OnResult,
                  admit: Admit | None = None) -> None:
        from .runner import generate_each  # the runner imports this module

        async def work(batch: Sequence[WorkUnit]) -> list[list[Completion]]:
            return [await generate_each(model, batch[0].conversations, batch[0].configs)]

        def done(batch: Sequence[WorkUnit], results: list[list[Completion]]) -> None:
            if len(results[0]) != len(batch[0].conversations):
                raise RuntimeError(f"backend returned {len(results[0])} results for {len(batch[0].conversations)} inputs")
            on_result(batch[0], results[0])

        await dispatch(units, work, batch_size=1, concurrency=model.concurrency, on_done=done,
                       admit=(lambda batch: admit(batch[0])) if admit is not None else None)


LOCAL = LocalExecutor()


@dataclass(frozen=True)
class ExecutorChoice:
    """`--executor`, `--ray-address`, `--ray-actors` as given, checked; `load()` makes the executor."""

    kind: str = "local"
    ray_address: str | None = None  # None: $RAY_ADDRESS, else a local Ray instance started here
    ray_actors: int | None = None  # None: as many as the cluster's resources fit
    ray_actor_cpus: int = 1  # CPU-only clusters: cores (and torch threads) per actor

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise InputError(f"unknown executor '{self.kind}' (known: {', '.join(EXECUTORS)})", field="executor")
        if self.ray_address is not None:
            check_ray_address(self.ray_address)
        if self.ray_actors is not None and self.ray_actors < 1:
            raise InputError("must be at least 1", field="ray-actors")
        if self.ray_actor_cpus < 1:
            raise InputError("must be at least 1", field="ray-actor-cpus")

    def load(self) -> Executor:
        if self.kind == "local":
            return LOCAL
        from .executor_ray import ray_executor

        return ray_executor(self)


def check_ray_address(address: str) -> str:
    """`auto`, `HOST:PORT` (a head's GCS port) or `ray://HOST:PORT` (Ray Client); anything else is an InputError."""
    if address == "auto":
        return address
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or "/" in rest or "@" in rest or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError("expected auto, HOST:PORT or ray://HOST:PORT", field="ray-address")
    return address


def spread(pending: int, workers: int, cap: int) -> int:
    """Unit size that gives each of `workers` at least two units, at most `cap` conversations each."""
    return max(1, min(cap, math.ceil(pending / max(1, 2 * workers))))
