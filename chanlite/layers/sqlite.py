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
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

from .._codec import decode
from ..exceptions import ChannelFull, ConfigurationError, LayerError
from ..names import is_process_specific, queue_name, validate_channel_name, validate_group_name
from .base import BaseChannelLayer, ReceiveResult, backend_failure

__all__ = ["SQLiteChannelLayer", "SQLiteConnection", "database_path", "immediate"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: The first and the longest pause between two polls of a waiting receiver (seconds).
POLL_MIN = 0.001
POLL_MAX = 0.02
#: How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT = 10.0

#: Table names, defined once; every row also carries the layer's prefix.
MESSAGES = "chanlite_messages"
GROUPS = "chanlite_groups"

# AUTOINCREMENT never reuses an id, so ids give FIFO order and a message taken by a
# receive that was then cancelled can be put back under its own id (see _restore).
_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {MESSAGES} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        layer TEXT NOT NULL,
        queue TEXT NOT NULL,
        channel TEXT NOT NULL,
        payload BLOB NOT NULL,
        expires_at REAL NOT NULL
    )""",
    # The head of a queue, and its depth, for take and the capacity check.
    f"CREATE INDEX IF NOT EXISTS {MESSAGES}_queue ON {MESSAGES} (layer, queue, id)",
    # Expired messages of a layer, found without scanning the live ones.
    f"CREATE INDEX IF NOT EXISTS {MESSAGES}_expiry ON {MESSAGES} (layer, expires_at)",
    f"""CREATE TABLE IF NOT EXISTS {GROUPS} (
        layer TEXT NOT NULL,
        grp TEXT NOT NULL,
        channel TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (layer, grp, channel)
    ) WITHOUT ROWID""",
    # Evicting a channel from every group it is in.
    f"CREATE INDEX IF NOT EXISTS {GROUPS}_channel ON {GROUPS} (layer, channel)",
)

_INSERT = f"INSERT INTO {MESSAGES} (layer, queue, channel, payload, expires_at) VALUES (?,?,?,?,?)"
_RESTORE = (
    f"INSERT INTO {MESSAGES} (id, layer, queue, channel, payload, expires_at) VALUES (?,?,?,?,?,?)"
)
_DEPTH = f"SELECT count(*) FROM {MESSAGES} WHERE layer = ? AND queue = ?"
_SWEEP = f"DELETE FROM {MESSAGES} WHERE layer = ? AND expires_at <= ? RETURNING channel"
_EVICT = f"DELETE FROM {GROUPS} WHERE layer = ? AND channel = ?"
_GROUP_ADD = (
    f"INSERT INTO {GROUPS} (layer, grp, channel, expires_at) VALUES (?,?,?,?) "
    "ON CONFLICT (layer, grp, channel) DO UPDATE SET expires_at = excluded.expires_at"
)
_GROUP_DISCARD = f"DELETE FROM {GROUPS} WHERE layer = ? AND grp = ? AND channel = ?"
_GROUP_EXPIRE = f"DELETE FROM {GROUPS} WHERE layer = ? AND grp = ? AND expires_at <= ?"
_GROUP_MEMBERS = f"SELECT channel FROM {GROUPS} WHERE layer = ? AND grp = ? AND expires_at > ?"
_FLUSH = (f"DELETE FROM {MESSAGES} WHERE layer = ?", f"DELETE FROM {GROUPS} WHERE layer = ?")
_QUEUE_DEPTHS = (
    f"SELECT queue, count(*) FROM {MESSAGES} WHERE layer = ? AND expires_at > ? GROUP BY queue"
)
_GROUP_SIZES = f"SELECT grp, count(*) FROM {GROUPS} WHERE layer = ? AND expires_at > ? GROUP BY grp"


@functools.lru_cache(maxsize=64)
def _any_sql(count: int) -> str:
    """A read telling whether any of ``count`` queues holds a row (no write lock).

    Parameters: the ``count`` queue names, then the layer.
    """
    marks = ",".join("?" * count)
    return f"SELECT 1 FROM {MESSAGES} WHERE queue IN ({marks}) AND layer = ? LIMIT 1"


@functools.lru_cache(maxsize=64)
def _take_sql(count: int) -> str:
    """One statement that deletes and returns the oldest row of ``count`` queues.

    Parameters: the ``count`` queue names, then the layer.

    Each queue's head is found through the (layer, queue, id) index, so taking costs
    the same however deep the queues are; the oldest head wins.
    """
    rows = ", ".join("(?)" for _ in range(count))  # VALUES has no compound-SELECT limit
    return (
        f"DELETE FROM {MESSAGES} WHERE id = (WITH q(name) AS (VALUES {rows}) "
        f"SELECT min((SELECT id FROM {MESSAGES} WHERE layer = ? AND queue = q.name "
        "ORDER BY id LIMIT 1)) FROM q) "
        "RETURNING id, channel, payload, expires_at"
    )


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in a ``BEGIN IMMEDIATE`` transaction: commit, or roll back on error.

    IMMEDIATE takes the write lock up front, so a read inside the block cannot be
    invalidated by another process before the block writes.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def database_path(url: str) -> str:
    """The absolute file path of ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

    Raises :class:`~chanlite.exceptions.ConfigurationError` for a URL with a host, a
    query, no file name, or a directory that does not exist.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"not a SQLite URL: {url!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"SQLite URL {url!r}: pass options to get_layer() or as keyword arguments"
        )
    if parts.netloc:
        raise ConfigurationError(
            f"SQLite URL {url!r} names a host {parts.netloc!r}; "
            "use sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)[1:]  # the slash after "sqlite://" separates the path
    if not path or path.endswith("/") or path == ":memory:":
        raise ConfigurationError(
            f"SQLite URL {url!r} needs a database file, e.g. sqlite:///chanlite.db "
            "(for one process, use memory://)"
        )
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if not os.path.isdir(directory):
        raise ConfigurationError(f"SQLite URL {url!r}: the directory {directory!r} does not exist")
    return full


class _Handle:
    """The connection owned by a :class:`SQLiteConnection`'s thread."""

    __slots__ = ("closed", "conn")

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.closed = False

    def close_connection(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _shutdown(executor: ThreadPoolExecutor, handle: _Handle) -> Future[None]:
    """Close the connection after the work already queued; the thread then ends.

    Run once: by :meth:`SQLiteConnection.aclose`, when its owner is collected, or at
    interpreter exit for a connection nobody closed.
    """
    handle.closed = True
    try:
        future = executor.submit(handle.close_connection)
    except RuntimeError:  # the interpreter is exiting: the executor takes no more work
        return _close_after_exit(executor, handle)
    executor.shutdown(wait=False)
    return future


def _close_after_exit(executor: ThreadPoolExecutor, handle: _Handle) -> Future[None]:
    """Close the connection on this thread once the connection's thread has ended.

    At exit the executor's thread runs the work already queued and ends, but accepts
    no more, so the close cannot be queued behind it.
    """
    executor.shutdown(wait=True)
    handle.close_connection()
    done: Future[None] = Future()
    done.set_result(None)
    return done


class SQLiteConnection:
    """One sqlite3 connection living on one dedicated thread.

    Every call runs in submission order on that thread, so work submitted later never
    overtakes work submitted earlier. The connection is in autocommit mode (use
    :func:`immediate` for transactions), in WAL mode with ``synchronous=NORMAL``, and
    waits up to ``busy_timeout`` seconds for another process's lock. It is closed by
    :meth:`aclose` or :meth:`close`, else when it is collected or the interpreter exits.

    :meth:`run` raises an ``sqlite3.Error`` of the call as a
    :class:`~chanlite.LayerError` caused by it; :meth:`submit` and :meth:`run` raise
    ``LayerError`` once the connection is closed.
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        setup: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = path
        #: How errors name this database.
        self.backend = f"SQLite database {path!r}"
        self._handle = _Handle()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="chanlite-sqlite")
        self._finalizer = weakref.finalize(self, _shutdown, self._executor, self._handle)
        try:
            self._executor.submit(self._open, busy_timeout, setup).result()
        except sqlite3.Error as exc:
            self.close()  # the connection, if it opened, is closed before the error is raised
            raise ConfigurationError(f"cannot use the SQLite database {path!r}: {exc}") from None
        except BaseException:
            self._finalizer()  # closed once the open, still running, has finished
            raise

    def _open(
        self, busy_timeout: float, setup: Callable[[sqlite3.Connection], None] | None
    ) -> None:
        # Only this connection's thread uses it; the one exception is the close at
        # interpreter exit, after that thread has ended (see _close_after_exit).
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._handle.conn = conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if setup is not None:
            setup(conn)

    def submit(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Future[T]:
        """Queue ``fn(connection, *args, **kwargs)`` on the connection's thread.

        The future gets what ``fn`` raises as it is (see :meth:`failure`). Raises
        LayerError if the connection is closed.
        """
        if self._handle.closed:
            raise self.closed_error()
        return self._executor.submit(lambda: fn(self._connection(), *args, **kwargs))

    async def run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(connection, *args, **kwargs)`` on the connection's thread.

        Cancelling the caller cancels ``fn`` only if it has not started yet. An
        ``sqlite3.Error`` is raised as a LayerError caused by it, as it is after
        the connection is closed.
        """
        try:
            return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))
        except sqlite3.Error as error:
            raise self.failure(error) from error

    def failure(self, error: sqlite3.Error) -> LayerError:
        """``error`` of this database as a LayerError caused by it."""
        return backend_failure(self.backend, error)

    def closed_error(self) -> LayerError:
        """The error of a call on this connection once it is closed."""
        return LayerError(self.backend, "closed by aclose()")

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` or :meth:`close` has been called."""
        return self._handle.closed

    def _connection(self) -> sqlite3.Connection:
        if self._handle.conn is None:
            raise self.closed_error()
        return self._handle.conn

    async def aclose(self) -> None:
        """Close the connection after the work already queued, and end the thread."""
        closing: Future[None] | None = self._finalizer()  # None once already closed
        if closing is not None:
            await asyncio.shield(asyncio.wrap_future(closing))

    def close(self) -> None:
        """Blocking :meth:`aclose`, for code that has no event loop."""
        closing: Future[None] | None = self._finalizer()
        if closing is not None:
            closing.result()

    def __repr__(self) -> str:
        return f"<SQLiteConnection path={self.path!r}>"


def _create_schema(conn: sqlite3.Connection) -> None:
    with immediate(conn):
        for statement in _SCHEMA:
            conn.execute(statement)


# -- in-process wake-ups ---------------------------------------------------------------


class _Waiter:
    """One waiting receive: a future on its own loop, and whether it was woken."""

    __slots__ = ("asleep", "future", "loop", "woken")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()
        self.woken = False
        #: True while the receive sleeps in :meth:`wait` (its take found nothing).
        self.asleep = False

    def wake(self) -> bool:
        """Resolve the future from any thread (caller holds the notifier lock)."""
        if self.woken or self.future.done():
            return False
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            _resolve(self.future)
        else:
            try:
                self.loop.call_soon_threadsafe(_resolve, self.future)
            except RuntimeError:  # its loop is closed: nobody is waiting there
                return False
        self.woken = True
        return True

    async def wait(self, timeout: float) -> None:
        """Wait until woken or ``timeout`` seconds pass."""
        self.asleep = True
        try:
            async with asyncio.timeout(timeout):
                await self.future
        except TimeoutError:
            pass
        finally:
            self.asleep = False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Notifier:
    """Waiting receivers of one database file and prefix, in this process.

    A committed send wakes one waiter of its queue, from whatever thread it ran on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, deque[_Waiter]] = {}

    def register(self, queues: list[str]) -> _Waiter:
        waiter = _Waiter()
        with self._lock:
            for queue in queues:
                self._waiters.setdefault(queue, deque()).append(waiter)
        return waiter

    def unregister(self, waiter: _Waiter, queues: list[str]) -> bool:
        """Forget ``waiter``; return whether it was woken (final once unregistered)."""
        with self._lock:
            for queue in queues:
                waiters = self._waiters.get(queue)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[queue]
            return waiter.woken

    def leave(self, waiter: _Waiter, queues: list[str]) -> None:
        """Unregister a waiter for good, passing on a wake-up it will not use."""
        if self.unregister(waiter, queues):
            for queue in queues:
                self.wake_one(queue)

    def wake_one(self, queue: str) -> None:
        with self._lock:
            waiters = self._waiters.get(queue)
            while waiters:
                if waiters.popleft().wake():
                    return

    def waiting(self, queue: str) -> int:
        """How many receivers sleep waiting on ``queue`` (for tests and debugging)."""
        with self._lock:
            return sum(1 for waiter in self._waiters.get(queue, ()) if waiter.asleep)


_notifiers: weakref.WeakValueDictionary[tuple[str, str], _Notifier] = weakref.WeakValueDictionary()
_notifiers_lock = threading.Lock()


def _notifier_for(path: str, prefix: str) -> _Notifier:
    key = (os.path.realpath(path), prefix)
    with _notifiers_lock:
        notifier = _notifiers.get(key)
        if notifier is None:
            notifier = _notifiers[key] = _Notifier()
        return notifier


# -- the layer ---------------------------------------------------------------------------


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


class SQLiteChannelLayer(BaseChannelLayer):
    """A channel layer in a SQLite file, shared by processes on one machine."""

    schemes = ("sqlite",)
    # Sends wait on the future of a job on the connection's thread.
    task_neutral_sends = True
    #: Polling bounds of a waiting receiver (seconds); tests may change them per layer.
    poll_min = POLL_MIN
    poll_max = POLL_MAX

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(**options)
        self.path = database_path(url)
        self._db = SQLiteConnection(self.path, setup=_create_schema)
        self._notifier = _notifier_for(self.path, self.prefix)
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
            conn.execute(_INSERT, (self.prefix, queue, channel, payload, now + self.expiry))
        self._notifier.wake_one(queue)
        return True

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        """Append ``payload`` to every live member; full members are skipped."""
        self.group_full_skips += await self._db.run(self._group_send_job, group, payload)

    def _group_send_job(self, conn: sqlite3.Connection, group: str, payload: bytes) -> int:
        """Deliver to every member in one transaction; return how many were full."""
        now = time.time()
        with immediate(conn):
            self._sweep(conn, now)
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
            conn.execute(_INSERT, (self.prefix, queue, channel, payload, now + self.expiry))
            depths[queue] = depth + 1
            delivered.append(queue)
        return delivered

    def _depth(self, conn: sqlite3.Connection, queue: str) -> int:
        depth: int = conn.execute(_DEPTH, (self.prefix, queue)).fetchone()[0]
        return depth

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete this layer's expired messages; evict their process-specific channels."""
        expired = {channel for (channel,) in conn.execute(_SWEEP, (self.prefix, now)).fetchall()}
        evicted = [(self.prefix, channel) for channel in expired if is_process_specific(channel)]
        if evicted:
            conn.executemany(_EVICT, evicted)

    # -- receiving ------------------------------------------------------------

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> ReceiveResult:
        """Take the next message from any of ``channels`` (see the base contract)."""
        queues = self.receive_names(channels)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        delay = self.poll_min
        while True:
            # Registered before the take, so a send committed during it still wakes us.
            waiter = self._notifier.register(queues)
            try:
                taken = await self._take(queues)
                if taken is None and not _past(deadline):
                    await waiter.wait(_pause(deadline, delay))
            except BaseException:
                self._notifier.leave(waiter, queues)
                raise
            if taken is not None:
                self._notifier.leave(waiter, queues)
                return taken.channel, decode(taken.payload)
            if self._notifier.unregister(waiter, queues):
                self.local_wakeups += 1
            elif _past(deadline):
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
        if not conn.execute(_any_sql(len(queues)), params).fetchall():
            return None  # nothing there: no write lock needed
        with immediate(conn):
            self._sweep(conn, time.time())
            rows = conn.execute(_take_sql(len(queues)), params).fetchall()
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
        conn.execute(_RESTORE, (taken.id, self.prefix, queue, *taken[1:]))
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
        await self._db.run(_execute, _GROUP_ADD, (self.prefix, group, channel, until))

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` if it is a member."""
        validate_group_name(group)
        validate_channel_name(channel)
        await self._db.run(_execute, _GROUP_DISCARD, (self.prefix, group, channel))

    async def group_channels(self, group: str) -> set[str]:
        """The unexpired members of ``group``."""
        validate_group_name(group)
        return set(await self._db.run(self._members, group, time.time()))

    def _members(self, conn: sqlite3.Connection, group: str, now: float) -> list[str]:
        rows = conn.execute(_GROUP_MEMBERS, (self.prefix, group, now)).fetchall()
        return [channel for (channel,) in rows]

    def _live_members(self, conn: sqlite3.Connection, group: str, now: float) -> list[str]:
        conn.execute(_GROUP_EXPIRE, (self.prefix, group, now))
        return self._members(conn, group, now)

    # -- housekeeping ---------------------------------------------------------

    async def flush(self) -> None:
        """Delete this layer's messages and groups (other prefixes are untouched)."""
        await self._db.run(self._flush_job)

    def _flush_job(self, conn: sqlite3.Connection) -> None:
        with immediate(conn):
            for statement in _FLUSH:
                conn.execute(statement, (self.prefix,))

    def waiting_receivers(self, channel: str) -> int:
        """How many receives in this process sleep waiting on ``channel``'s queue of
        this database file and prefix."""
        return self._notifier.waiting(queue_name(channel))

    async def stats(self) -> dict[str, Any]:
        """Current (unexpired) channel depths and group sizes of this layer."""
        return await self._db.run(self._stats_job, time.time())

    def _stats_job(self, conn: sqlite3.Connection, now: float) -> dict[str, Any]:
        params = (self.prefix, now)
        return {
            "channels": dict(conn.execute(_QUEUE_DEPTHS, params).fetchall()),
            "groups": dict(conn.execute(_GROUP_SIZES, params).fetchall()),
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


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    conn.execute(sql, params)


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error(
            "could not put back a message after a cancelled receive: %s", future.exception()
        )


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _pause(deadline: float | None, delay: float) -> float:
    if deadline is None:
        return delay
    return max(0.0, min(delay, deadline - time.monotonic()))
