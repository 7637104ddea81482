"""In-flight claims: processes that run the same work on one store never pay twice for one request.

Before asking for anything, a process claims the keys it will ask for (a row per key in the store's `claims`
table, written in one `BEGIN IMMEDIATE` transaction that also leaves out what is already stored). Keys another
live process holds are not asked: this process waits for them, then takes over any that its owner left unanswered
(it died, or its answer was an error). A claim lives while its owner refreshes it (`HEARTBEAT`); one not
refreshed for `TTL` seconds, or held by a process of this machine that has exited, is dead. Claims are released,
after the answers are committed, at the end of each round.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

TTL = 60.0  # seconds without a heartbeat after which a claim is dead
HEARTBEAT = 10.0
POLL = 0.2  # seconds between looks at keys another process is answering
HOST = socket.gethostname()


def _alive(owner: str, beat: float, now: float) -> bool:
    if now - beat > TTL:
        return False
    host, _, rest = owner.partition("|")
    pid = rest.split("|")[0]
    if host == HOST and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


class Claims:
    def __init__(self, store: "Store", done: Callable[[Iterable[str]], set[str]]):
        self.store, self.done = store, done
        self.owner = f"{HOST}|{os.getpid()}|{secrets.token_hex(4)}"
        store.db.execute("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                         "heartbeat REAL NOT NULL)")

    def take(self, keys: list[str]) -> tuple[list[str], list[str]]:
        """(keys now claimed by this process, keys another live process holds); stored keys are in neither."""
        db, now = self.store.db, time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            done = self.done(keys)
            held = {key for key, owner, beat in
                    self.store._select_in("SELECT key, owner, heartbeat FROM claims WHERE key IN ({})", keys)
                    if owner != self.owner and _alive(owner, beat, now)}
            mine = [key for key in keys if key not in done and key not in held]
            db.executemany("INSERT OR REPLACE INTO claims VALUES (?,?,?)", [(key, self.owner, now) for key in mine])
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
            raise
        return mine, [key for key in keys if key in held]

    def release(self) -> None:
        self.store.db.execute("DELETE FROM claims WHERE owner=?", (self.owner,))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            self.store.db.execute("UPDATE claims SET heartbeat=? WHERE owner=?", (time.time(), self.owner))


async def claimed(store: "Store", keys: list[str], done: Callable[[Iterable[str]], set[str]],
                  ask: Callable[[list[str]], Awaitable[None]]) -> int:
    """Call `ask` on the keys this process claims, round after round, until no key is left to another live
    process. `ask` must have committed its answers when it returns. Returns how many keys others answered."""
    claims = Claims(store, done)
    beat = asyncio.ensure_future(claims._beat())
    todo, by_others = list(dict.fromkeys(keys)), 0
    try:
        while todo:
            mine, waiting = claims.take(todo)
            by_others += len(set(todo) - set(mine) - set(waiting))
            if mine:
                try:
                    await ask(mine)
                finally:
                    claims.release()
            todo = waiting
            if todo:
                await asyncio.sleep(POLL)
    finally:
        beat.cancel()
        with contextlib.suppress(Exception):
            claims.release()
    return by_others
