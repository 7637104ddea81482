"""Bounded-concurrency batch dispatch: results are handed over as each batch finishes."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Sequence, TypeVar

J = TypeVar("J")
R = TypeVar("R")


async def dispatch(
    jobs: Sequence[J],
    work: Callable[[Sequence[J]], Awaitable[list[R]]],
    *,
    batch_size: int,
    concurrency: int,
    on_done: Callable[[Sequence[J], list[R]], None],
    admit: Callable[[Sequence[J]], bool] | None = None,
) -> None:
    """Run `work` over batches of `jobs`, at most `concurrency` at once, calling `on_done` as each ends.

    `admit(batch)` is asked before each batch starts; once it says no, no further batch starts (a budget cap)."""
    batches = [jobs[i : i + max(1, batch_size)] for i in range(0, len(jobs), max(1, batch_size))]
    queue: asyncio.Queue = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker() -> None:
        while True:
            try:
                batch = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if admit is not None and not admit(batch):
                return
            results = await work(batch)
            if len(results) != len(batch):
                raise RuntimeError(f"backend returned {len(results)} results for {len(batch)} inputs")
            on_done(batch, results)

    await asyncio.gather(*(worker() for _ in range(min(max(1, concurrency), len(batches)))))
