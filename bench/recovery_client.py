"""The client side of recovery (``chanlite.v1``), for the ``history-cost`` suite.

A ``chanlite.v1`` client offers that WebSocket subprotocol and presents the last
position it heard of each group in the handshake's query string,
``?chanlite_positions=<URL-encoded JSON {group: "<epoch>:<offset>"}>``. Every server
frame is then a JSON text frame: ``{"text": ...}`` (or ``"bytes"``, base64) for an
ordinary reply, ``{"g": group, "p": position, "text": ...}`` for a message of a group
that keeps history, and, once the connect consumer has finished,
``{"recovery": {"recovered": {group: bool}, "positions": {group: position|None}}}``.

Every step here fails with :class:`~bench.core.BenchmarkError` saying what the
server did instead, and a frame that does not come within :data:`FRAME_TIMEOUT` is
an error too: a server that does not speak the protocol fails a round, never hangs it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from chanlite import Chanlite

from .core import BenchmarkError, check
from .inprocess import Socket

#: The WebSocket subprotocol of recovery.
SUBPROTOCOL = "chanlite.v1"
#: The query-string parameter that carries the positions a client presents.
POSITIONS_PARAM = "chanlite_positions"
#: Longest wait for the accept or for the next frame (seconds).
FRAME_TIMEOUT = 10.0


@dataclass
class Rejoined:
    """What a ``chanlite.v1`` socket read up to the end of its re-join."""

    #: The group frames (``g``, ``p``, ``text``), in the order they came.
    group_frames: list[dict[str, Any]] = field(default_factory=list)
    #: The ``recovery`` frame's content, once it came.
    recovery: dict[str, Any] | None = None


def positions_query(positions: dict[str, str]) -> str:
    """The handshake's query string presenting ``positions`` (none: empty)."""
    if not positions:
        return ""
    return urlencode({POSITIONS_PARAM: json.dumps(positions, separators=(",", ":"))})


async def connect(app: Chanlite, path: str, positions: dict[str, str]) -> Socket:
    """Open a ``chanlite.v1`` socket to ``path`` presenting ``positions``; fails
    unless the server accepts it with that subprotocol."""
    sock = Socket(path, positions_query(positions), (SUBPROTOCOL,))
    try:
        async with asyncio.timeout(FRAME_TIMEOUT):
            accepted = await sock.open(app)
    except TimeoutError:
        raise BenchmarkError(f"no accept within {FRAME_TIMEOUT:.0f} s for {path}") from None
    check(
        accepted.get("subprotocol") == SUBPROTOCOL,
        f"the server did not select {SUBPROTOCOL!r} (it accepted with {dict(accepted)}): "
        "it does not speak the recovery protocol",
    )
    return sock


async def next_frame(sock: Socket) -> dict[str, Any]:
    """The next server frame of a ``chanlite.v1`` socket, decoded from its JSON."""
    try:
        async with asyncio.timeout(FRAME_TIMEOUT):
            message = await sock.outbox.get()
    except TimeoutError:
        raise BenchmarkError(f"no frame within {FRAME_TIMEOUT:.0f} s") from None
    return decode(message)


def decode(message: MutableMapping[str, Any]) -> dict[str, Any]:
    """A ``websocket.send`` of a ``chanlite.v1`` socket as its JSON object."""
    text = message.get("text")
    check(
        message.get("type") == "websocket.send" and isinstance(text, str),
        f"a {SUBPROTOCOL} server sends JSON text frames, not {dict(message)}",
    )
    try:
        frame = json.loads(text)  # type: ignore[arg-type]
    except ValueError:
        frame = None
    check(isinstance(frame, dict), f"a {SUBPROTOCOL} frame is a JSON object, not {text!r}")
    return frame  # type: ignore[no-any-return]


async def read_rejoin(sock: Socket, expected: int) -> Rejoined:
    """Read until the ``recovery`` frame has come and ``expected`` group frames."""
    seen = Rejoined()
    while seen.recovery is None or len(seen.group_frames) < expected:
        try:
            frame = await next_frame(sock)
        except BenchmarkError as exc:
            got = f"{len(seen.group_frames)} group frames, recovery frame: {seen.recovery}"
            raise BenchmarkError(f"{exc} (so far {got}; wanted {expected})") from None
        if "recovery" in frame:
            check(seen.recovery is None, f"a second recovery frame: {frame}")
            seen.recovery = recovery_content(frame)
        elif "g" in frame and "p" in frame:
            seen.group_frames.append(frame)
        else:
            raise BenchmarkError(f"a frame the re-join should not bring: {frame}")
    return seen


def recovery_content(frame: dict[str, Any]) -> dict[str, Any]:
    """The ``recovery`` frame's content, checked for its two dicts."""
    content = frame["recovery"]
    check(
        isinstance(content, dict)
        and isinstance(content.get("recovered"), dict)
        and isinstance(content.get("positions"), dict),
        f"a recovery frame has 'recovered' and 'positions' objects, not {frame}",
    )
    return content  # type: ignore[no-any-return]


def position_of(rejoined: Rejoined, group: str) -> str:
    """The latest position of ``group`` that the recovery frame reported."""
    assert rejoined.recovery is not None
    position = rejoined.recovery["positions"].get(group)
    check(isinstance(position, str), f"no position of {group!r} in {rejoined.recovery}")
    return position  # type: ignore[no-any-return]


def check_recovered(rejoined: Rejoined, group: str, since: str, texts: list[str]) -> None:
    """Fail unless the socket got ``texts`` (the messages sent after ``since``), once
    each, at consecutive offsets, and was told that ``group`` was recovered."""
    assert rejoined.recovery is not None
    recovered = rejoined.recovery["recovered"]
    check(recovered.get(group) is True, f"{group!r} was not recovered: {rejoined.recovery}")
    epoch, _, offset = since.partition(":")
    wanted = [f"{epoch}:{int(offset) + n}" for n in range(1, len(texts) + 1)]
    got = [frame["p"] for frame in rejoined.group_frames]
    difference = first_difference(wanted, got)
    check(difference is None, f"{group!r} not replayed at consecutive offsets: {difference}")
    for frame, text in zip(rejoined.group_frames, texts, strict=True):
        check(
            frame["g"] == group and frame.get("text") == text,
            f"at {frame['p']} expected {text!r} of {group!r}, got {frame}",
        )
    check(position_of(rejoined, group) == wanted[-1], f"latest position is not {wanted[-1]}")


def first_difference(wanted: list[str], got: list[str]) -> str | None:
    """Where the positions read differ from those wanted, or None."""
    for number, (want, have) in enumerate(zip(wanted, got, strict=False), start=1):
        if want != have:
            return f"frame {number} is at {have}, expected {want}"
    if len(got) != len(wanted):
        return f"read {len(got)} group frames, expected {len(wanted)}"
    return None
