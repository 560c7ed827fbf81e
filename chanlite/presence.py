"""Group presence (DESIGN §12): what every layer shares to keep it.

A layer built with ``group_presence=["chat-*"]`` keeps, for each group whose name
matches, who its members are: ``Group(name).add(channel, presence={"user": "alice"})``
records the member's data (a dict, at most :data:`PRESENCE_SIZE_LIMIT` bytes
encoded), next to a count of each distinct value, so that
``Group(name).presence_count()`` is one read.

Each change of who is present is announced on the :data:`PRESENCE_CHANNEL` channel as
``{"group": ..., "joins": {channel: data}, "leaves": {channel: data}}``
(:func:`announcement`). A join is announced only for a channel that was not present;
a leave only by whoever removed the entry, in the same atomic step, so none is ever
announced twice. What keeps a member present until it leaves:

* ``discard`` removes it at once (a member whose socket closed is left to its grace);
* a closed socket's entry is held for the layer's ``presence_grace`` seconds
  (:data:`DEFAULT_PRESENCE_GRACE`): the same client (its client id) re-joining the
  group in that time takes the entry over, and nothing is announced; otherwise a
  sweep removes it when the grace ends. An entry without a client id leaves at once;
* an interface process refreshes a heartbeat every :data:`HEARTBEAT_INTERVAL` seconds,
  which lives :data:`HEARTBEAT_TTL`; a sweep, run every :data:`SWEEP_INTERVAL`
  seconds by every interface process (:mod:`chanlite.presence_keeper`), removes the
  entries of process-specific channels whose process has no live heartbeat. So a dead
  interface's members leave within ``HEARTBEAT_TTL + SWEEP_INTERVAL`` (40 s).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._codec import decode, encode
from .exceptions import ConfigurationError, MessageTooLarge

__all__ = [
    "DEFAULT_PRESENCE_GRACE",
    "HEARTBEAT_INTERVAL",
    "HEARTBEAT_TTL",
    "PRESENCE_CHANNEL",
    "PRESENCE_SIZE_LIMIT",
    "SWEEP_INTERVAL",
    "PresenceTiming",
]

#: The channel that joins and leaves are announced on.
PRESENCE_CHANNEL = "chanlite.presence"
#: Largest encoded presence data of one member (bytes).
PRESENCE_SIZE_LIMIT = 1024
#: Seconds a closed socket's presence is held for its client to come back.
DEFAULT_PRESENCE_GRACE = 5.0
#: Seconds between two heartbeats of an interface process.
HEARTBEAT_INTERVAL = 10.0
#: Seconds a heartbeat lives: a process silent this long is taken for dead.
HEARTBEAT_TTL = 30.0
#: Seconds between two sweeps of an interface process.
SWEEP_INTERVAL = 10.0

#: What a layer hands back of entries it removed: group -> channel -> encoded data.
Leaves = dict[str, dict[str, bytes]]


@dataclass(frozen=True)
class PresenceTiming:
    """How often an interface process beats and sweeps, and how long a beat lives.

    A dead interface's members leave within ``heartbeat_ttl + sweep_interval``
    seconds; the defaults make that 40 s. Tests and demos shorten them
    (``Chanlite(presence_timing=PresenceTiming(...))``).
    """

    heartbeat_interval: float = HEARTBEAT_INTERVAL
    heartbeat_ttl: float = HEARTBEAT_TTL
    sweep_interval: float = SWEEP_INTERVAL

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "heartbeat_ttl", "sweep_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"PresenceTiming.{name} must be positive, got {value!r}")
        if self.heartbeat_ttl <= self.heartbeat_interval:
            raise ConfigurationError(
                "PresenceTiming.heartbeat_ttl must be longer than heartbeat_interval"
            )

    @property
    def bound(self) -> float:
        """Seconds within which a dead interface's members leave."""
        return self.heartbeat_ttl + self.sweep_interval


def presence_patterns(patterns: Sequence[str] | None) -> list[str]:
    """The ``group_presence`` option as a list of globs, checked."""
    if patterns is None:
        return []
    if isinstance(patterns, (str, bytes, Mapping)) or not isinstance(patterns, Iterable):
        raise ConfigurationError("layer option 'group_presence' must be a list of glob strings")
    checked = list(patterns)
    for glob in checked:
        if not isinstance(glob, str) or not glob:
            raise ConfigurationError(
                f"layer option 'group_presence' holds {glob!r}, not a glob string"
            )
    return checked


def keeps_presence(patterns: Sequence[str], group: str) -> bool:
    """Whether ``group`` matches one of the ``group_presence`` globs."""
    return any(fnmatch.fnmatchcase(group, glob) for glob in patterns)


def encode_presence(data: object) -> bytes:
    """``data`` encoded for a layer: a dict, at most :data:`PRESENCE_SIZE_LIMIT` bytes.

    Keys are sorted, so equal data is equal bytes and is counted once. Raises
    ``TypeError`` for data that is not a dict or cannot be encoded, and ``ValueError``
    naming the limit for data over it.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"presence data must be a dict, not {type(data).__name__}")
    try:
        return encode(_sorted(data), limit=PRESENCE_SIZE_LIMIT)
    except MessageTooLarge as exc:
        raise ValueError(
            f"presence data encodes to {exc.size} bytes, over the limit of "
            f"{PRESENCE_SIZE_LIMIT} bytes"
        ) from None


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_sorted(item) for item in value]
    return value


def process_of(channel: str) -> str | None:
    """The process prefix (up to and including ``!``) of a process-specific channel,
    else None: such a member never leaves by heartbeat."""
    bang = channel.find("!")
    return channel[: bang + 1] if bang >= 0 else None


def announcement(
    group: str, joins: Mapping[str, bytes] | None = None, leaves: Mapping[str, bytes] | None = None
) -> dict[str, Any]:
    """The message announcing ``joins`` and ``leaves`` (channel -> encoded data)."""
    return {
        "group": group,
        "joins": {channel: decode(data) for channel, data in (joins or {}).items()},
        "leaves": {channel: decode(data) for channel, data in (leaves or {}).items()},
    }
