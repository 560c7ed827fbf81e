"""The SQLite layer's tables and indexes, and every SQL statement it runs on them.

:func:`create_schema` creates whatever of them is missing; the layer
(:mod:`chanlite.layers.sqlite`) decides when each statement runs, and in which
transaction.
"""

from __future__ import annotations

import functools
import sqlite3

from . import _sqlite_presence as presence
from ._sqlite_connection import immediate

__all__ = [
    "GROUPS",
    "HISTORY",
    "HISTORY_META",
    "MESSAGES",
    "SCHEMA",
    "INSERT",
    "RESTORE",
    "DEPTH",
    "SWEEP",
    "EVICT",
    "GROUP_ADD",
    "GROUP_DISCARD",
    "GROUP_EXPIRE",
    "GROUP_MEMBERS",
    "FLUSH",
    "QUEUE_DEPTHS",
    "GROUP_SIZES",
    "HISTORY_SWEEP",
    "HISTORY_META_SWEEP",
    "HISTORY_META_READ",
    "HISTORY_META_WRITE",
    "HISTORY_APPEND",
    "HISTORY_TRIM",
    "HISTORY_FORGET",
    "HISTORY_READ",
    "any_sql",
    "take_sql",
    "create_schema",
]

#: Table names, defined once; every row also carries the layer's prefix.
MESSAGES = "chanlite_messages"
GROUPS = "chanlite_groups"
#: Group history (DESIGN §11): the messages kept, and each group's epoch and offset.
HISTORY = "chanlite_history"
HISTORY_META = "chanlite_history_meta"

# AUTOINCREMENT never reuses an id, so ids give FIFO order and a message taken by a
# receive that was then cancelled can be put back under its own id (see
# SQLiteChannelLayer._restore).
SCHEMA = (
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
    # One row per message kept in a group's history; seq is its offset in the epoch.
    f"""CREATE TABLE IF NOT EXISTS {HISTORY} (
        layer TEXT NOT NULL,
        grp TEXT NOT NULL,
        seq INTEGER NOT NULL,
        payload BLOB NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (layer, grp, seq)
    )""",
    f"CREATE INDEX IF NOT EXISTS {HISTORY}_expiry ON {HISTORY} (layer, expires_at)",
    # A group's epoch and latest offset, forgotten at expires_at (then a new epoch).
    f"""CREATE TABLE IF NOT EXISTS {HISTORY_META} (
        layer TEXT NOT NULL,
        grp TEXT NOT NULL,
        epoch TEXT NOT NULL,
        seq INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (layer, grp)
    ) WITHOUT ROWID""",
    f"CREATE INDEX IF NOT EXISTS {HISTORY_META}_expiry ON {HISTORY_META} (layer, expires_at)",
)

INSERT = f"INSERT INTO {MESSAGES} (layer, queue, channel, payload, expires_at) VALUES (?,?,?,?,?)"
RESTORE = (
    f"INSERT INTO {MESSAGES} (id, layer, queue, channel, payload, expires_at) VALUES (?,?,?,?,?,?)"
)
DEPTH = f"SELECT count(*) FROM {MESSAGES} WHERE layer = ? AND queue = ?"
SWEEP = f"DELETE FROM {MESSAGES} WHERE layer = ? AND expires_at <= ? RETURNING channel"
EVICT = f"DELETE FROM {GROUPS} WHERE layer = ? AND channel = ?"
GROUP_ADD = (
    f"INSERT INTO {GROUPS} (layer, grp, channel, expires_at) VALUES (?,?,?,?) "
    "ON CONFLICT (layer, grp, channel) DO UPDATE SET expires_at = excluded.expires_at"
)
GROUP_DISCARD = f"DELETE FROM {GROUPS} WHERE layer = ? AND grp = ? AND channel = ?"
GROUP_EXPIRE = f"DELETE FROM {GROUPS} WHERE layer = ? AND grp = ? AND expires_at <= ?"
GROUP_MEMBERS = f"SELECT channel FROM {GROUPS} WHERE layer = ? AND grp = ? AND expires_at > ?"
FLUSH = (
    f"DELETE FROM {MESSAGES} WHERE layer = ?",
    f"DELETE FROM {GROUPS} WHERE layer = ?",
    f"DELETE FROM {HISTORY} WHERE layer = ?",
    f"DELETE FROM {HISTORY_META} WHERE layer = ?",
    *presence.FLUSH,
)
QUEUE_DEPTHS = (
    f"SELECT queue, count(*) FROM {MESSAGES} WHERE layer = ? AND expires_at > ? GROUP BY queue"
)
GROUP_SIZES = f"SELECT grp, count(*) FROM {GROUPS} WHERE layer = ? AND expires_at > ? GROUP BY grp"
HISTORY_SWEEP = f"DELETE FROM {HISTORY} WHERE layer = ? AND expires_at <= ?"
HISTORY_META_SWEEP = f"DELETE FROM {HISTORY_META} WHERE layer = ? AND expires_at <= ?"
HISTORY_META_READ = f"SELECT epoch, seq FROM {HISTORY_META} WHERE layer = ? AND grp = ?"
HISTORY_META_WRITE = (
    f"INSERT INTO {HISTORY_META} (layer, grp, epoch, seq, expires_at) VALUES (?,?,?,?,?) "
    "ON CONFLICT (layer, grp) DO UPDATE SET "
    "epoch = excluded.epoch, seq = excluded.seq, expires_at = excluded.expires_at"
)
HISTORY_APPEND = f"INSERT INTO {HISTORY} (layer, grp, seq, payload, expires_at) VALUES (?,?,?,?,?)"
#: Parameters: layer, group, and the newest offset to drop (the latest minus N).
HISTORY_TRIM = f"DELETE FROM {HISTORY} WHERE layer = ? AND grp = ? AND seq <= ?"
HISTORY_FORGET = f"DELETE FROM {HISTORY} WHERE layer = ? AND grp = ?"
#: A group's live epoch and offset, with its live entries oldest first (one row with
#: NULL entry columns when none is left), read in one statement: one snapshot.
#: Parameters: now, layer, group, now.
HISTORY_READ = (
    f"SELECT m.epoch, m.seq, h.seq, h.payload FROM {HISTORY_META} AS m "
    f"LEFT JOIN {HISTORY} AS h "
    "ON h.layer = m.layer AND h.grp = m.grp AND h.expires_at > ? "
    "WHERE m.layer = ? AND m.grp = ? AND m.expires_at > ? ORDER BY h.seq"
)


@functools.lru_cache(maxsize=64)
def any_sql(count: int) -> str:
    """A read telling whether any of ``count`` queues holds a row (no write lock).

    Parameters: the ``count`` queue names, then the layer.
    """
    marks = ",".join("?" * count)
    return f"SELECT 1 FROM {MESSAGES} WHERE queue IN ({marks}) AND layer = ? LIMIT 1"


@functools.lru_cache(maxsize=64)
def take_sql(count: int) -> str:
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


def create_schema(conn: sqlite3.Connection) -> None:
    with immediate(conn):
        for statement in (*SCHEMA, *presence.SCHEMA):  # presence: its own module's tables
            conn.execute(statement)
