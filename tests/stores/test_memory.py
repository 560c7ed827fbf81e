"""The ``memory://`` session store: the store contract, plus what only memory promises.

Beyond the contract: one store serves every thread and event loop of the process, and
expired entries are purged as the store is used, so dead keys do not pile up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import anyio
import pytest

from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.stores import SessionStore
from chanlite.stores.memory import SWEEP_BATCH, SWEEP_EVERY, MemorySessionStore

from .contract import TTL, StoreContract, play, shuffled


class TestMemoryStore(StoreContract):
    async def make_store(self) -> SessionStore:
        return MemorySessionStore()


async def outlive(ttl: float) -> None:
    """Return once entries saved before the call with ``ttl`` are past their expiry.

    Waits on the monotonic clock itself, which is what the store judges expiry by.
    """
    deadline = time.monotonic() + ttl
    await anyio.sleep(ttl + 0.01)  # a timer may fire up to a clock tick early
    assert time.monotonic() > deadline


@pytest.mark.anyio
async def test_expired_sessions_are_purged_as_the_store_is_used():
    store = MemorySessionStore()
    dead = 500
    for n in range(dead):
        await store.save(f"dead.{n}", {"n": n}, 0.02)
    await outlive(0.02)
    # Never touched again, the dead keys still go: each use sweeps a few of them.
    for _ in range(dead // SWEEP_BATCH + SWEEP_EVERY):
        await store.save("live", {"alive": True}, TTL)
    assert list(store._sessions) == ["live"]


@pytest.mark.anyio
async def test_expired_cursors_are_purged_with_what_they_parked():
    store = MemorySessionStore()
    dead = 200
    for n in range(dead):
        assert not await store.order_start(f"dead.{n}", 1, False, b"x" * 100, 0.02)
    await outlive(0.02)
    for _ in range(dead // SWEEP_BATCH + SWEEP_EVERY):
        assert await store.order_start("live", 0, False, b"", TTL)
    assert list(store._cursors) == ["live"]


@pytest.mark.anyio
async def test_sweeping_keeps_live_entries_with_long_ttls():
    store = MemorySessionStore()
    await store.save("long", {"n": 1}, TTL)  # at the front, and alive
    for n in range(50):
        await store.save(f"short.{n}", {"n": n}, 0.02)
    await outlive(0.02)
    for _ in range(100):
        await store.delete("nothing")
    assert list(store._sessions) == ["long"]
    assert await store.load("long", TTL) == {"n": 1}


def test_one_store_serves_several_threads_with_loops_of_their_own():
    store = MemorySessionStore()
    count, threads = 200, 4
    orders, seed = shuffled(count)
    ran: list[int] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def record(order: int) -> None:
        with lock:
            ran.append(order)

    async def deliver(share: list[int]) -> None:
        await asyncio.gather(*(play(store, "threads", o, record, last=count - 1) for o in share))

    def run(share: list[int]) -> None:
        try:
            asyncio.run(deliver(share))
        except BaseException as error:  # reported by the test thread below
            failures.append(error)

    workers = [
        threading.Thread(target=run, args=(orders[index::threads],)) for index in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not failures
    assert ran == list(range(count)), f"shuffle seed {seed}"


def test_a_store_is_bound_to_no_event_loop():
    store = MemorySessionStore()
    asyncio.run(store.save("loops", {"n": 1}, TTL))
    assert asyncio.run(store.load("loops", TTL)) == {"n": 1}
    assert anyio.run(store.order_start, "loops", 0, False, b"", TTL)


def test_for_layer_gives_a_memory_store():
    store: Any = MemorySessionStore.for_layer(InMemoryChannelLayer())
    assert isinstance(store, MemorySessionStore)
    assert repr(store) == "<MemorySessionStore sessions=0 cursors=0>"


@pytest.mark.anyio
async def test_messages_that_run_at_once_are_never_encoded():
    store = MemorySessionStore()

    def refuse() -> bytes:
        raise AssertionError("encoded although it ran at once")

    assert await store.order_start("s", 0, False, refuse, TTL)
    assert await store.order_finish("s", 0, False, TTL) == []
    assert await store.order_start("s", 1, False, refuse, TTL)
