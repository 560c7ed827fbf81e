"""``sqlite:///path.db``: a layer in one SQLite file, for several processes on one machine.

Every process opens the file with its own connection; SQLite's locking makes each
write transaction atomic across them, and WAL mode lets readers run beside the one
writer. Each layer keeps its connection on one dedicated thread
(:class:`SQLiteConnection`), so no blocking call runs on an event loop.

* ``send`` deletes expired messages, counts the channel and inserts, all in one
  ``BEGIN IMMEDIATE`` transaction: the capacity check holds across processes.
* ``receive`` takes the oldest message of its channels with one ``DELETE ... RETURNING``
  inside ``BEGIN IMMEDIATE``: a message leaves the table exactly once, so no two
  receivers in any processes get it.
* ``group_send`` to a group with history (DESIGN §11) appends the message to the
  group's history, trims it to its size and drops expired entries in the same
  transaction as the deliveries, so positions follow the order of the commits.
* SQLite cannot notify other processes, so a waiting receiver polls, backing off from
  :data:`POLL_MIN` to :data:`POLL_MAX`. A send in the same process wakes a waiting
  receiver at once through an in-process notifier shared by every layer on the same
  file and prefix.

Layers are kept apart by their ``prefix``, stored in a ``layer`` column of every row;
``flush`` deletes only this layer's rows.

An ``sqlite3.Error`` of any operation (a locked, unreadable or corrupted file, a table
dropped from under the layer), and any use of a closed layer or store, raises
:class:`~chanlite.LayerError` with the sqlite3 error as its cause:
:class:`SQLiteConnection` converts it where each call ends.

This module is the layer; its parts live beside it: the connection and its thread in
:mod:`~chanlite.layers._sqlite_connection`, the tables and SQL statements in
:mod:`~chanlite.layers._sqlite_schema`, group histories in
:mod:`~chanlite.layers._sqlite_history`, group presence in
:mod:`~chanlite.layers._sqlite_presence`, the in-process notifier in
:mod:`~chanlite.layers._sqlite_wakeups`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, NamedTuple

from .._codec import decode
from ..exceptions import ChannelFull
from ..history import KeptHistory, meta_ttl, stamp
from ..names import is_process_specific, queue_name, validate_channel_name, validate_group_name
from . import _sqlite_history as sql_history
from . import _sqlite_schema as sql
from ._deadline import deadline_after, past, pause
from ._sqlite_connection import SQLiteConnection, database_path, immediate
from ._sqlite_presence import SQLitePresence
from ._sqlite_schema import GROUPS as GROUPS  # re-exported: the table names
from ._sqlite_schema import MESSAGES as MESSAGES
from ._sqlite_wakeups import notifier_for
from .base import BaseChannelLayer, ReceiveResult

if TYPE_CHECKING:
    from ..stores.base import SessionStore

__all__ = ["SQLiteChannelLayer", "SQLiteConnection", "database_path", "immediate"]

logger = logging.getLogger(__name__)

#: The first and the longest pause between two polls of a waiting receiver (seconds).
POLL_MIN = 0.001
POLL_MAX = 0.02


class _Taken(NamedTuple):
    """A message deleted from the table by a receive."""

    id: int
    channel: str
    payload: bytes
    expires_at: float


class _TakeToken:
    """Hands a taken message from the connection thread to its receive, or back.

    Whichever side comes second under the lock sees what the other did: a message taken
    for a receive that was cancelled meanwhile is put back, never dropped.
    """

    __slots__ = ("abandoned", "lock", "taken")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False
        self.taken: _Taken | None = None


class SQLiteChannelLayer(SQLitePresence, BaseChannelLayer):
    """A channel layer in a SQLite file, shared by processes on one machine."""

    schemes = ("sqlite",)
    #: Polling bounds of a waiting receiver (seconds); tests may change them per layer.
    poll_min = POLL_MIN
    poll_max = POLL_MAX

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(**options)
        self.path = database_path(url)
        self._db = SQLiteConnection(self.path, setup=sql.create_schema)
        self._notifier = notifier_for(self.path, self.prefix)
        self._take_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
        self._take_locks = weakref.WeakKeyDictionary()
        self._take_locks_guard = threading.Lock()
        # Connections of stores made for this layer, closed with it; held weakly, so
        # a store dropped early still closes its connection when it is collected.
        self._companions: weakref.WeakSet[SQLiteConnection] = weakref.WeakSet()
        #: Receives woken by a send in this process rather than finding a message by polling.
        self.local_wakeups = 0

    # -- sending --------------------------------------------------------------

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        """Append ``payload`` to ``channel``; raise ChannelFull when at capacity."""
        queue = queue_name(channel)
        capacity = self.capacity_for(queue)
        if not await self._db.run(self._send_job, channel, payload, capacity):
            raise ChannelFull(channel, capacity)

    def _send_job(
        self, conn: sqlite3.Connection, channel: str, payload: bytes, capacity: int
    ) -> bool:
        queue = queue_name(channel)
        now = time.time()
        with immediate(conn):
            self._sweep(conn, now)
            if self._depth(conn, queue) >= capacity:
                return False
            conn.execute(sql.INSERT, (self.prefix, queue, channel, payload, now + self.expiry))
        self._notifier.wake_one(queue)
        return True

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        """Append ``payload`` to every live member; full members are skipped."""
        size = self.history_size(group) if self.history_globs else 0
        self.group_full_skips += await self._db.run(self._group_send_job, group, payload, size)

    def _group_send_job(
        self, conn: sqlite3.Connection, group: str, payload: bytes, history_size: int
    ) -> int:
        """Deliver to every member in one transaction, after appending to the group's
        history if it keeps ``history_size`` messages (then its members get it stamped
        with its position); return how many were full."""
        now = time.time()
        with immediate(conn):
            self._sweep(conn, now)
            if history_size:
                position = sql_history.append(
                    conn,
                    self.prefix,
                    group,
                    payload,
                    size=history_size,
                    now=now,
                    ttl=self.history_ttl,
                    meta_ttl=meta_ttl(self.history_ttl, self.group_expiry),
                )
                payload = stamp(payload, group, position)
            members = self._live_members(conn, group, now)
            delivered = self._deliver(conn, members, payload, now)
        for queue in delivered:
            self._notifier.wake_one(queue)
        return len(members) - len(delivered)

    def _deliver(
        self, conn: sqlite3.Connection, channels: list[str], payload: bytes, now: float
    ) -> list[str]:
        """Insert ``payload`` for each channel with room; return the queues written."""
        delivered: list[str] = []
        depths: dict[str, int] = {}
        for channel in channels:
            queue = queue_name(channel)
            depth = depths[queue] if queue in depths else self._depth(conn, queue)
            if depth >= self.capacity_for(queue):
                continue
            conn.execute(sql.INSERT, (self.prefix, queue, channel, payload, now + self.expiry))
            depths[queue] = depth + 1
            delivered.append(queue)
        return delivered

    def _depth(self, conn: sqlite3.Connection, queue: str) -> int:
        depth: int = conn.execute(sql.DEPTH, (self.prefix, queue)).fetchone()[0]
        return depth

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete this layer's expired messages; evict their process-specific channels."""
        rows = conn.execute(sql.SWEEP, (self.prefix, now)).fetchall()
        self.expired_messages += len(rows)
        expired = {channel for (channel,) in rows}
        evicted = [(self.prefix, channel) for channel in expired if is_process_specific(channel)]
        if evicted:
            conn.executemany(sql.EVICT, evicted)

    # -- receiving ------------------------------------------------------------

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> ReceiveResult:
        """Take the next message from any of ``channels`` (see the base contract)."""
        queues = self.receive_names(channels)
        deadline = deadline_after(timeout)
        delay = self.poll_min
        while True:
            # Registered before the take, so a send committed during it still wakes us.
            waiter = self._notifier.register(queues)
            try:
                taken = await self._take(queues)
                if taken is None and not past(deadline):
                    await waiter.wait(pause(deadline, delay))
            except BaseException:
                self._notifier.leave(waiter, queues)
                raise
            if taken is not None:
                self._notifier.leave(waiter, queues)
                return taken.channel, decode(taken.payload)
            if self._notifier.unregister(waiter, queues):
                self.local_wakeups += 1
            elif past(deadline):
                return None, None
            else:
                delay = min(delay * 2, self.poll_max)

    async def _take(self, queues: list[str]) -> _Taken | None:
        """Take the oldest message of ``queues``, or None; a cancelled take puts it back.

        Takes of one event loop run one at a time, so a message put back by a
        cancelled take is back before the next take of this loop: FIFO holds.
        """
        token = _TakeToken()
        async with self._take_lock():
            future = self._db.submit(self._take_job, queues, token)
            try:
                return await asyncio.wrap_future(future)
            except sqlite3.Error as error:
                raise self._db.failure(error) from error
            except asyncio.CancelledError:
                with token.lock:
                    token.abandoned = True
                    taken = token.taken
                if taken is not None:  # taken, but the receive is gone: put it back
                    self._db.submit(self._restore, taken).add_done_callback(_log_failure)
                raise

    def _take_job(
        self, conn: sqlite3.Connection, queues: list[str], token: _TakeToken
    ) -> _Taken | None:
        params = (*queues, self.prefix)
        if not conn.execute(sql.any_sql(len(queues)), params).fetchall():
            return None  # nothing there: no write lock needed
        with immediate(conn):
            self._sweep(conn, time.time())
            rows = conn.execute(sql.take_sql(len(queues)), params).fetchall()
        if not rows:
            return None
        taken = _Taken(*rows[0])
        with token.lock:
            if not token.abandoned:
                token.taken = taken
                return taken
        self._restore(conn, taken)
        return None

    def _restore(self, conn: sqlite3.Connection, taken: _Taken) -> None:
        """Put a taken message back under its own id, so it keeps its place in line."""
        queue = queue_name(taken.channel)
        conn.execute(sql.RESTORE, (taken.id, self.prefix, queue, *taken[1:]))
        self._notifier.wake_one(queue)

    def _take_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._take_locks_guard:
            lock = self._take_locks.get(loop)
            if lock is None:
                lock = self._take_locks[loop] = asyncio.Lock()
            return lock

    # -- groups ---------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, refreshing its membership expiry."""
        validate_group_name(group)
        validate_channel_name(channel)
        until = time.time() + self.group_expiry
        await self._db.run(_execute, sql.GROUP_ADD, (self.prefix, group, channel, until))

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` if it is a member."""
        validate_group_name(group)
        validate_channel_name(channel)
        await self._db.run(_execute, sql.GROUP_DISCARD, (self.prefix, group, channel))

    async def group_channels(self, group: str) -> set[str]:
        """The unexpired members of ``group``."""
        validate_group_name(group)
        return set(await self._db.run(self._members, group, time.time()))

    def _members(self, conn: sqlite3.Connection, group: str, now: float) -> list[str]:
        rows = conn.execute(sql.GROUP_MEMBERS, (self.prefix, group, now)).fetchall()
        return [channel for (channel,) in rows]

    def _live_members(self, conn: sqlite3.Connection, group: str, now: float) -> list[str]:
        conn.execute(sql.GROUP_EXPIRE, (self.prefix, group, now))
        return self._members(conn, group, now)

    # -- history --------------------------------------------------------------

    async def start_history(self, group: str) -> str:
        """``group``'s latest position, its epoch started if it has none."""
        ttl = meta_ttl(self.history_ttl, self.group_expiry)
        return await self._db.run(
            sql_history.start, self.prefix, group, now=time.time(), meta_ttl=ttl
        )

    async def read_history(self, group: str) -> KeptHistory:
        """``group``'s epoch, latest offset and unexpired messages, oldest first."""
        return await self._db.run(sql_history.read, self.prefix, group, time.time())

    # -- housekeeping ---------------------------------------------------------

    async def flush(self) -> None:
        """Delete this layer's messages, groups, group histories and presence (other
        prefixes are untouched); each group's next message starts a new epoch."""
        await self._db.run(self._flush_job)

    def _flush_job(self, conn: sqlite3.Connection) -> None:
        with immediate(conn):
            for statement in sql.FLUSH:
                conn.execute(statement, (self.prefix,))

    def waiting_receivers(self, channel: str) -> int:
        """How many receives in this process sleep waiting on ``channel``'s queue of
        this database file and prefix."""
        return self._notifier.waiting(queue_name(channel))

    def make_session_store(self) -> SessionStore:
        """A :class:`~chanlite.stores.sqlite.SQLiteSessionStore` in this layer's
        database file, under its prefix, closed with the layer."""
        from ..stores.sqlite import SQLiteSessionStore

        return SQLiteSessionStore.for_layer(self)

    async def stats(self) -> dict[str, Any]:
        """Current (unexpired) channel depths and group sizes of this layer."""
        return await self._db.run(self._stats_job, time.time())

    def _stats_job(self, conn: sqlite3.Connection, now: float) -> dict[str, Any]:
        params = (self.prefix, now)
        return {
            "channels": dict(conn.execute(sql.QUEUE_DEPTHS, params).fetchall()),
            "groups": dict(conn.execute(sql.GROUP_SIZES, params).fetchall()),
        }

    def close_with(self, connection: SQLiteConnection) -> None:
        """Close ``connection`` when this layer closes (at once if it already has).

        For the connection of a session store made for this layer, whose lifetime is
        the layer's.
        """
        if self._db.closed:
            connection.close()
        else:
            self._companions.add(connection)

    async def aclose(self) -> None:
        """Close the connection, and those given to :meth:`close_with`, and stop their
        threads; each is closed even if closing another fails. From now on every
        operation, of the layer and of those stores, raises
        :class:`~chanlite.LayerError`."""
        connections = [self._db, *self._companions]
        results = await asyncio.gather(*(db.aclose() for db in connections), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def __repr__(self) -> str:
        return f"<{type(self).__name__} path={self.path!r} prefix={self.prefix!r}>"


def _execute(conn: sqlite3.Connection, statement: str, params: tuple[Any, ...]) -> None:
    conn.execute(statement, params)


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error(
            "could not put back a message after a cancelled receive: %s", future.exception()
        )
