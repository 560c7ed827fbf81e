"""``sqlite:///path.db``: a session store in a SQLite file, for processes on one machine.

It keeps its tables in the same kind of file as the SQLite layer (and, through
:meth:`SQLiteSessionStore.for_layer`, in the layer's own file), with the same kind of
connection: :class:`~chanlite.layers.sqlite.SQLiteConnection` runs every call on one
dedicated thread, so no blocking call runs on an event loop, in WAL mode, and raises
an ``sqlite3.Error`` as a :class:`~chanlite.LayerError` caused by it.

Tables (names are the constants below; every row carries the store's ``prefix``, so
stores sharing a file stay apart):

* ``chanlite_sessions``: one row per session: its encoded data and expiry.
* ``chanlite_cursors``: one row per socket: ``next`` and the cursor's expiry.
* ``chanlite_parked``: one row per parked message: socket, order, slight flag, payload.

A load is one ``UPDATE ... RETURNING`` (read and slide the expiry in one statement);
``order_start`` and ``order_finish`` are each one ``BEGIN IMMEDIATE`` transaction,
which takes the file's write lock before reading the cursor: every process sees the
cursor each of them left, and no two finishes take the same parked message.

Expiry uses the wall clock (``time.time()``), which processes on one machine share.
Expired rows are ignored when read, and deleted when touched and by a sweep of this
store's expired rows at most every :attr:`SQLiteSessionStore.sweep_interval` seconds.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from .._codec import decode, encode
from ..exceptions import ConfigurationError
from ..layers.sqlite import SQLiteConnection, database_path, immediate
from .base import (
    DEFAULT_PREFIX,
    Payload,
    SessionStore,
    check_order,
    check_prefix,
    check_ttl,
    may_run,
    payload_bytes,
    releasable,
)

if TYPE_CHECKING:
    from ..layers.sqlite import SQLiteChannelLayer

__all__ = ["CURSORS", "PARKED", "SESSIONS", "SQLiteSessionStore"]

#: Table names, defined once.
SESSIONS = "chanlite_sessions"
CURSORS = "chanlite_cursors"
PARKED = "chanlite_parked"
#: How often a store deletes its expired rows, at most (seconds).
SWEEP_INTERVAL = 60.0

_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {SESSIONS} (
        prefix TEXT NOT NULL,
        key TEXT NOT NULL,
        data BLOB NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (prefix, key)
    )""",
    f"CREATE INDEX IF NOT EXISTS {SESSIONS}_expiry ON {SESSIONS} (prefix, expires)",
    f"""CREATE TABLE IF NOT EXISTS {CURSORS} (
        prefix TEXT NOT NULL,
        socket TEXT NOT NULL,
        next INTEGER NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (prefix, socket)
    )""",
    f"CREATE INDEX IF NOT EXISTS {CURSORS}_expiry ON {CURSORS} (prefix, expires)",
    f"""CREATE TABLE IF NOT EXISTS {PARKED} (
        prefix TEXT NOT NULL,
        socket TEXT NOT NULL,
        ord INTEGER NOT NULL,
        slight INTEGER NOT NULL,
        payload BLOB NOT NULL,
        PRIMARY KEY (prefix, socket, ord)
    )""",
)

# Parameters of each statement are in the order its placeholders appear.
_LOAD = (
    f"UPDATE {SESSIONS} SET expires = ? WHERE prefix = ? AND key = ? AND expires > ? RETURNING data"
)
_SAVE = (
    f"INSERT INTO {SESSIONS} (prefix, key, data, expires) VALUES (?,?,?,?) "
    "ON CONFLICT (prefix, key) DO UPDATE SET data = excluded.data, expires = excluded.expires"
)
_DELETE = f"DELETE FROM {SESSIONS} WHERE prefix = ? AND key = ?"
_CURSOR_GET = f"SELECT next, expires FROM {CURSORS} WHERE prefix = ? AND socket = ?"
_CURSOR_PUT = (
    f"INSERT INTO {CURSORS} (prefix, socket, next, expires) VALUES (?,?,?,?) "
    "ON CONFLICT (prefix, socket) DO UPDATE SET next = excluded.next, expires = excluded.expires"
)
_CURSOR_DELETE = f"DELETE FROM {CURSORS} WHERE prefix = ? AND socket = ?"
_PARKED_CLEAR = f"DELETE FROM {PARKED} WHERE prefix = ? AND socket = ?"
_PARK = f"INSERT OR REPLACE INTO {PARKED} (prefix, socket, ord, slight, payload) VALUES (?,?,?,?,?)"
_PARKED_LIST = f"SELECT ord, slight FROM {PARKED} WHERE prefix = ? AND socket = ? ORDER BY ord"
_UNPARK = f"DELETE FROM {PARKED} WHERE prefix = ? AND socket = ? AND ord = ? RETURNING payload"
# Parameters: prefix and now, for each statement.
_SWEEP = (
    f"DELETE FROM {SESSIONS} WHERE prefix = ? AND expires <= ?",
    # Plain ``?`` only: early Python 3.12 releases warn about numbered ones (``?1``).
    f"DELETE FROM {PARKED} WHERE (prefix, socket) IN "
    f"(SELECT prefix, socket FROM {CURSORS} WHERE prefix = ? AND expires <= ?)",
    f"DELETE FROM {CURSORS} WHERE prefix = ? AND expires <= ?",
)


def _create_schema(conn: sqlite3.Connection) -> None:
    with immediate(conn):
        for statement in _SCHEMA:
            conn.execute(statement)


def store_path(url_or_path: str | os.PathLike[str]) -> str:
    """The absolute database file of a ``sqlite:///`` URL or a file path.

    Raises :class:`~chanlite.exceptions.ConfigurationError` as
    :func:`~chanlite.layers.sqlite.database_path` does.
    """
    text = os.fspath(url_or_path)
    if not isinstance(text, str):
        raise ConfigurationError(f"a SQLite database path must be a str, got {url_or_path!r}")
    if "://" in text:
        return database_path(text)
    if not text or text == ":memory:" or text.endswith(("/", os.sep)):
        raise ConfigurationError(
            f"SQLite session store {text!r} needs a database file, e.g. sessions.db "
            "(for one process, use memory://)"
        )
    full = os.path.abspath(text)
    if not os.path.isdir(os.path.dirname(full)):
        raise ConfigurationError(
            f"SQLite session store {text!r}: the directory {os.path.dirname(full)!r} does not exist"
        )
    return full


class SQLiteSessionStore(SessionStore):
    """Sessions and ordering cursors in a SQLite file (``sqlite:///path.db``)."""

    schemes = ("sqlite",)
    #: How often this store deletes its expired rows, at most (seconds); tests may
    #: change it per store.
    sweep_interval = SWEEP_INTERVAL

    def __init__(
        self, url_or_path: str | os.PathLike[str], *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self.prefix = check_prefix(prefix)
        self.path = store_path(url_or_path)
        self._db = SQLiteConnection(self.path, setup=_create_schema)
        # Read and written only on the connection's thread.
        self._next_sweep = 0.0

    @classmethod
    def for_layer(cls, layer: SQLiteChannelLayer) -> SQLiteSessionStore:
        """A store in ``layer``'s database file, under its prefix, on a connection of
        its own that closing the layer also closes (as a Redis layer's store shares,
        and closes with, the layer's connections)."""
        store = cls(layer.path, prefix=layer.prefix)
        layer.close_with(store._db)
        return store

    # -- sessions -----------------------------------------------------------------

    async def load(self, key: str, ttl: float) -> dict[str, Any] | None:
        """The data under ``key``, sliding its expiry, in one statement."""
        data = await self._db.run(self._load_job, key, check_ttl(ttl))
        return None if data is None else decode(data)

    def _load_job(self, conn: sqlite3.Connection, key: str, ttl: float) -> bytes | None:
        now = time.time()
        rows = conn.execute(_LOAD, (now + ttl, self.prefix, key, now)).fetchall()
        self._sweep_if_due(conn, now)
        return bytes(rows[0][0]) if rows else None

    async def save(self, key: str, data: dict[str, Any], ttl: float) -> None:
        """Store ``data`` encoded under ``key`` (an upsert)."""
        ttl, encoded = check_ttl(ttl), encode(data)
        await self._db.run(self._save_job, key, encoded, ttl)

    def _save_job(self, conn: sqlite3.Connection, key: str, encoded: bytes, ttl: float) -> None:
        now = time.time()
        conn.execute(_SAVE, (self.prefix, key, encoded, now + ttl))
        self._sweep_if_due(conn, now)

    async def delete(self, key: str) -> None:
        """Forget ``key``."""
        await self._db.run(_execute, _DELETE, (self.prefix, key))

    # -- ordering cursors ---------------------------------------------------------

    async def order_start(
        self, socket: str, order: int, slight: bool, payload: Payload, ttl: float
    ) -> bool:
        """Check and park in one ``BEGIN IMMEDIATE`` transaction."""
        args = (socket, check_order(order), bool(slight), payload_bytes(payload), check_ttl(ttl))
        return await self._db.run(self._start_job, *args)

    def _start_job(
        self,
        conn: sqlite3.Connection,
        socket: str,
        order: int,
        slight: bool,
        payload: bytes,
        ttl: float,
    ) -> bool:
        now = time.time()
        with immediate(conn):
            next_order = self._cursor_next(conn, socket, now)
            runs = may_run(next_order, order, slight)
            conn.execute(_CURSOR_PUT, (self.prefix, socket, next_order, now + ttl))
            if not runs:
                conn.execute(_PARK, (self.prefix, socket, order, int(slight), payload))
        self._sweep_if_due(conn, now)
        return runs

    async def order_finish(self, socket: str, order: int, last: bool, ttl: float) -> list[bytes]:
        """Advance and unpark in one ``BEGIN IMMEDIATE`` transaction."""
        args = (socket, check_order(order, lowest=-1), bool(last), check_ttl(ttl))
        return await self._db.run(self._finish_job, *args)

    def _finish_job(
        self, conn: sqlite3.Connection, socket: str, order: int, last: bool, ttl: float
    ) -> list[bytes]:
        now = time.time()
        where = (self.prefix, socket)
        with immediate(conn):
            next_order = max(self._cursor_next(conn, socket, now), order + 1)
            rows = conn.execute(_PARKED_LIST, where).fetchall()
            parked = [(number, bool(slight)) for number, slight in rows]
            free = releasable(next_order, parked)
            released = [bytes(conn.execute(_UNPARK, (*where, n)).fetchall()[0][0]) for n in free]
            if last and len(free) == len(parked):
                conn.execute(_CURSOR_DELETE, where)
            else:
                conn.execute(_CURSOR_PUT, (*where, next_order, now + ttl))
        self._sweep_if_due(conn, now)
        return released

    def _cursor_next(self, conn: sqlite3.Connection, socket: str, now: float) -> int:
        """``next`` of the live cursor of ``socket``, or 0; an expired cursor and its
        parked messages are deleted. Runs inside the caller's transaction."""
        row = conn.execute(_CURSOR_GET, (self.prefix, socket)).fetchone()
        if row is None:
            return 0
        next_order, expires = row
        if expires > now:
            return int(next_order)
        conn.execute(_PARKED_CLEAR, (self.prefix, socket))
        conn.execute(_CURSOR_DELETE, (self.prefix, socket))
        return 0

    # -- housekeeping -------------------------------------------------------------

    def _sweep_if_due(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete this store's expired rows if the last sweep is ``sweep_interval`` old."""
        clock = time.monotonic()
        if clock < self._next_sweep:
            return
        self._next_sweep = clock + self.sweep_interval
        with immediate(conn):
            for statement in _SWEEP:
                conn.execute(statement, (self.prefix, now))

    async def aclose(self) -> None:
        """Close the connection and stop its thread."""
        await self._db.aclose()

    def __repr__(self) -> str:
        return f"<SQLiteSessionStore path={self.path!r} prefix={self.prefix!r}>"


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
    conn.execute(sql, params)
