"""The session store contract: one suite that every store passes.

A backend's test module reuses it by subclassing, as the layer tests do::

    class TestRedisStore(SharedStoreContract):
        async def make_store(self):
            return RedisSessionStore(URL, prefix=unique_prefix())

:class:`StoreContract` holds what every store promises (sessions, expiry, ordering
cursors, atomicity under concurrent tasks). :class:`SharedStoreContract` adds what a
store shared by processes promises: two handles on one URL see one state, and orders
started from several OS processes each run once, in turn. The processes run this
module as a program (``python -m tests.stores.contract``, see :func:`main`).

Every store a test makes is handed to :meth:`StoreContract.cleanup_store` afterwards.
This module imports no backend.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from chanlite import LayerError
from chanlite.stores import SessionStore, get_session_store

StoreFactory = Callable[[], Awaitable[SessionStore]]

#: A ttl no test outlives (seconds).
TTL = 60.0
#: How long a test waits for something that must happen before it gives up (seconds).
PATIENCE = 5.0
#: The repository root, from where the helper processes run.
ROOT = Path(__file__).resolve().parents[2]
#: How long a helper process may take to start, and to finish its work (seconds).
STARTUP = 30.0
#: Delivery pacing across processes: order k is due PACE * k s after the start, plus
#: up to JITTER s (see :func:`paced`).
PACE, JITTER = 0.002, 0.008
#: How often a helper process reads the shared log for the lines it waits for.
LOG_POLL = 0.001
#: How many deliveries a helper process runs at a time (a worker's threads).
HELPER_SLOTS = 4

SESSION_DATA: dict[str, Any] = {
    "user": {"id": 42, "name": "Zoë", "roles": ["admin", "dev"]},
    "token": b"\x00\x01\xfe\xff raw",
    "nested": [{"deep": [b"bytes in a list", None, True, 1.5]}, []],
    "empty": {},
    "big": 2**62,
    "text": "line\nbreak \u2603",
}
ODD_KEYS = ["http:abc", "channel:reply!x1", "with space", "ünï:cödé/€", "k" * 300, ""]
#: Every operation of the store API, as a closed store is asked to run it.
CLOSED_OPERATIONS: dict[str, Callable[[SessionStore], Awaitable[Any]]] = {
    "load": lambda store: store.load("closed", TTL),
    "save": lambda store: store.save("closed", {"n": 1}, TTL),
    "delete": lambda store: store.delete("closed"),
    "order_start": lambda store: store.order_start("closed", 1, False, b"parked", TTL),
    "order_finish": lambda store: store.order_finish("closed", 0, True, TTL),
}


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, interval: float, within: float = PATIENCE
) -> float:
    """Check ``condition`` every ``interval`` seconds until it holds; fail after
    ``within``. Returns how long it took."""
    started = time.monotonic()
    while not await condition():
        elapsed = time.monotonic() - started
        assert elapsed < within, f"condition still false after {elapsed:.2f}s"
        await anyio.sleep(interval)
    return time.monotonic() - started


async def play(
    store: SessionStore,
    socket: str,
    order: int,
    record: Callable[[int], None],
    *,
    slight: bool = False,
    last: int | None = None,
    note: Callable[[str, int], None] | None = None,
) -> None:
    """Deliver message ``order`` of ``socket`` as a worker does.

    If it may run, run it (``record``), finish it, and run each message that frees, in
    turn; if it is parked, whoever finishes its predecessor runs it. Payloads carry
    the order number. The finish of order ``last`` is the socket's last. ``note`` is
    told of each ``"parked"`` and ``"done"`` (finished) order.
    """
    note = note or (lambda event, number: None)
    if not await store.order_start(socket, order, slight, str(order).encode(), TTL):
        note("parked", order)
        return
    due = [order]
    while due:
        current = due.pop(0)
        record(current)
        await anyio.lowlevel.checkpoint()  # let other deliveries interleave here
        freed = await store.order_finish(socket, current, current == last, TTL)
        note("done", current)
        due.extend(int(payload) for payload in freed)


def paced(count: int) -> tuple[list[Delivery], int]:
    """Deliveries of ``range(count)`` in a random order, and their seed.

    Order ``k`` is due ``PACE * k`` seconds after the start, plus up to
    :data:`JITTER`: messages arrive about in order but overtake each other, as they
    do between workers. (Delivered all at once, one process would park every order
    and then run the whole chain itself; no turn would pass between processes.)
    """
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    schedule = [Delivery(order, order * PACE + rng.uniform(0, JITTER)) for order in range(count)]
    rng.shuffle(schedule)
    return schedule, seed


def handoffs(count: int, every: int) -> list[Delivery]:
    """Deliveries of ``range(count)`` that pass each turn to another process, twice
    over, whatever the timing.

    Dealt round-robin over the processes, consecutive orders belong to different
    processes. Each order is delivered once its predecessor is done, so it runs at
    once in its own process: the turn passed through the store. Every ``every``-th
    order instead is delivered at the start, and its predecessor only once it is
    parked: so the process that finishes the predecessor unparks it and runs it, a
    payload another process parked.
    """
    early = set(range(every, count, every))
    schedule = []
    for order in range(count):
        after = [] if order == 0 or order in early else [f"done {order - 1}"]
        if order + 1 in early:
            after.append(f"parked {order + 1}")
        schedule.append(Delivery(order, after=tuple(after)))
    return schedule


def shuffled(count: int) -> tuple[list[int], int]:
    """``range(count)`` in a random order, and the seed that made it (for messages)."""
    seed = random.randrange(2**32)
    orders = list(range(count))
    random.Random(seed).shuffle(orders)
    return orders, seed


class StoreContract:
    """Every promise of :class:`~chanlite.stores.SessionStore`, as tests.

    Subclasses implement :meth:`make_store` (and :meth:`cleanup_store` if closing is
    not enough); pytest collects them because their names start with ``Test``.
    """

    pytestmark = pytest.mark.anyio

    async def make_store(self) -> SessionStore:
        """Return a new, empty store, independent of every other store it made."""
        raise NotImplementedError("a StoreContract subclass must implement make_store()")

    async def cleanup_store(self, store: SessionStore) -> None:
        """Release ``store`` after a test, leaving nothing behind for the next one."""
        await store.aclose()

    @pytest.fixture
    async def store_factory(self) -> AsyncIterator[StoreFactory]:
        made: list[SessionStore] = []

        async def factory() -> SessionStore:
            store = await self.make_store()
            made.append(store)
            return store

        yield factory
        for store in made:
            await self.cleanup_store(store)

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> SessionStore:
        return await store_factory()

    # -- sessions -----------------------------------------------------------------

    async def test_saved_data_loads_back_equal_bytes_and_nesting_included(self, store):
        await store.save("http:round", SESSION_DATA, TTL)
        loaded = await store.load("http:round", TTL)
        assert loaded == SESSION_DATA
        assert isinstance(loaded["token"], bytes)
        assert isinstance(loaded["nested"][0]["deep"][0], bytes)

    async def test_load_of_a_missing_key_is_none(self, store):
        assert await store.load("http:never-saved", TTL) is None

    async def test_save_replaces_what_was_there(self, store):
        await store.save("replace", {"a": 1, "b": 2}, TTL)
        await store.save("replace", {"c": 3}, TTL)
        assert await store.load("replace", TTL) == {"c": 3}

    async def test_any_string_is_a_key_and_keys_do_not_share_data(self, store):
        for index, key in enumerate(ODD_KEYS):
            await store.save(key, {"index": index}, TTL)
        for index, key in enumerate(ODD_KEYS):
            assert await store.load(key, TTL) == {"index": index}

    async def test_each_load_is_a_copy_the_caller_may_change(self, store):
        data: dict[str, Any] = {"items": [1, 2], "inner": {"x": 1}}
        await store.save("copy", data, TTL)
        data["items"].append(3)  # after the save: the store kept what it was given
        first = await store.load("copy", TTL)
        first["items"].append(4)
        first["inner"]["x"] = 99
        assert await store.load("copy", TTL) == {"items": [1, 2], "inner": {"x": 1}}

    async def test_delete_forgets_the_key(self, store):
        await store.save("gone", {"a": 1}, TTL)
        await store.save("stays", {"b": 2}, TTL)
        await store.delete("gone")
        assert await store.load("gone", TTL) is None
        assert await store.load("stays", TTL) == {"b": 2}

    async def test_delete_of_a_missing_key_is_no_error(self, store):
        await store.delete("never-saved")
        assert await store.load("never-saved", TTL) is None

    @pytest.mark.parametrize(
        ("data", "named"),
        [
            ({"when": object()}, "['when']"),
            ({"deep": {"list": [1, {1, 2}]}}, "['deep']['list'][1]"),
            ({1: "int key"}, "key of type int"),
            ({"nan": math.nan}, "['nan']"),
        ],
    )
    async def test_unencodable_data_raises_type_error_and_stores_nothing(self, store, data, named):
        await store.save("typed", {"before": True}, TTL)
        with pytest.raises(TypeError, match=named.replace("[", r"\[").replace("]", r"\]")):
            await store.save("typed", data, TTL)
        assert await store.load("typed", TTL) == {"before": True}

    async def test_data_that_is_not_a_dict_raises_type_error(self, store):
        with pytest.raises(TypeError, match="must be a dict"):
            await store.save("listed", ["not", "a", "dict"], TTL)
        assert await store.load("listed", TTL) is None

    @pytest.mark.parametrize(
        ("ttl", "error"),
        [(0, ValueError), (-1.0, ValueError), (math.inf, ValueError), ("5", TypeError)],
    )
    async def test_a_ttl_must_be_a_positive_number(self, store, ttl, error):
        with pytest.raises(error, match="ttl"):
            await store.save("ttl", {"a": 1}, ttl)
        with pytest.raises(error, match="ttl"):
            await store.load("ttl", ttl)
        with pytest.raises(error, match="ttl"):
            await store.order_start("ttl.socket", 0, False, b"", ttl)
        with pytest.raises(error, match="ttl"):
            await store.order_finish("ttl.socket", 0, False, ttl)

    # -- expiry -------------------------------------------------------------------

    async def test_a_session_expires_ttl_after_its_last_use(self, store):
        await store.save("brief", {"n": 1}, 2.0)
        await store.save("kept", {"n": 2}, TTL)
        # This load finds it and sets its expiry to 0.15 s from now...
        assert await store.load("brief", 0.15) == {"n": 1}

        # ... so it is gone soon. Each probe that still finds it pushes the expiry
        # 0.05 s on; probing every 0.2 s lets it run out.
        async def expired() -> bool:
            return await store.load("brief", 0.05) is None

        assert await wait_for(expired, interval=0.2) < 1.5
        assert await store.load("kept", TTL) == {"n": 2}

    async def test_each_load_pushes_the_expiry_forward(self, store):
        ttl = 0.5
        await store.save("slide", {"n": 1}, ttl)
        started = time.monotonic()
        # Loading every 0.1 s keeps it alive well past the ttl of the save.
        while time.monotonic() - started < 3 * ttl:
            await anyio.sleep(0.1)
            assert await store.load("slide", ttl) == {"n": 1}

        async def expired() -> bool:
            return await store.load("slide", 0.05) is None

        assert await wait_for(expired, interval=0.2) < ttl + 1.5

    async def test_a_new_save_sets_a_new_expiry(self, store):
        await store.save("resaved", {"n": 1}, 0.05)
        await store.save("resaved", {"n": 2}, TTL)
        await anyio.sleep(0.1)  # past the first ttl: only the second counts
        assert await store.load("resaved", TTL) == {"n": 2}

    async def test_a_cursor_expires_with_what_it_parked(self, store):
        socket, ttl = "expiring", 0.15
        assert await store.order_start(socket, 0, False, b"c", ttl)
        assert await store.order_finish(socket, 0, False, ttl) == []  # next = 1
        assert not await store.order_start(socket, 3, False, b"stale", ttl)

        # While the cursor lives, a slight message runs (next >= 1) and touches it;
        # once it expired, next is 0 again and the probe is parked instead.
        async def expired() -> bool:
            return not await store.order_start(socket, 7, True, b"probe", ttl)

        await wait_for(expired, interval=2 * ttl)
        assert await store.order_start(socket, 0, False, b"c", TTL)
        assert await store.order_finish(socket, 0, False, TTL) == [b"probe"]
        assert await store.order_start(socket, 1, False, b"", TTL)
        assert await store.order_finish(socket, 1, False, TTL) == []
        assert await store.order_start(socket, 2, False, b"", TTL)
        assert await store.order_finish(socket, 2, True, TTL) == []  # "stale" went

    # -- ordering: strict ---------------------------------------------------------

    async def test_strict_messages_run_in_turn_and_the_last_deletes_the_cursor(self, store):
        socket = "strict"
        assert await store.order_start(socket, 0, False, b"p0", TTL)
        assert not await store.order_start(socket, 2, False, b"p2", TTL)
        assert await store.order_finish(socket, 0, False, TTL) == []
        assert await store.order_start(socket, 1, False, b"p1", TTL)
        assert await store.order_finish(socket, 1, False, TTL) == [b"p2"]
        assert await store.order_finish(socket, 2, True, TTL) == []
        # The cursor is gone: a new connection on this name starts from 0 again.
        assert await store.order_start(socket, 0, False, b"again", TTL)
        assert not await store.order_start(socket, 1, False, b"again1", TTL)

    async def test_a_fresh_socket_runs_order_0_and_parks_the_rest(self, store):
        assert not await store.order_start("fresh", 1, False, b"p1", TTL)
        assert await store.order_start("fresh", 0, False, b"p0", TTL)
        assert await store.order_finish("fresh", 0, False, TTL) == [b"p1"]

    async def test_only_the_lowest_parked_strict_message_is_freed(self, store):
        socket = "lowest"
        assert await store.order_start(socket, 0, False, b"", TTL)
        assert not await store.order_start(socket, 3, False, b"p3", TTL)
        assert not await store.order_start(socket, 2, False, b"p2", TTL)
        assert not await store.order_start(socket, 1, False, b"p1", TTL)
        assert await store.order_finish(socket, 0, False, TTL) == [b"p1"]
        assert await store.order_finish(socket, 1, False, TTL) == [b"p2"]
        assert await store.order_finish(socket, 2, False, TTL) == [b"p3"]
        assert await store.order_finish(socket, 3, True, TTL) == []

    async def test_next_only_moves_forward(self, store):
        socket = "max"
        assert await store.order_start(socket, 0, False, b"", TTL)
        assert await store.order_finish(socket, 4, False, TTL) == []  # next = 5
        assert await store.order_finish(socket, 0, False, TTL) == []  # still 5, not 1
        assert await store.order_start(socket, 5, False, b"", TTL)
        assert not await store.order_start(socket, 6, False, b"p6", TTL)
        assert await store.order_finish(socket, 2, False, TTL) == []  # 6 > 5: waits
        assert await store.order_finish(socket, 5, False, TTL) == [b"p6"]

    async def test_an_order_behind_next_runs_at_once(self, store):
        socket = "behind"
        assert await store.order_start(socket, 0, False, b"", TTL)
        assert await store.order_finish(socket, 3, False, TTL) == []
        assert await store.order_start(socket, 1, False, b"", TTL)

    async def test_last_with_messages_still_parked_keeps_the_cursor(self, store):
        socket = "not-yet"
        assert await store.order_start(socket, 0, False, b"", TTL)
        assert not await store.order_start(socket, 2, False, b"p2", TTL)
        assert await store.order_finish(socket, 0, True, TTL) == []
        assert await store.order_start(socket, 1, False, b"", TTL)  # next is still 1
        assert await store.order_finish(socket, 1, False, TTL) == [b"p2"]

    async def test_parking_an_order_again_replaces_its_payload(self, store):
        assert not await store.order_start("again", 1, False, b"old", TTL)
        assert not await store.order_start("again", 1, False, b"new", TTL)
        assert await store.order_start("again", 0, False, b"", TTL)
        assert await store.order_finish("again", 0, False, TTL) == [b"new"]

    async def test_sockets_have_cursors_of_their_own(self, store):
        assert await store.order_start("sock.a", 0, False, b"", TTL)
        assert await store.order_finish("sock.a", 0, False, TTL) == []
        assert not await store.order_start("sock.b", 1, False, b"b1", TTL)
        assert await store.order_start("sock.a", 1, False, b"a1", TTL)

    @pytest.mark.parametrize(("order", "error"), [(-1, ValueError), (True, TypeError)])
    async def test_an_order_must_be_a_non_negative_int(self, store, order, error):
        with pytest.raises(error, match="order"):
            await store.order_start("bad.order", order, False, b"", TTL)
        finish_order = -2 if order == -1 else order
        with pytest.raises(error, match="order"):
            await store.order_finish("bad.order", finish_order, False, TTL)

    async def test_a_payload_function_is_called_only_to_park(self, store):
        calls: list[int] = []

        def make(order: int):
            def payload() -> bytes:
                calls.append(order)
                return f"p{order}".encode()

            return payload

        socket = "lazy.payload"
        assert await store.order_start(socket, 0, False, make(0), TTL)
        assert not await store.order_start(socket, 2, False, make(2), TTL)
        assert await store.order_finish(socket, 0, False, TTL) == []
        assert await store.order_start(socket, 1, False, make(1), TTL)
        assert await store.order_finish(socket, 1, False, TTL) == [b"p2"]
        # The stores that run in this process call it only for the parked message.
        assert 2 in calls

    async def test_finish_of_minus_one_leaves_the_cursor_and_last_removes_it(self, store):
        socket = "out.of.turn"
        assert not await store.order_start(socket, 1, False, b"p1", TTL)
        assert await store.order_finish(socket, -1, False, TTL) == []
        assert not await store.order_start(socket, 2, False, b"p2", TTL)
        assert await store.order_start(socket, 0, False, b"", TTL)
        assert await store.order_finish(socket, 0, False, TTL) == [b"p1"]
        assert await store.order_finish(socket, 1, False, TTL) == [b"p2"]
        # Nothing parked: a last finish of -1 removes the cursor, so order 0 runs anew
        # and order 1 must wait for it again.
        assert await store.order_finish(socket, -1, True, TTL) == []
        assert not await store.order_start(socket, 1, False, b"again", TTL)

    # -- ordering: slight ---------------------------------------------------------

    async def test_slight_messages_wait_for_the_connect_then_all_come_back_in_order(self, store):
        socket = "slight"
        assert not await store.order_start(socket, 1, True, b"s1", TTL)
        assert not await store.order_start(socket, 3, True, b"s3", TTL)
        assert not await store.order_start(socket, 2, True, b"s2", TTL)
        assert await store.order_start(socket, 0, False, b"connect", TTL)
        assert await store.order_finish(socket, 0, False, TTL) == [b"s1", b"s2", b"s3"]
        # Once the connect has finished, slight messages run at once, in any order.
        assert await store.order_start(socket, 9, True, b"s9", TTL)
        assert await store.order_start(socket, 5, True, b"s5", TTL)

    async def test_freed_slight_and_strict_messages_come_lowest_order_first(self, store):
        socket = "mixed"
        assert not await store.order_start(socket, 3, True, b"s3", TTL)
        assert not await store.order_start(socket, 1, False, b"p1", TTL)
        assert not await store.order_start(socket, 2, True, b"s2", TTL)
        assert not await store.order_start(socket, 4, False, b"p4", TTL)
        assert await store.order_start(socket, 0, False, b"", TTL)
        assert await store.order_finish(socket, 0, False, TTL) == [b"p1", b"s2", b"s3"]
        assert await store.order_finish(socket, 1, False, TTL) == []  # 4 > next = 2
        assert await store.order_finish(socket, 3, False, TTL) == [b"p4"]

    async def test_parked_payloads_are_returned_byte_for_byte(self, store):
        payloads = [b"", bytes(range(256)), b"\x00" * 1000, "ünï".encode()]
        for order, payload in enumerate(payloads, start=1):
            assert not await store.order_start("binary", order, True, payload, TTL)
        assert await store.order_start("binary", 0, False, b"", TTL)
        assert await store.order_finish("binary", 0, False, TTL) == payloads

    # -- concurrency --------------------------------------------------------------

    async def test_concurrent_strict_deliveries_each_run_once_in_turn(self, store):
        count = 200
        orders, seed = shuffled(count)
        ran: list[int] = []
        async with anyio.create_task_group() as tg:
            for order in orders:
                tg.start_soon(partial(play, store, "race", order, ran.append, last=count - 1))
        assert ran == list(range(count)), f"shuffle seed {seed}"
        # The last finish deleted the cursor: the socket name starts afresh.
        assert not await store.order_start("race", 1, False, b"", TTL)

    async def test_concurrent_slight_deliveries_each_run_once_after_the_connect(self, store):
        count = 100
        orders, seed = shuffled(count)
        ran: list[int] = []
        async with anyio.create_task_group() as tg:
            for order in orders:
                tg.start_soon(partial(play, store, "crowd", order, ran.append, slight=order > 0))
        assert ran[0] == 0, f"shuffle seed {seed}"
        assert sorted(ran) == list(range(count)), f"shuffle seed {seed}"

    # -- independence -------------------------------------------------------------

    async def test_two_stores_do_not_share_state(self, store_factory):
        first, second = await store_factory(), await store_factory()
        await first.save("shared.key", {"in": "first"}, TTL)
        assert await second.load("shared.key", TTL) is None
        assert await first.order_start("shared.socket", 0, False, b"", TTL)
        assert await first.order_finish("shared.socket", 0, False, TTL) == []
        assert not await second.order_start("shared.socket", 1, False, b"", TTL)
        assert await first.order_start("shared.socket", 1, False, b"", TTL)

    # -- closing ------------------------------------------------------------------

    @pytest.mark.parametrize("operation", CLOSED_OPERATIONS.values(), ids=CLOSED_OPERATIONS.keys())
    async def test_every_operation_of_a_closed_store_raises_layer_error(
        self, operation: Callable[[SessionStore], Awaitable[Any]]
    ) -> None:
        # Not the store fixture: its cleanup may use the store, which refuses that now.
        store = await self.make_store()
        await store.save("closing", {"n": 1}, TTL)  # used before: closing is what refuses
        await store.delete("closing")
        await store.aclose()
        with pytest.raises(LayerError, match="closed by aclose"):
            await operation(store)
        await store.aclose()  # closing again is harmless


class SharedStoreContract(StoreContract):
    """What a store shared by processes promises, on top of :class:`StoreContract`."""

    def store_url(self) -> str:
        """A URL for :func:`~chanlite.stores.get_session_store` naming one store,
        private to the running test, that helper processes can open too."""
        raise NotImplementedError("a SharedStoreContract subclass must implement store_url()")

    @pytest.fixture
    async def open_url(self) -> AsyncIterator[Callable[[str], SessionStore]]:
        """Open stores by URL; cleaned up after the test."""
        made: list[SessionStore] = []

        def opener(url: str) -> SessionStore:
            store = get_session_store(url)
            made.append(store)
            return store

        yield opener
        for store in made:
            await self.cleanup_store(store)

    async def test_two_handles_on_one_url_share_sessions_and_cursors(self, open_url):
        url = self.store_url()
        first, second = open_url(url), open_url(url)
        await first.save("both", {"n": 1}, TTL)
        assert await second.load("both", TTL) == {"n": 1}
        await second.delete("both")
        assert await first.load("both", TTL) is None
        assert await first.order_start("both", 0, False, b"", TTL)
        assert not await second.order_start("both", 2, False, b"p2", TTL)
        assert await second.order_finish("both", 0, False, TTL) == []
        assert await first.order_start("both", 1, False, b"", TTL)
        assert await first.order_finish("both", 1, False, TTL) == [b"p2"]

    async def run_helpers(
        self, tmp_path: Path, shares: list[list[Delivery]], count: int
    ) -> list[tuple[int, int]]:
        """Deliver ``shares`` of the orders of socket ``xproc`` from one process each,
        started together; return (order, process index) for each run, as they ran."""
        url, log = self.store_url(), tmp_path / "ran.log"
        helpers = [OrderHelper(url, "xproc", log, count, share) for share in shares]
        self.started_helpers.extend(helpers)
        for helper in helpers:
            await helper.ready()
        for helper in helpers:
            helper.go()
        for helper in helpers:
            await helper.finished()
        index_of = {helper.process.pid: index for index, helper in enumerate(helpers)}
        runs = [line.split() for line in log.read_text().splitlines()]
        return [(int(order), index_of[int(pid)]) for event, order, pid in runs if event == "run"]

    @pytest.fixture(autouse=True)
    def _helpers(self) -> Iterator[None]:
        self.started_helpers: list[OrderHelper] = []
        yield
        for helper in self.started_helpers:
            helper.stop()

    async def test_turns_pass_between_processes_through_the_store(self, open_url, tmp_path):
        count, processes, every = 60, 3, 5
        schedule = handoffs(count, every)
        shares = [schedule[index::processes] for index in range(processes)]
        runs = await self.run_helpers(tmp_path, shares, count)
        assert [order for order, _ in runs] == list(range(count))
        # Each order ran in its own process, but each early one in its predecessor's.
        owner = [order % processes for order in range(count)]
        expected = [owner[o - 1] if o and o % every == 0 else owner[o] for o in range(count)]
        assert [runner for _, runner in runs] == expected
        store = open_url(self.store_url())  # the last finish deleted the cursor
        assert not await store.order_start("xproc", 1, False, b"", TTL)

    async def test_racing_deliveries_from_three_processes_each_run_once_in_turn(
        self, open_url, tmp_path
    ):
        count, processes = 150, 3
        schedule, seed = paced(count)
        shares = [schedule[index::processes] for index in range(processes)]
        runs = await self.run_helpers(tmp_path, shares, count)
        assert [order for order, _ in runs] == list(range(count)), f"seed {seed}"
        store = open_url(self.store_url())
        assert not await store.order_start("xproc", 1, False, b"", TTL)


# -- the helper process ------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """When a helper process delivers ``order``: ``delay`` seconds after the start, and
    then once the log holds each line of ``after`` (``"done 3"``, ``"parked 5"``)."""

    order: int
    delay: float = 0.0
    after: tuple[str, ...] = ()

    def encode(self) -> str:
        return "/".join(
            [f"{self.order}@{self.delay:.6f}", *(a.replace(" ", ":") for a in self.after)]
        )

    @classmethod
    def decode(cls, text: str) -> Delivery:
        when, *after = text.split("/")
        order, _, delay = when.partition("@")
        return cls(int(order), float(delay), tuple(a.replace(":", " ") for a in after))


class OrderHelper:
    """A process delivering some orders of one socket after a go signal, each when its
    :class:`Delivery` says: ``python -m tests.stores.contract URL SOCKET LOG COUNT
    DELIVERIES``.

    It appends ``run|parked|done ORDER PID`` lines to ``LOG``, each with one
    ``O_APPEND`` write, so the file holds every process's steps in the order they
    happened; and it follows the file for the lines its deliveries wait for.
    """

    def __init__(
        self, url: str, socket: str, log: Path, count: int, deliveries: list[Delivery]
    ) -> None:
        encoded = ",".join(delivery.encode() for delivery in deliveries)
        args = [url, socket, str(log), str(count), encoded]
        command = [sys.executable, "-m", "tests.stores.contract", *args]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def ready(self) -> None:
        """Wait for the ``ready`` line: its store is open."""
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        with anyio.fail_after(STARTUP):
            line = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
        if line != "ready\n":
            self.stop()
            pytest.fail(f"the helper did not start: {line!r}")

    def go(self) -> None:
        stdin: IO[str] = self.process.stdin  # type: ignore[assignment]
        stdin.write("go\n")
        stdin.flush()

    async def finished(self) -> None:
        """Wait until the helper has delivered all its orders and exited cleanly."""
        out, err = await anyio.to_thread.run_sync(self.process.communicate, None, STARTUP)
        assert self.process.returncode == 0, err
        assert out == "done\n", (out, err)

    def stop(self) -> None:
        """Kill the helper if it is still running (by its own PID)."""
        if self.process.returncode is None and self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


class LogFollower:
    """Follows the shared log, setting an event per line (``"done 3"``) once written."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._offset = 0
        self._events: dict[str, anyio.Event] = {}

    async def wait(self, line: str) -> None:
        await self._events.setdefault(line, anyio.Event()).wait()

    async def follow(self) -> None:
        """Read new lines every :data:`LOG_POLL` seconds, until cancelled."""
        while True:
            self._read()
            await anyio.sleep(LOG_POLL)

    def _read(self) -> None:
        """Set the events of the lines written since the last read (a few bytes)."""
        with open(self._path, "rb") as file:
            file.seek(self._offset)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line being written waits
        self._offset += len(complete)
        for line in complete.decode().splitlines():
            event, order, _ = line.split()
            self._events.setdefault(f"{event} {order}", anyio.Event()).set()


async def deliver_orders(
    url: str, socket: str, log: str, count: int, deliveries: list[Delivery]
) -> None:
    """The helper's work: open the store, say ready, wait for go, then deliver each
    order when its :class:`Delivery` says, concurrently."""
    store = get_session_store(url)
    descriptor = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    follower = LogFollower(log)

    def note(event: str, order: int) -> None:
        os.write(descriptor, f"{event} {order} {os.getpid()}\n".encode())

    # Like a worker's threads: at most this many deliveries at a time.
    slots = anyio.CapacityLimiter(HELPER_SLOTS)

    async def deliver(delivery: Delivery) -> None:
        await anyio.sleep(delivery.delay)  # pacing arrivals (see paced()), not a race
        for line in delivery.after:
            await follower.wait(line)
        async with slots:
            record = partial(note, "run")
            await play(store, socket, delivery.order, record, last=count - 1, note=note)

    try:
        await store.load("connect", TTL)  # connected before the go, not in the race
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        async with anyio.create_task_group() as following:
            following.start_soon(follower.follow)
            async with anyio.create_task_group() as tg:
                for delivery in deliveries:
                    tg.start_soon(deliver, delivery)
            following.cancel_scope.cancel()
    finally:
        os.close(descriptor)
        await store.aclose()
    print("done", flush=True)


def main(argv: list[str]) -> None:
    url, socket, log, count, deliveries = argv
    schedule = [Delivery.decode(text) for text in deliveries.split(",") if text]
    anyio.run(deliver_orders, url, socket, log, int(count), schedule)


if __name__ == "__main__":
    main(sys.argv[1:])
