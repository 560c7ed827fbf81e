"""The SQLite layer's group presence (DESIGN §12): its tables, and each change made to
them.

Every function runs on the layer's connection thread, inside one ``BEGIN IMMEDIATE``
transaction of the caller's (:func:`immediate`), so each change is atomic across
processes: a leave is returned to the one caller whose transaction removed the row.

* ``PRESENCE`` holds one row per present member: its data, client id, process prefix
  (NULL for a channel that is not process-specific) and ``held_until`` (0 while its
  socket is open, else the end of its grace).
* ``PRESENCE_VALUES`` counts the members of each distinct value of a group, and
  ``PRESENCE_GROUPS`` how many distinct values a group has: ``presence_count`` reads
  one row.
* ``ALIVE`` holds the heartbeat of each process: a row that expires.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from ..presence import Leaves, process_of
from ._sqlite_connection import SQLiteConnection, immediate

__all__ = ["FLUSH", "SCHEMA", "SQLitePresence"]

#: Table names, defined once; every row also carries the layer's prefix.
PRESENCE = "chanlite_presence"
PRESENCE_VALUES = "chanlite_presence_values"
PRESENCE_GROUPS = "chanlite_presence_groups"
ALIVE = "chanlite_alive"

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {PRESENCE} (
        layer TEXT NOT NULL,
        grp TEXT NOT NULL,
        channel TEXT NOT NULL,
        process TEXT,
        client TEXT,
        data BLOB NOT NULL,
        held_until REAL NOT NULL,
        PRIMARY KEY (layer, grp, channel)
    ) WITHOUT ROWID""",
    # A socket that closes finds its rows; a sweep finds the held ones and a process's.
    f"CREATE INDEX IF NOT EXISTS {PRESENCE}_channel ON {PRESENCE} (layer, channel)",
    f"CREATE INDEX IF NOT EXISTS {PRESENCE}_client ON {PRESENCE} (layer, grp, client)",
    f"CREATE INDEX IF NOT EXISTS {PRESENCE}_held ON {PRESENCE} (layer, held_until)",
    f"CREATE INDEX IF NOT EXISTS {PRESENCE}_process ON {PRESENCE} (layer, process)",
    f"""CREATE TABLE IF NOT EXISTS {PRESENCE_VALUES} (
        layer TEXT NOT NULL,
        grp TEXT NOT NULL,
        value BLOB NOT NULL,
        members INTEGER NOT NULL,
        PRIMARY KEY (layer, grp, value)
    ) WITHOUT ROWID""",
    f"""CREATE TABLE IF NOT EXISTS {PRESENCE_GROUPS} (
        layer TEXT NOT NULL,
        grp TEXT NOT NULL,
        distinct_values INTEGER NOT NULL,
        PRIMARY KEY (layer, grp)
    ) WITHOUT ROWID""",
    f"""CREATE TABLE IF NOT EXISTS {ALIVE} (
        layer TEXT NOT NULL,
        process TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (layer, process)
    ) WITHOUT ROWID""",
)
FLUSH = tuple(
    f"DELETE FROM {table} WHERE layer = ?"
    for table in (PRESENCE, PRESENCE_VALUES, PRESENCE_GROUPS, ALIVE)
)

_ENTRY = (
    f"SELECT data, client, held_until FROM {PRESENCE} WHERE layer = ? AND grp = ? AND channel = ?"
)
_BY_CLIENT = f"SELECT channel FROM {PRESENCE} WHERE layer = ? AND grp = ? AND client = ?"
_PUT = (
    f"INSERT OR REPLACE INTO {PRESENCE} "
    "(layer, grp, channel, process, client, data, held_until) VALUES (?,?,?,?,?,?,0)"
)
_DELETE = f"DELETE FROM {PRESENCE} WHERE layer = ? AND grp = ? AND channel = ? RETURNING data"
_HOLD = f"UPDATE {PRESENCE} SET held_until = ? WHERE layer = ? AND grp = ? AND channel = ?"
_OF_CHANNEL = f"SELECT grp, client, held_until FROM {PRESENCE} WHERE layer = ? AND channel = ?"
# Held rows whose grace ended, and open rows of processes with no live heartbeat.
# Parameters: layer, now, now.
_SWEPT = (
    f"SELECT grp, channel FROM {PRESENCE} AS p WHERE p.layer = ? AND ("
    "(p.held_until > 0 AND p.held_until <= ?) OR (p.held_until = 0 AND p.process IS NOT NULL "
    f"AND NOT EXISTS (SELECT 1 FROM {ALIVE} AS a "
    "WHERE a.layer = p.layer AND a.process = p.process AND a.expires_at > ?)))"
)
_VALUE_UP = (
    f"INSERT INTO {PRESENCE_VALUES} (layer, grp, value, members) VALUES (?,?,?,1) "
    "ON CONFLICT (layer, grp, value) DO UPDATE SET members = members + 1 RETURNING members"
)
_VALUE_DOWN = (
    f"UPDATE {PRESENCE_VALUES} SET members = members - 1 "
    "WHERE layer = ? AND grp = ? AND value = ? RETURNING members"
)
_VALUE_GONE = f"DELETE FROM {PRESENCE_VALUES} WHERE layer = ? AND grp = ? AND value = ?"
_DISTINCT = (
    f"INSERT INTO {PRESENCE_GROUPS} (layer, grp, distinct_values) VALUES (?,?,?) "
    "ON CONFLICT (layer, grp) DO UPDATE "
    "SET distinct_values = distinct_values + excluded.distinct_values"
)
_READ = f"SELECT channel, data FROM {PRESENCE} WHERE layer = ? AND grp = ?"
_COUNT = f"SELECT distinct_values FROM {PRESENCE_GROUPS} WHERE layer = ? AND grp = ?"
_BEAT = (
    f"INSERT INTO {ALIVE} (layer, process, expires_at) VALUES (?,?,?) "
    "ON CONFLICT (layer, process) DO UPDATE SET expires_at = excluded.expires_at"
)
_ALIVE_SWEEP = f"DELETE FROM {ALIVE} WHERE layer = ? AND expires_at <= ?"


def join(
    conn: sqlite3.Connection, prefix: str, group: str, channel: str, data: bytes, client: str | None
) -> bool:
    """Move ``client``'s entry to ``channel``, or update or add ``channel``'s; True
    only if one was added."""
    moved_from = None
    if client is not None:
        row = conn.execute(_BY_CLIENT, (prefix, group, client)).fetchone()
        moved_from = row[0] if row is not None else None
    if moved_from is not None and moved_from != channel:
        _delete(conn, prefix, group, moved_from)
    added = _delete(conn, prefix, group, channel) is None and moved_from is None
    conn.execute(_PUT, (prefix, group, channel, process_of(channel), client, data))
    _count(conn, prefix, group, data, +1)
    return added


def remove(conn: sqlite3.Connection, prefix: str, group: str, channel: str) -> bytes | None:
    """Remove ``channel``'s entry if its socket is open; its data if it was removed."""
    row = conn.execute(_ENTRY, (prefix, group, channel)).fetchone()
    if row is None or row[2]:
        return None
    return _delete(conn, prefix, group, channel)


def close(conn: sqlite3.Connection, prefix: str, channel: str, now: float, grace: float) -> Leaves:
    """Hold ``channel``'s entries with a client id for ``grace`` seconds; remove the
    others and return them."""
    leaves: Leaves = {}
    for group, client, held_until in conn.execute(_OF_CHANNEL, (prefix, channel)).fetchall():
        if client is None:
            data = _delete(conn, prefix, group, channel)
            if data is not None:
                leaves[group] = {channel: data}
        elif not held_until:
            conn.execute(_HOLD, (now + grace, prefix, group, channel))
    return leaves


def sweep(conn: sqlite3.Connection, prefix: str, now: float) -> Leaves:
    """Remove the entries whose grace ended and the open entries of processes with no
    live heartbeat; return them."""
    conn.execute(_ALIVE_SWEEP, (prefix, now))
    leaves: Leaves = {}
    for group, channel in conn.execute(_SWEPT, (prefix, now, now)).fetchall():
        data = _delete(conn, prefix, group, channel)
        if data is not None:
            leaves.setdefault(group, {})[channel] = data
    return leaves


def beat(conn: sqlite3.Connection, prefix: str, process: str, until: float) -> None:
    """Keep ``process`` alive until ``until``."""
    conn.execute(_BEAT, (prefix, process, until))


def read(conn: sqlite3.Connection, prefix: str, group: str) -> dict[str, bytes]:
    """``group``'s entries: channel -> encoded data."""
    rows = conn.execute(_READ, (prefix, group)).fetchall()
    return {channel: bytes(data) for channel, data in rows}


def count(conn: sqlite3.Connection, prefix: str, group: str) -> int:
    """How many distinct values ``group``'s entries have (one row)."""
    row = conn.execute(_COUNT, (prefix, group)).fetchone()
    return int(row[0]) if row is not None else 0


def _delete(conn: sqlite3.Connection, prefix: str, group: str, channel: str) -> bytes | None:
    row = conn.execute(_DELETE, (prefix, group, channel)).fetchone()
    if row is None:
        return None
    data = bytes(row[0])
    _count(conn, prefix, group, data, -1)
    return data


def _count(conn: sqlite3.Connection, prefix: str, group: str, value: bytes, delta: int) -> None:
    """Count one more (``delta`` 1) or one fewer (-1) member with ``value``, and the
    group's distinct values with it."""
    if delta > 0:
        (members,) = conn.execute(_VALUE_UP, (prefix, group, value)).fetchone()
        if members == 1:
            conn.execute(_DISTINCT, (prefix, group, 1))
        return
    (members,) = conn.execute(_VALUE_DOWN, (prefix, group, value)).fetchone()
    if members <= 0:
        conn.execute(_VALUE_GONE, (prefix, group, value))
        conn.execute(_DISTINCT, (prefix, group, -1))


class SQLitePresence:
    """The presence part of :class:`~chanlite.layers.sqlite.SQLiteChannelLayer`: each
    change is one transaction on the layer's connection."""

    _db: SQLiteConnection
    prefix: str
    presence_grace: float

    async def store_presence_join(
        self, group: str, channel: str, payload: bytes, client_id: str | None
    ) -> bool:
        """Add, update or take over ``channel``'s entry (one transaction)."""
        return await self._db.run(
            _in_transaction, join, self.prefix, group, channel, payload, client_id
        )

    async def store_presence_remove(self, group: str, channel: str) -> bytes | None:
        """Remove ``channel``'s entry if its socket is open (one transaction)."""
        return await self._db.run(_in_transaction, remove, self.prefix, group, channel)

    async def store_presence_close(self, channel: str) -> Leaves:
        """Hold ``channel``'s entries with a client id; remove the others."""
        grace, now = self.presence_grace, time.time()
        return await self._db.run(_in_transaction, close, self.prefix, channel, now, grace)

    async def store_presence_sweep(self) -> Leaves:
        """Remove ended graces and dead processes' entries (one transaction)."""
        return await self._db.run(_in_transaction, sweep, self.prefix, time.time())

    async def presence_heartbeat(self, process: str, ttl: float) -> None:
        """Keep ``process`` alive for ``ttl`` seconds (a row that expires)."""
        until = time.time() + ttl
        await self._db.run(_in_transaction, beat, self.prefix, process, until)

    async def read_presence(self, group: str) -> dict[str, bytes]:
        """``group``'s entries: channel -> encoded data."""
        return await self._db.run(read, self.prefix, group)

    async def read_presence_count(self, group: str) -> int:
        """How many distinct values ``group``'s entries have (one row)."""
        return await self._db.run(count, self.prefix, group)


def _in_transaction[T](conn: sqlite3.Connection, job: Callable[..., T], *args: Any) -> T:
    """``job(conn, *args)`` in one ``BEGIN IMMEDIATE`` transaction."""
    with immediate(conn):
        return job(conn, *args)
