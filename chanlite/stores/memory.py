"""``memory://``: a session store in this process's memory.

Every operation is a short critical section under one ``threading.Lock``, so the store
may be shared by any threads and event loops of the process; it holds no connection
and is bound to no event loop. Its state is seen only by this process.

* Session data is kept encoded (:func:`chanlite._codec.encode`): an unencodable value
  fails at save time, and every load decodes a fresh copy, so callers never share
  mutable state through the store.
* Expiry runs on the monotonic clock. An expired entry is dropped when it is next
  touched; besides, every :data:`SWEEP_EVERY`-th operation on a table examines a
  few entries at its front (:data:`SWEEP_BATCH` per operation since the last sweep),
  dropping the expired ones and moving live ones to the back.
  Tables are ordered by last use, so with one ttl per kind of entry the front holds
  the entries that expire first: dead keys cannot pile up, and no operation ever
  scans a whole table.
* After :meth:`MemorySessionStore.aclose` every operation raises
  :class:`~chanlite.LayerError`, as a closed Redis or SQLite store does.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from .._codec import decode, encode
from ..exceptions import LayerError
from .base import (
    Payload,
    SessionStore,
    check_order,
    check_ttl,
    may_run,
    payload_bytes,
    releasable,
)

__all__ = ["MemorySessionStore"]

#: How many entries at the front of a table each operation examines for expiry.
SWEEP_BATCH = 4
#: Operations between two sweeps of a table (the hot ordering path stays short).
SWEEP_EVERY = 16
#: How a memory store names itself in a LayerError.
BACKEND = "memory session store"


def _closed() -> LayerError:
    return LayerError(BACKEND, "closed by aclose()")


@dataclass
class _Session:
    expires: float
    data: bytes


@dataclass
class _Cursor:
    """The ordering state of one socket."""

    expires: float
    next: int = 0
    #: order -> (slight, payload) of the messages waiting for their turn.
    parked: dict[int, tuple[bool, bytes]] = field(default_factory=dict)


class MemorySessionStore(SessionStore):
    """Sessions and ordering cursors in a dict, for one process (``memory://``)."""

    schemes = ("memory",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        # Operations per table (by id) since the store began, to pace the sweeps.
        self._operations = {id(self._sessions): 0, id(self._cursors): 0}
        self._closed = False

    @classmethod
    def for_layer(cls, layer: object) -> MemorySessionStore:
        """A store for the workers of an in-memory ``layer``: state in this process,
        like the layer's."""
        return cls()

    # -- sessions -----------------------------------------------------------------

    async def load(self, key: str, ttl: float) -> dict[str, Any] | None:
        """The data under ``key`` (a fresh copy), sliding its expiry; None if none."""
        ttl = check_ttl(ttl)
        with self._lock:
            if self._closed:
                raise _closed()
            now = time.monotonic()
            session = _live(self._sessions, key, now)
            if session is None:
                self._maybe_sweep(self._sessions, now)
                return None
            session.expires = now + ttl
            self._sessions.move_to_end(key)
            self._maybe_sweep(self._sessions, now)
            data = session.data
        return decode(data)

    async def save(self, key: str, data: dict[str, Any], ttl: float) -> None:
        """Store ``data`` encoded under ``key``, expiring ``ttl`` seconds from now."""
        ttl = check_ttl(ttl)
        encoded = encode(data)  # outside the lock: TypeError before anything changes
        with self._lock:
            if self._closed:
                raise _closed()
            now = time.monotonic()
            self._sessions[key] = _Session(now + ttl, encoded)
            self._sessions.move_to_end(key)
            self._maybe_sweep(self._sessions, now)

    async def delete(self, key: str) -> None:
        """Forget ``key``."""
        with self._lock:
            if self._closed:
                raise _closed()
            self._sessions.pop(key, None)
            self._maybe_sweep(self._sessions, time.monotonic())

    # -- ordering cursors ---------------------------------------------------------

    async def order_start(
        self, socket: str, order: int, slight: bool, payload: Payload, ttl: float
    ) -> bool:
        """Run ``order`` now (True) or park ``payload`` (False); see the contract."""
        order, ttl = check_order(order), check_ttl(ttl)
        with self._lock:
            cursor = self._cursor(socket, ttl)
            if may_run(cursor.next, order, slight):
                return True
            cursor.parked[order] = (bool(slight), payload_bytes(payload))
            return False

    async def order_finish(self, socket: str, order: int, last: bool, ttl: float) -> list[bytes]:
        """Advance the cursor past ``order``; return the payloads now free to run."""
        order, ttl = check_order(order, lowest=-1), check_ttl(ttl)
        with self._lock:
            cursor = self._cursor(socket, ttl)
            cursor.next = max(cursor.next, order + 1)
            if not cursor.parked:  # the common case: nobody waits
                if last:
                    del self._cursors[socket]
                return []
            parked = sorted((number, slight) for number, (slight, _) in cursor.parked.items())
            released = [cursor.parked.pop(number)[1] for number in releasable(cursor.next, parked)]
            if last and not cursor.parked:
                del self._cursors[socket]
            return released

    def _cursor(self, socket: str, ttl: float) -> _Cursor:
        """The live cursor of ``socket`` (a new one if absent or expired), its expiry
        moved to ``ttl`` from now. Caller holds the lock; both ordering steps start
        here, so this is where a closed store refuses them."""
        if self._closed:
            raise _closed()
        now = time.monotonic()
        cursor = _live(self._cursors, socket, now)
        if cursor is None:
            cursor = self._cursors[socket] = _Cursor(now + ttl)
        else:
            cursor.expires = now + ttl
            self._cursors.move_to_end(socket)
        self._maybe_sweep(self._cursors, now)
        return cursor

    def _maybe_sweep(self, table: OrderedDict[str, Any], now: float) -> None:
        """Sweep ``table`` on every :data:`SWEEP_EVERY`-th call. Caller holds the lock."""
        count = self._operations[id(table)] = self._operations[id(table)] + 1
        if count % SWEEP_EVERY == 0:
            _sweep(table, now, SWEEP_BATCH * SWEEP_EVERY)

    async def aclose(self) -> None:
        """Drop every session and cursor; the store refuses work from now on."""
        with self._lock:
            self._closed = True
            self._sessions.clear()
            self._cursors.clear()

    def __repr__(self) -> str:
        with self._lock:
            if self._closed:
                return "<MemorySessionStore closed>"
            return (
                f"<MemorySessionStore sessions={len(self._sessions)} cursors={len(self._cursors)}>"
            )


def _live[Entry: (_Session, _Cursor)](
    table: OrderedDict[str, Entry], key: str, now: float
) -> Entry | None:
    """The unexpired entry under ``key``; an expired one is dropped."""
    entry = table.get(key)
    if entry is not None and entry.expires <= now:
        del table[key]
        return None
    return entry


def _sweep[Entry: (_Session, _Cursor)](
    table: OrderedDict[str, Entry], now: float, count: int
) -> None:
    """Examine up to ``count`` entries at the front: drop the expired, move the live
    to the back (so the next sweep looks further on)."""
    for _ in range(min(count, len(table))):
        key, entry = table.popitem(last=False)
        if entry.expires > now:
            table[key] = entry
