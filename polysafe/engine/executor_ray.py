"""The `ray` executor: a run's pending generations computed by model replicas on the actors of a Ray cluster.

Each actor loads the local model once (`smollm2`, `hf:`, `+lora:`) and decodes with the same continuous-batching
loop as a local run; it asks for one GPU on a cluster that has GPUs, else `ray_actor_cpus` cores (and as many
torch threads). The driver keeps `model.concurrency` units in flight per actor, collects results with
`ray.wait` as they finish and commits them itself: the SQLite store has one writer, on the driver.

Faults are Ray's to handle: an actor that dies is restarted (`max_restarts`) and the units it held are sent
again (`max_task_retries`); a unit is stored only when its result reaches the driver, so nothing is stored
twice. A unit that still fails after Ray's retries is stored as an error for its items (the next run retries
them). A cluster that cannot be reached, or has no resource that fits an actor, stops with one line (exit 1)
before anything is sent.

Remote backends (`openai:`) keep running on the driver: their work is I/O, and their replicas are `--base-url`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from contextlib import contextmanager
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from ..errors import BackendError, PolysafeError
from ..models.base import ModelBackend, ModelOptions, load_model
from ..models.local import LocalCausalLM
from ..types import Completion, Conversation, GenerationConfig
from .executor import LOCAL, Admit, ExecutorChoice, OnResult, WorkUnit, spread

MAX_RESTARTS = 3  # per actor; each restart reloads the model
MAX_TASK_RETRIES = 3  # per unit, on actor failure
CONNECT_TIMEOUT_S = 5.0


class GenerationActor:
    """One model replica. Runs inside a Ray worker process (made a Ray actor by `RayExecutor`)."""

    def __init__(self, spec: str, options: ModelOptions, identity: str, threads: int | None):
        if threads:  # this process is the actor's own: its thread count is ours to set
            import torch

            torch.set_num_threads(threads)
        self.expected = identity
        self.model = load_model(spec, options)

    def ready(self) -> str | None:
        """Load the weights now; None, or the one-line reason this replica cannot serve the run."""
        try:
            self.model.model  # noqa: B018 (loads)
        except Exception as err:  # reported by the driver as one line
            return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if self.model.identity != self.expected:
            return (f"the actor on {socket.gethostname()} sees other weights or dtype ({self.model.identity}) than the "
                    f"driver ({self.expected}): give every node the same files")
        return None

    def generate(self, conversations: Sequence[Conversation], configs: Sequence[GenerationConfig]) -> list[Completion]:
        if len(set(configs)) == 1:
            return self.model.generate_sync(conversations, configs[0])
        return asyncio.run(self.model.generate_each(conversations, configs))  # one continuous batch, as locally

    def pid(self) -> int:
        return os.getpid()


@dataclass
class _Pool:
    key: tuple
    actors: list[Any]


class RayExecutor:
    """See the module docstring. One per process and address; it connects on first use."""

    name = "ray"

    def __init__(self, choice: ExecutorChoice):
        self.choice = choice
        self.pool: _Pool | None = None
        self._resources: dict[str, float] | None = None

    # -- the cluster ------------------------------------------------------------------------------------------
    def address(self) -> str | None:
        return self.choice.ray_address or os.environ.get("RAY_ADDRESS") or None

    def connect(self) -> dict[str, float]:
        """Join (or start) the cluster once; its total resources. PolysafeError (exit 1) when unreachable."""
        if self._resources is not None:
            return self._resources
        import ray

        if not ray.is_initialized():
            address = self.address()
            if address and address != "auto":
                _check_reachable(address)
            _init_ray(ray, address)
        self._resources = dict(ray.cluster_resources())
        return self._resources

    def gpus(self) -> int:
        return int(self.connect().get("GPU", 0))

    def actor_device(self) -> str:
        """The device the actors will decode on, so the driver keys answers with the dtype they will have.
        Connects first, and checks that the actors fit: both fail in one line before anything is sent."""
        self.actor_count()
        return "cuda" if self.gpus() else "cpu"

    def model_options(self, options: ModelOptions) -> ModelOptions:
        device = self.actor_device()
        return replace(options, device=device) if options.device == "auto" else options

    def actor_count(self) -> int:
        resources = self.connect()
        per_actor = 1 if self.gpus() else self.choice.ray_actor_cpus
        kind = "GPU" if self.gpus() else "CPU"
        fits = int(resources.get(kind, 0) // per_actor)
        wanted = self.choice.ray_actors or fits
        if fits < 1 or wanted > fits:
            raise PolysafeError(f"the Ray cluster has {resources.get(kind, 0):g} {kind}s: no room for {wanted} actor(s) of "
                                f"{per_actor} {kind} each (set --ray-actors, or add nodes)")
        return wanted

    # -- the executor protocol --------------------------------------------------------------------------------
    def unit_size(self, model: ModelBackend, pending: int) -> int:
        if not isinstance(model, LocalCausalLM):
            return LOCAL.unit_size(model, pending)
        return spread(pending, self.actor_count(), model.batch_size)

    async def run(self, model: ModelBackend, units: Sequence[WorkUnit], *, on_result: OnResult,
                  admit: Admit | None = None) -> None:
        if not isinstance(model, LocalCausalLM):  # an HTTP client: nothing to gain from a cluster
            await LOCAL.run(model, units, on_result=on_result, admit=admit)
            return
        if not units:
            return
        import ray

        actors = self.actors_for(model)
        queue = deque(units)
        in_flight: dict[Any, tuple[WorkUnit, Any]] = {}
        capped = False

        def send(actor) -> None:
            nonlocal capped
            if not queue or capped:
                return
            if admit is not None and not admit(queue[0]):
                capped = True
                return
            unit = queue.popleft()
            in_flight[actor.generate.remote(unit.conversations, unit.configs)] = (unit, actor)

        for _ in range(max(1, model.concurrency)):
            for actor in actors:
                send(actor)
        while in_flight:
            ready, _ = await asyncio.to_thread(ray.wait, list(in_flight), num_returns=1)
            for ref in ready:
                unit, actor = in_flight.pop(ref)
                on_result(unit, _result(ray, ref, unit))
                send(actor)

    def actors_for(self, model: LocalCausalLM) -> list[Any]:
        """The replicas of `model`, made (and loaded) on first use and kept for the next run of the same model."""
        import ray

        count = self.actor_count()
        device = model.options.device if model.options.device != "auto" else ("cuda" if self.gpus() else "cpu")
        gpu = device.startswith("cuda")
        options = replace(model.options, device=device)
        key = (model.spec, model.identity, options, count, self.choice.ray_actor_cpus)
        if self.pool is not None and self.pool.key == key:
            return self.pool.actors
        self.close()
        remote = ray.remote(GenerationActor).options(
            num_gpus=1 if gpu else 0, num_cpus=1 if gpu else self.choice.ray_actor_cpus,
            max_restarts=MAX_RESTARTS, max_task_retries=MAX_TASK_RETRIES, max_concurrency=max(1, model.concurrency))
        threads = None if gpu else self.choice.ray_actor_cpus
        actors = [remote.remote(model.spec, options, model.identity, threads) for _ in range(count)]
        try:
            problems = [p for p in ray.get([a.ready.remote() for a in actors]) if p]
        except ray.exceptions.RayError as err:  # the actor could not even start
            problems = [_first_line(err)]
        if problems:
            for actor in actors:
                ray.kill(actor)
            raise BackendError(f"a Ray actor cannot load '{model.spec}': {problems[0]}")
        self.pool = _Pool(key, actors)
        return actors

    def close(self) -> None:
        if self.pool is not None:
            import ray

            for actor in self.pool.actors:
                ray.kill(actor)
            self.pool = None


def _result(ray, ref, unit: WorkUnit) -> list[Completion]:
    """The unit's completions; its items stored as errors when Ray gave up on it (the next run retries them)."""
    try:
        completions = ray.get(ref)
    except ray.exceptions.RayTaskError as err:  # the model code raised: as it would locally, in one line
        cause = getattr(err, "cause", None)
        if isinstance(cause, PolysafeError):
            raise cause from None
        raise BackendError(f"a Ray actor failed: {_first_line(cause or err)}") from None
    except ray.exceptions.RayError as err:  # the actor died more often than Ray retries
        reason = f"Ray actor lost: {type(err).__name__}"
        return [Completion.failed(reason) for _ in unit.conversations]
    if len(completions) != len(unit.conversations):
        raise RuntimeError(f"actor returned {len(completions)} results for {len(unit.conversations)} inputs")
    return completions


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _check_reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise PolysafeError(f"cannot reach the Ray cluster at {address}: {err.strerror or type(err).__name__}") from None


def _init_ray(ray, address: str | None) -> None:
    """Join `address`, or start a local instance as `ray.init()` does (no dashboard, quiet)."""
    settings: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        # Actors run the driver's polysafe, whatever version the cluster's nodes have installed.
        settings["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parents[1])],
                                   "excludes": ["__pycache__", "*.pyc"]}
    else:
        settings.update(include_dashboard=False)
    try:
        with _stderr_muted():  # "local": a new instance, never a cluster that `ray start` left recorded here
            ray.init(address=address or "local", **settings)
    except (ConnectionError, RuntimeError, ValueError, OSError) as err:
        where = f"at {address}" if address else "on this machine"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = ("; a cluster started with `ray start` checks a token: set RAY_AUTH_MODE=token here, with the cluster's "
                "token in ~/.ray/auth_token or RAY_AUTH_TOKEN" if address and os.environ.get("RAY_AUTH_MODE") != "token" else "")
        raise PolysafeError(f"cannot start or join a Ray cluster {where}: {first}{hint}") from None


@contextmanager
def _stderr_muted():
    """Ray's C++ client logs each reconnection attempt to file descriptor 2; polysafe's one line says it all."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


_EXECUTORS: dict[ExecutorChoice, RayExecutor] = {}


def ray_executor(choice: ExecutorChoice) -> RayExecutor:
    """One executor per choice in a process, so several runs (a config file, a defense) reuse its actors."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise PolysafeError("--executor ray needs Ray: pip install 'polysafe[ray]'") from None
    if choice not in _EXECUTORS:
        _EXECUTORS[choice] = RayExecutor(choice)
    return _EXECUTORS[choice]


def shutdown() -> None:
    """Kill every actor this process made and leave the cluster (stops a local instance started here)."""
    import ray

    for executor in _EXECUTORS.values():
        executor.close()
        executor._resources = None
    _EXECUTORS.clear()
    if ray.is_initialized():
        ray.shutdown()
