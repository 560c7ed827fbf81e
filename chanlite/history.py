"""Group history (DESIGN §11): what every layer shares to keep it.

A layer built with ``group_history={"chat-*": 100}`` keeps the last 100 messages of
each group whose name matches, each for ``history_ttl`` seconds (default
:data:`DEFAULT_HISTORY_TTL`). Every message sent to such a group gets a position
``"<epoch>:<offset>"``: the offset grows by one per message of the group, from 1; the
epoch (:func:`new_epoch`) is made with the group's history and changes whenever that
history is lost (a flush, a Redis that lost its data, a restarted memory layer, or no
message for longer than the history's meta lifetime, see :func:`meta_ttl`), so an
old position is never read as a current one.

A layer stores what :class:`KeptHistory` describes and appends once per group send;
:func:`select` turns it into the :class:`GroupHistory` that ``Group.history()``
returns, the same way on every layer.
"""

from __future__ import annotations

import fnmatch
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._codec import decode
from .exceptions import ConfigurationError
from .protocol import GROUP_KEY, POSITION_KEY, TRACE_KEY

__all__ = ["DEFAULT_HISTORY_TTL", "GroupHistory", "KeptHistory", "parse_position"]

#: Seconds a message of a group with history is kept, unless ``history_ttl`` says.
DEFAULT_HISTORY_TTL = 300.0


@dataclass(frozen=True)
class GroupHistory:
    """What ``Group(name).history()`` returns.

    ``messages`` are ``(position, content)`` pairs, oldest first: those after
    ``since``, at most ``limit`` of them (the newest, when there were more).
    ``position`` is the group's latest position (``None`` before its first message).
    ``complete`` is ``False`` when ``since`` is from another epoch, is newer than the
    latest position, or is older than the oldest message kept: then messages were
    lost since it, and a client that saw ``since`` cannot be brought up to date.
    """

    messages: list[tuple[str, dict[str, Any]]]
    position: str | None
    complete: bool


@dataclass(frozen=True)
class KeptHistory:
    """What a layer holds of one group's history: its epoch (``None`` if it has
    none) and latest offset (0 before the first message), and the entries still
    kept, ``(offset, encoded payload)``, oldest first."""

    epoch: str | None
    offset: int
    entries: Sequence[tuple[int, bytes]]


EMPTY = KeptHistory(None, 0, ())


def history_patterns(patterns: Mapping[str, int] | None) -> list[tuple[str, int]]:
    """The ``group_history`` option as ``(glob, messages kept)`` pairs, checked."""
    if patterns is None:
        return []
    if not isinstance(patterns, Mapping):
        raise ConfigurationError("layer option 'group_history' must be a dict of glob: int")
    checked = []
    for glob, size in patterns.items():
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ConfigurationError(
                f"layer option group_history[{glob!r}] must be a positive integer, got {size!r}"
            )
        checked.append((str(glob), size))
    return checked


def history_size(patterns: Sequence[tuple[str, int]], group: str) -> int:
    """How many messages ``group`` keeps: the first matching glob's, else 0."""
    for glob, size in patterns:
        if fnmatch.fnmatchcase(group, glob):
            return size
    return 0


def meta_ttl(history_ttl: float, group_expiry: float) -> float:
    """How long a group's epoch and offset outlive its last message (seconds): as long
    as a membership can, so a client away for a while still learns that it missed
    nothing, rather than that its position is from another epoch."""
    return max(history_ttl, group_expiry)


def new_epoch() -> str:
    """A new epoch: 8 random hex characters."""
    return secrets.token_hex(4)


def format_position(epoch: str, offset: int) -> str:
    """The position ``"<epoch>:<offset>"``."""
    return f"{epoch}:{offset}"


def parse_position(position: object) -> tuple[str, int]:
    """``(epoch, offset)`` of a position; ValueError naming what is wrong."""
    if isinstance(position, str):
        epoch, _, offset = position.partition(":")
        if epoch and offset.isdigit() and offset.isascii():
            return epoch, int(offset)
    raise ValueError(f"position {position!r} is not '<epoch>:<offset>' (say 'a1b2c3d4:17')")


def stamp(payload: bytes, group: str, position: str) -> bytes:
    """``payload`` (an encoded content dict) as delivered to the members of a group
    that keeps a history: with :data:`~chanlite.protocol.GROUP_KEY` and
    :data:`~chanlite.protocol.POSITION_KEY` added, last, so they win over keys of the
    same name in the content. (Group names and positions need no JSON escaping.)

    The Redis layer's scripts build the same bytes (``stamp`` in their helpers).
    """
    tail = f'"{GROUP_KEY}":"{group}","{POSITION_KEY}":"{position}"}}'.encode()
    return (b"{" if payload == b"{}" else payload[:-1] + b",") + tail


def check_limit(limit: object) -> int | None:
    """A ``limit`` argument: None, or a positive int; ValueError otherwise."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    return limit


def select(kept: KeptHistory, since: str | None, limit: int | None) -> GroupHistory:
    """The history after ``since`` (a position, already checked), at most ``limit``."""
    if kept.epoch is None:
        return GroupHistory([], None, since is None)
    latest = format_position(kept.epoch, kept.offset)
    entries = list(kept.entries)
    complete = True
    if since is not None:
        epoch, offset = parse_position(since)
        oldest = entries[0][0] if entries else kept.offset + 1
        if epoch != kept.epoch or offset > kept.offset or offset < oldest - 1:
            complete = False
        else:
            entries = [entry for entry in entries if entry[0] > offset]
    if limit is not None:
        entries = entries[-limit:]
    messages = [(format_position(kept.epoch, offset), _content(data)) for offset, data in entries]
    return GroupHistory(messages, latest, complete)


def _content(data: bytes) -> dict[str, Any]:
    """A kept message as it was sent: without the trace context a traced consumer's
    send carries for its receivers."""
    content: dict[str, Any] = decode(data)
    content.pop(TRACE_KEY, None)
    return content
