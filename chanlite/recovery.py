"""Recovery (DESIGN §11), the consumer's side: a ``chanlite.v1`` socket re-joins its
groups and gets what it missed.

The interface puts the positions a ``chanlite.v1`` client presented in its
``websocket.connect`` message (``positions``, a dict of group to position; ``{}``
when it presented none), with its ``client_id``. While that message's consumer runs,
its scope holds a :class:`Rejoin`. Then the consumer's ordinary
``Group(name).add(message.reply_channel)`` also calls :func:`rejoin_group`, which

1. reads the group's history since the presented position (after the member was
   added, so every message is either in that history or delivered live, or both);
2. sends what the client missed to the reply channel, in :data:`REPLAY_KEY` messages
   of at most :data:`REPLAY_CHUNK` messages each, oldest first, when the history is
   complete since that position;
3. notes whether the group was recovered, and the group's latest position.

When the consumer has finished, the worker sends the :data:`RECOVERY_KEY` message
that :meth:`Rejoin.summary` builds. The interface holds the socket's messages of the
presented groups until then, and writes them, with the replay, in offset order and
once each (:mod:`chanlite.socket_recovery`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .exceptions import ChanliteError, MessageTooLarge
from .protocol import RECOVERY_KEY, REPLAY_KEY

if TYPE_CHECKING:
    from .layers.base import BaseChannelLayer

logger = logging.getLogger("chanlite")

#: Most missed messages one replay message carries.
REPLAY_CHUNK = 100
#: Longest a replay message waits for room on a full reply channel (seconds).
REPLAY_TIMEOUT = 5.0


@dataclass
class Rejoin:
    """A ``chanlite.v1`` socket's re-join, while its connect consumer runs."""

    #: The socket's reply channel.
    reply_channel: str
    #: The positions the client presented, by group.
    presented: dict[str, str]
    #: The client's id (``chanlite_client``), if it sent one.
    client_id: str | None
    #: Whether each presented group that was re-joined was recovered.
    recovered: dict[str, bool] = field(default_factory=dict)
    #: The latest position of each group with history the socket joined.
    positions: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def from_connect(cls, content: dict[str, Any]) -> Rejoin | None:
        """The re-join of a ``websocket.connect`` message, if it came from a
        ``chanlite.v1`` socket (it has ``positions``)."""
        presented, reply = content.get("positions"), content.get("reply_channel")
        if not isinstance(presented, dict) or not isinstance(reply, str):
            return None
        client = content.get("client_id")
        return cls(reply, dict(presented), client if isinstance(client, str) else None)

    def summary(self) -> dict[str, Any]:
        """The message that ends the re-join: whether each presented group was
        recovered (a group the consumer did not re-join was not), and the latest
        position of each group joined."""
        recovered = {group: self.recovered.get(group, False) for group in self.presented}
        return {RECOVERY_KEY: {"recovered": recovered, "positions": dict(self.positions)}}


async def rejoin_group(layer: BaseChannelLayer, group: str, rejoin: Rejoin) -> bool:
    """Called once ``rejoin``'s socket is a member of ``group``: replay what the
    client missed of it, if it presented a position, and note the outcome; True if
    it was recovered."""
    since = rejoin.presented.get(group)
    if not layer.history_size(group):
        return _outcome(rejoin, group, since, False)
    try:
        if since is None:  # a first join: the position to come back to is all it needs
            rejoin.positions[group] = await layer.history_position(group)
            return False
        history = await layer.group_history(group, since)
    except (ValueError, ChanliteError) as exc:  # a refused position, a failed layer
        logger.warning("could not read the history of %s to recover it: %s", group, exc)
        return _outcome(rejoin, group, since, False)
    rejoin.positions[group] = history.position
    recovered = history.complete
    if recovered and history.messages:
        recovered = await _replay(layer, rejoin.reply_channel, group, history.messages)
    return _outcome(rejoin, group, since, recovered)


def _outcome(rejoin: Rejoin, group: str, since: str | None, recovered: bool) -> bool:
    """Note whether ``group`` was recovered (if the client presented a position)."""
    if since is not None:
        rejoin.recovered[group] = recovered
    return recovered


async def _replay(
    layer: BaseChannelLayer,
    reply_channel: str,
    group: str,
    messages: list[tuple[str, dict[str, Any]]],
) -> bool:
    """Send ``messages`` to ``reply_channel`` as replay messages; False if one could
    not be sent (the client is then told that the group was not recovered)."""
    for start in range(0, len(messages), REPLAY_CHUNK):
        chunk = messages[start : start + REPLAY_CHUNK]
        try:
            await _send_chunk(layer, reply_channel, group, chunk)
        except ChanliteError as exc:
            logger.warning("could not replay %s to %s: %s", group, reply_channel, exc)
            return False
    return True


async def _send_chunk(
    layer: BaseChannelLayer,
    reply_channel: str,
    group: str,
    chunk: list[tuple[str, dict[str, Any]]],
) -> None:
    """Send one replay message; one over the size limit is split in two."""
    content = {REPLAY_KEY: group, "messages": [list(pair) for pair in chunk]}
    try:
        await layer.send_waiting(reply_channel, content, REPLAY_TIMEOUT)
    except MessageTooLarge:
        if len(chunk) == 1:
            raise
        half = len(chunk) // 2
        await _send_chunk(layer, reply_channel, group, chunk[:half])
        await _send_chunk(layer, reply_channel, group, chunk[half:])
