"""The SQLite layer's group histories (DESIGN §11): what a group send appends, and
what ``read_history`` reads, in the tables of :mod:`~chanlite.layers._sqlite_schema`.

Both run on the layer's connection thread: :func:`append` inside the group send's
``BEGIN IMMEDIATE`` transaction (so positions follow the order of the commits, across
processes), :func:`read` as one statement (one snapshot).
"""

from __future__ import annotations

import sqlite3

from ..history import EMPTY, KeptHistory, format_position, new_epoch
from . import _sqlite_schema as sql
from ._sqlite_connection import immediate

__all__ = ["append", "read", "start"]


def append(
    conn: sqlite3.Connection,
    prefix: str,
    group: str,
    payload: bytes,
    *,
    size: int,
    now: float,
    ttl: float,
    meta_ttl: float,
) -> str:
    """Give ``payload`` the group's next offset and return its position.

    The entry is kept ``ttl`` seconds and the group keeps its last ``size`` only; the
    epoch and offset are forgotten ``meta_ttl`` seconds after this, and a group that
    has none (a first message, a flush, a history forgotten) starts a new epoch.
    Expired entries and epochs of the whole layer are deleted on the way.
    """
    conn.execute(sql.HISTORY_SWEEP, (prefix, now))
    conn.execute(sql.HISTORY_META_SWEEP, (prefix, now))
    row = conn.execute(sql.HISTORY_META_READ, (prefix, group)).fetchone()
    if row is None:
        epoch, offset = new_epoch(), 1
        conn.execute(sql.HISTORY_FORGET, (prefix, group))  # nothing of an old epoch stays
    else:
        epoch, offset = row[0], row[1] + 1
    conn.execute(sql.HISTORY_META_WRITE, (prefix, group, epoch, offset, now + meta_ttl))
    conn.execute(sql.HISTORY_APPEND, (prefix, group, offset, payload, now + ttl))
    conn.execute(sql.HISTORY_TRIM, (prefix, group, offset - size))
    return format_position(epoch, offset)


def start(conn: sqlite3.Connection, prefix: str, group: str, *, now: float, meta_ttl: float) -> str:
    """``group``'s latest position, starting its epoch (at offset 0) if it has none;
    either way its epoch and offset live ``meta_ttl`` seconds from now. A transaction
    of its own."""
    with immediate(conn):
        return _start(conn, prefix, group, now, meta_ttl)


def _start(conn: sqlite3.Connection, prefix: str, group: str, now: float, meta_ttl: float) -> str:
    conn.execute(sql.HISTORY_META_SWEEP, (prefix, now))
    row = conn.execute(sql.HISTORY_META_READ, (prefix, group)).fetchone()
    if row is None:
        epoch, offset = new_epoch(), 0
        conn.execute(sql.HISTORY_FORGET, (prefix, group))
    else:
        epoch, offset = row[0], row[1]
    conn.execute(sql.HISTORY_META_WRITE, (prefix, group, epoch, offset, now + meta_ttl))
    return format_position(epoch, offset)


def read(conn: sqlite3.Connection, prefix: str, group: str, now: float) -> KeptHistory:
    """The group's live epoch and offset, and its unexpired entries, oldest first."""
    rows = conn.execute(sql.HISTORY_READ, (now, prefix, group, now)).fetchall()
    if not rows:
        return EMPTY
    epoch, offset = rows[0][0], rows[0][1]
    entries = [(seq, bytes(data)) for _, _, seq, data in rows if seq is not None]
    return KeptHistory(epoch, offset, entries)
