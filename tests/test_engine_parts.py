"""The engine's small parts, in process: batch dispatch, prices and the budget, in-flight claims."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from polysafe.engine import claims as claims_module
from polysafe.engine.claims import Claims, claimed
from polysafe.engine.cost import MESSAGE_OVERHEAD, PRICES, Budget, Price, price_for, prompt_token_bound
from polysafe.engine.dispatch import dispatch
from polysafe.engine.store import Store


# -- dispatch -------------------------------------------------------------------------------------------------
def run_dispatch(jobs, *, batch_size, concurrency, admit=None, delay=0.0, short=False):
    """(batches in the order they were handed over, the most batches in flight at once)"""
    done, flight = [], {"now": 0, "most": 0}

    async def work(batch):
        flight["now"] += 1
        flight["most"] = max(flight["most"], flight["now"])
        await asyncio.sleep(delay)
        flight["now"] -= 1
        return [job * 10 for job in batch][: -1 if short else None]

    def on_done(batch, results):
        assert results == [job * 10 for job in batch]
        done.append(list(batch))

    asyncio.run(dispatch(jobs, work, batch_size=batch_size, concurrency=concurrency, on_done=on_done, admit=admit))
    return done, flight["most"]


def test_dispatch_cuts_batches_in_order_and_hands_each_over():
    done, _ = run_dispatch(list(range(7)), batch_size=3, concurrency=1)
    assert done == [[0, 1, 2], [3, 4, 5], [6]]


@pytest.mark.parametrize("concurrency, most", [(1, 1), (2, 2), (3, 3), (10, 4)])
def test_dispatch_runs_at_most_concurrency_batches_at_once(concurrency, most):
    done, seen = run_dispatch(list(range(8)), batch_size=2, concurrency=concurrency, delay=0.01)
    assert seen == most and sorted(map(tuple, done)) == [(0, 1), (2, 3), (4, 5), (6, 7)]


def test_dispatch_treats_sizes_below_one_as_one():
    done, seen = run_dispatch([1, 2, 3], batch_size=0, concurrency=0, delay=0.01)
    assert done == [[1], [2], [3]] and seen == 1
    assert run_dispatch([], batch_size=4, concurrency=4) == ([], 0)


def test_dispatch_starts_no_batch_once_admit_says_no():
    asked = []

    def admit(batch):
        asked.append(list(batch))
        return len(asked) < 3

    done, _ = run_dispatch(list(range(10)), batch_size=2, concurrency=1, admit=admit)
    assert done == [[0, 1], [2, 3]] and asked == [[0, 1], [2, 3], [4, 5]]


def test_dispatch_refuses_a_backend_that_returns_the_wrong_number_of_results():
    with pytest.raises(RuntimeError, match="backend returned 1 results for 2 inputs"):
        run_dispatch([1, 2], batch_size=2, concurrency=1, short=True)


# -- prices and the budget -------------------------------------------------------------------------------------
def test_a_price_is_per_million_tokens_in_and_out():
    assert Price(2.0, 8.0).cost(1_000_000, 0) == 2.0
    assert Price(2.0, 8.0).cost(500_000, 250_000) == 3.0
    assert Price(2.0, 8.0).cost(0, 1_000_000) == 8.0


def test_price_for_prefers_given_prices_then_the_table_of_openai_models():
    assert price_for("anything", 1.5, None) == Price(1.5, 0.0)
    assert price_for("openai:gpt-4o", None, 3.0) == Price(0.0, 3.0)
    assert price_for("openai:gpt-4o") == Price(*PRICES["gpt-4o"]) == Price(2.50, 10.00)
    assert price_for("openai:gpt-4o-mini@http://127.0.0.1:9/v1") == Price(0.15, 0.60)
    assert price_for("openai:unknown-model") is None
    assert price_for("hf:gpt-4o") is None and price_for("gpt-4o") is None


def test_the_prompt_token_bound_counts_utf8_bytes_and_the_chat_overhead():
    assert prompt_token_bound([]) == MESSAGE_OVERHEAD == 8
    assert prompt_token_bound(["abc"]) == 3 + 8 + 8
    assert prompt_token_bound(["é", "北京"]) == (2 + 8) + (6 + 8) + 8


def test_a_call_cap_admits_up_to_the_cap_and_then_nothing():
    budget = Budget(max_calls=5)
    assert budget.admit([1, 1, 1]) and budget.calls == 3
    assert budget.admit([1, 1]) and budget.calls == 5  # exactly the cap
    assert not budget.capped and budget.reason() == ""
    assert not budget.admit([1])
    assert budget.capped and budget.reason() == "--max-calls 5 reached (5 calls made)"
    assert not budget.admit([]) and budget.calls == 5  # capped stays capped


def test_a_cost_cap_reserves_each_batchs_worst_case_and_settles_what_was_used():
    price = Price(1_000_000.0, 2_000_000.0)  # $1 per input token, $2 per output token
    budget = Budget(max_cost=100.0, price=price, max_tokens=10)
    assert budget.admit([20, 30])  # worst case: 20 + 20 + 30 + 20 = $90
    assert budget.reserved == 90.0 and budget.spent == 0.0
    assert not Budget(max_cost=100.0, price=price, max_tokens=10).admit([20, 30, 1])  # $111 > $100
    budget.settle([20, 30], [(20, 1), (30, 2)])
    assert budget.reserved == 0.0 and budget.spent == 56.0
    assert budget.admit([4])  # 56 + 4 + 20 = $80
    assert budget.admit([0])  # 56 + 24 + 20 = $100: exactly the cap
    assert not budget.admit([0]) and budget.capped and budget.calls == 4
    assert budget.reason() == "--max-cost $100 reached ($56.0000 spent; the next batch could cost up to $20.0000)"


def test_concurrent_batches_reserve_together():
    budget = Budget(max_cost=50.0, price=Price(0.0, 1_000_000.0), max_tokens=10)
    assert budget.admit([0]) and budget.admit([0]) and budget.admit([0])  # three in flight: $30 reserved
    assert budget.admit([0, 0]) and not budget.admit([0])  # $50 reserved; one more would pass the cap
    budget.settle([0], [(0, 1)])
    assert budget.reserved == 40.0 and budget.spent == 1.0


def test_spending_adds_up_over_batches_and_by_default_a_batch_reserves_only_its_input():
    budget = Budget(max_cost=10.0, price=Price(1_000_000.0, 1_000_000.0))  # $1 a token; max_tokens not given
    assert budget.admit([10]) and budget.reserved == 10.0  # exactly the cap: no output counted
    budget.settle([10], [(2, 1)])
    budget.settle([], [(3, 1)])
    assert budget.spent == 7.0 and budget.reserved == 0.0


def test_settling_never_leaves_a_negative_reservation_and_costs_nothing_without_a_price():
    budget = Budget(max_cost=1.0, price=Price(1.0, 1.0), max_tokens=1)
    budget.settle([1_000_000], [(1, 1)])
    assert budget.reserved == 0.0 and budget.spent == pytest.approx(2e-6)
    free = Budget(max_calls=10)
    assert free.admit([10**6] * 3) and free.reserved == 0.0
    free.settle([1], [(10**6, 10**6)])
    assert free.spent == 0.0 and free.calls == 3


def test_a_cost_cap_without_a_price_caps_nothing_but_calls():
    budget = Budget(max_cost=0.0, price=None, max_tokens=10**6)
    assert budget.admit([10**6] * 100) and not budget.capped


# -- claims ---------------------------------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.db") as opened:
        yield opened


def dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_claim_is_alive_while_fresh_and_its_local_owner_runs():
    now = time.time()
    me = f"{claims_module.HOST}|{os.getpid()}|x"
    assert claims_module._alive(me, now, now)
    assert claims_module._alive(me, now - claims_module.TTL, now)  # the last second of its life
    assert not claims_module._alive(me, now - claims_module.TTL - 0.01, now)
    assert not claims_module._alive(f"{claims_module.HOST}|{dead_pid()}|x", now, now)
    assert claims_module._alive(f"elsewhere|{dead_pid()}|x", now, now)  # another machine's process: only the TTL
    assert claims_module._alive(f"{claims_module.HOST}|notapid|x", now, now)


def test_looking_at_a_live_owner_sends_it_no_signal():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import signal, time\nfor sig in (1, 2, 15):\n"
                              "    signal.signal(sig, signal.SIG_DFL)\ntime.sleep(30)"])  # a hang-up would end it
    time.sleep(0.3)
    try:
        assert claims_module._alive(f"{claims_module.HOST}|{child.pid}|x", time.time(), time.time())
        time.sleep(0.2)
        assert child.poll() is None  # signal 0 only asks whether it exists
    finally:
        child.kill()
        child.wait()


def test_a_claim_of_a_process_that_cannot_be_signalled_is_alive(monkeypatch):
    def refuse(pid, signal):
        raise PermissionError

    monkeypatch.setattr(claims_module.os, "kill", refuse)
    assert claims_module._alive(f"{claims_module.HOST}|1|x", time.time(), time.time())


def test_take_claims_what_is_neither_stored_nor_held_and_release_frees_only_its_own(store):
    first = Claims(store, lambda keys: {"stored"} & set(keys))
    assert first.owner.startswith(f"{claims_module.HOST}|{os.getpid()}|")
    assert first.take(["a", "stored", "b"]) == (["a", "b"], [])
    second = Claims(store, lambda keys: set())
    assert second.owner != first.owner
    assert second.take(["b", "c", "a"]) == (["c"], ["b", "a"])
    assert first.take(["a"]) == (["a"], [])  # its own claim is no obstacle
    rows = dict(store.db.execute("SELECT key, owner FROM claims").fetchall())
    assert rows == {"a": first.owner, "b": first.owner, "c": second.owner}
    first.release()
    assert store.db.execute("SELECT key FROM claims").fetchall() == [("c",)]
    assert second.take(["a", "b"]) == (["a", "b"], [])


def test_a_failing_take_leaves_no_claim_and_no_open_transaction(store):
    def broken(keys):
        raise KeyError("done() failed")

    with pytest.raises(KeyError):
        Claims(store, broken).take(["a"])
    assert store.db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0 and not store.db.in_transaction


def test_claims_are_refreshed_while_their_owner_works(store, monkeypatch):
    monkeypatch.setattr(claims_module, "HEARTBEAT", 0.05)
    beats = []

    async def ask(keys):
        (beat,) = store.db.execute("SELECT heartbeat FROM claims").fetchone()
        for _ in range(3):
            await asyncio.sleep(0.08)
            beats.append(store.db.execute("SELECT heartbeat FROM claims").fetchone()[0] - beat)

    asyncio.run(claimed(store, ["a"], lambda keys: set(), ask))
    assert beats[-1] > 0.1 and beats == sorted(beats)


def test_claimed_asks_each_key_once_and_releases_its_claims_even_when_asking_fails(store):
    asked = []

    async def ask(keys):
        asked.append(keys)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        asyncio.run(claimed(store, ["a", "b", "a"], lambda keys: set(), ask))
    assert asked == [["a", "b"]] and store.db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_claimed_counts_keys_stored_meanwhile_as_answered_by_others_and_asks_only_the_rest(store):
    """The caller passes keys it found unstored; any stored by the time they are claimed were answered by others."""
    asked = []

    async def ask(keys):
        asked.append(keys)

    assert asyncio.run(claimed(store, ["s", "u", "t"], lambda keys: {"s", "t"} & set(keys), ask)) == 2
    assert asked == [["u"]]


def test_claimed_counts_keys_others_answered_in_every_round(store, monkeypatch):
    """Round 1: 's' is found stored and 'a' is held by a live process elsewhere; round 2: that process has
    answered 'a'. Both count as answered by others; only 'b' is asked."""
    import sqlite3
    import threading

    monkeypatch.setattr(claims_module, "POLL", 0.02)
    Claims(store, lambda keys: set())
    store.db.execute("CREATE TABLE answers (key TEXT)")
    store.db.execute("INSERT INTO answers VALUES ('s')")
    store.db.execute("INSERT INTO claims VALUES ('a', 'elsewhere|1|y', ?)", (time.time(),))
    done = lambda keys: {k for (k,) in store.db.execute("SELECT key FROM answers").fetchall()} & set(keys)

    def other_process_answers():
        time.sleep(0.2)
        db = sqlite3.connect(store.path, isolation_level=None)
        db.execute("INSERT INTO answers VALUES ('a')")
        db.execute("DELETE FROM claims WHERE key='a'")
        db.close()

    thread = threading.Thread(target=other_process_answers)
    thread.start()
    asked = []

    async def ask(keys):
        asked.extend(keys)

    assert asyncio.run(claimed(store, ["s", "a", "b"], done, ask)) == 2
    thread.join()
    assert asked == ["b"]
