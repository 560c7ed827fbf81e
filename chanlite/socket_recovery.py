"""Recovery (DESIGN §11), the interface's side: what one ``chanlite.v1`` socket is
written, in order, once each.

While the socket's connect consumer re-joins its groups (:mod:`chanlite.recovery`),
the socket may get, for a group it presented a position in, both live messages
(it is a member again) and the replay of what it missed, in any interleaving, and
the same message from both. So the messages of the presented groups are held until
the re-join ends (the worker's :data:`~chanlite.protocol.RECOVERY_KEY` message).
Then each group's held messages are written in offset order, each offset once,
followed by the recovery frame; from then on a live message at or below the
replay's last offset for its group (in the same epoch) was in the replay and is
dropped. (Not the highest offset written: a live message may arrive after a later
one, when two processes sent them at the same moment.) Everything else is written
as it comes, as a ``chanlite.v1`` frame (:mod:`chanlite.wire`).

Group messages, replays and the summary that reach the socket before it opens wait
for it to open (they do not open it, as a text reply would).
"""

from __future__ import annotations

import logging
from typing import Any

from .metrics import Metrics
from .protocol import GROUP_KEY, POSITION_KEY, RECOVERY_KEY, REPLAY_KEY
from .wire import GroupMessage, frame, parse_handshake, recovery_frame

logger = logging.getLogger("chanlite.server")

#: Most messages a socket holds while its re-join runs; past that it is closed with
#: 1013, as a socket whose replies pile up is.
HOLD_LIMIT = 10_000


class SocketRecovery:
    """One ``chanlite.v1`` socket's frames, and its side of the re-join."""

    __slots__ = ("early", "floors", "held", "metrics", "pending", "replayed")

    def __init__(self, presented: dict[str, str], metrics: Metrics) -> None:
        #: Where re-joins are counted.
        self.metrics = metrics
        #: Groups whose re-join is not over.
        self.pending = set(presented)
        #: Their messages, until it is.
        self.held: list[GroupMessage] = []
        #: Per group, the epoch and last offset of its replay.
        self.replayed: dict[str, tuple[str, int]] = {}
        #: The same, once the re-join has ended: live messages up to it are dropped.
        self.floors: dict[str, tuple[str, int]] = {}
        #: Group messages, replays and summaries that came before the socket opened.
        self.early: list[dict[str, Any]] = []

    @property
    def overflowing(self) -> bool:
        """True when more messages are held than :data:`HOLD_LIMIT`."""
        return len(self.held) + len(self.early) > HOLD_LIMIT

    def admit(self, reply: dict[str, Any], opened: bool) -> list[dict[str, Any]]:
        """The replies to write now, in order, for ``reply`` (perhaps none)."""
        if type(reply) is GroupMessage:
            if not opened:
                self.early.append(reply)
                return []
            return self._live(reply)
        if REPLAY_KEY in reply or RECOVERY_KEY in reply:
            if not opened:
                self.early.append(reply)
                return []
            return self._control(reply)
        return [frame(reply)]

    def release_early(self) -> list[dict[str, Any]]:
        """Once the socket is open: the replies for what came before it did."""
        early, self.early = self.early, []
        return [out for reply in early for out in self.admit(reply, True)]

    def _live(self, message: GroupMessage) -> list[dict[str, Any]]:
        if message.group in self.pending:
            self.held.append(message)
            return []
        floor = self.floors.get(message.group)
        if floor is not None and floor[0] == message.epoch and message.offset <= floor[1]:
            return []  # it was in the replay
        return [message.frame()]

    def _control(self, reply: dict[str, Any]) -> list[dict[str, Any]]:
        if REPLAY_KEY in reply:
            self._hold_replay(reply[REPLAY_KEY], reply.get("messages"))
            return []
        summary = reply[RECOVERY_KEY]
        if not isinstance(summary, dict):
            summary = {}
        recovered = summary.get("recovered")
        self.metrics.rejoined(recovered if isinstance(recovered, dict) else {})
        out = self._release()
        out.append(recovery_frame(summary))
        return out

    def _hold_replay(self, group: object, messages: object) -> None:
        if not isinstance(group, str) or not isinstance(messages, list):
            logger.error("dropped a malformed replay for a socket")
            return
        for entry in messages:
            if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict):
                stamped = GroupMessage.of({**entry[1], GROUP_KEY: group, POSITION_KEY: entry[0]})
                if stamped is not None:
                    self.held.append(stamped)
                    self.replayed[group] = (stamped.epoch, stamped.offset)
                    self.metrics.replayed_messages += 1

    def _release(self) -> list[dict[str, Any]]:
        """End the re-join: each held group's messages in offset order, once each."""
        held, self.held = self.held, []
        self.pending.clear()
        self.floors.update(self.replayed)
        self.replayed.clear()
        by_group: dict[str, dict[int, GroupMessage]] = {}
        for message in held:
            by_group.setdefault(message.group, {}).setdefault(message.offset, message)
        out: list[dict[str, Any]] = []
        for messages in by_group.values():
            out.extend(messages[offset].frame() for offset in sorted(messages))
        return out


def recovery_for(content: dict[str, Any], metrics: Metrics) -> SocketRecovery | None:
    """If the client offered ``chanlite.v1``: take its positions and id out of the
    ``websocket.connect`` message ``content``'s query string into ``positions`` and
    ``client_id``, and return the socket's :class:`SocketRecovery`; else None."""
    handshake = parse_handshake(content["query_string"], content["subprotocols"])
    if handshake is None:
        return None
    content["query_string"] = handshake.query_string
    content["subprotocols"] = handshake.subprotocols
    content["positions"] = handshake.positions
    content["client_id"] = handshake.client_id
    return SocketRecovery(handshake.positions, metrics)
