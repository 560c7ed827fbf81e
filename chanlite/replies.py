"""The replies of one interface process: every reply channel it holds, and who gets
what arrives on each.

Each connection gets a reply channel ``<prefix>!<random>`` under the process's one
reply prefix. On layers that can hand replies over as they arrive (``memory://``,
``redis://``) :class:`Replies` is the layer's local reader; on the others one task
takes them with a single ``receive`` on the prefix. A reply for a connection that is
gone is dropped. A reply that carries a trace context (:data:`~chanlite.protocol.TRACE_KEY`)
reaches its connection without it, inside a reply span when tracing is on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._codec import decode
from .layers.base import BaseChannelLayer
from .protocol import GROUP_KEY, TRACE_KEY
from .sockets import Writes
from .wire import GroupMessage

if TYPE_CHECKING:
    from .tracing import Tracing

logger = logging.getLogger("chanlite.server")

#: Who gets a connection's replies: ``target(reply, writes)``, where ``writes``
#: gathers the socket writes of a reply for many connections (None for one).
Target = Callable[[dict[str, Any], Writes | None], None]
# Pause after a layer error in the reply reader before reading again.
_READER_RETRY = 0.5


class Replies:
    """The reply channels of the process whose prefix is ``prefix``, each with its
    target: ``replies[channel] = target`` while the connection lasts."""

    def __init__(self, layer: BaseChannelLayer, prefix: str, tracing: Tracing | None) -> None:
        self.layer = layer
        self.prefix = prefix
        self.tracing = tracing
        self._targets: dict[str, Target] = {}
        self._reader: asyncio.Task[None] | None = None
        self._attached = False

    def __setitem__(self, channel: str, target: Target) -> None:
        self._targets[channel] = target

    def __delitem__(self, channel: str) -> None:
        del self._targets[channel]

    def __len__(self) -> int:
        return len(self._targets)

    def start(self) -> None:
        """Start receiving: as a local reader where the layer can hand replies over,
        else with a receive loop."""
        if not self._attached:
            self._attached = self.layer.attach_reader(self.prefix, self._deliver_all)
        if not self._attached and self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def stop(self) -> None:
        """Stop receiving."""
        if self._attached:
            self.layer.detach_reader(self.prefix)
            self._attached = False
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def drain(self) -> None:
        """Deliver every reply already waiting (a local reader gets them as they come)."""
        while not self._attached:
            channel, message = await self.layer.receive([self.prefix], timeout=0)
            if channel is None or message is None:
                break
            self._deliver(channel, message)

    async def _read_replies(self) -> None:
        while True:
            try:
                channel, message = await self.layer.receive([self.prefix])
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading replies failed; retrying")
                await asyncio.sleep(_READER_RETRY)
                continue
            if channel is not None and message is not None:
                self._deliver(channel, message)

    def _deliver(self, channel: str, message: dict[str, Any]) -> None:
        target = self._targets.get(channel)
        if target is None:
            return
        if TRACE_KEY in message:
            self._deliver_traced([target], message)
        else:
            target(_as_reply(message), None)

    def _deliver_all(self, channels: list[str], payload: bytes) -> None:
        """The local reader: one payload for some of this process's reply channels.

        Decoded once, if any of their connections is still here; every connection
        then gets the same dict, which is safe because the interface only reads
        replies.
        """
        targets = [target for name in channels if (target := self._targets.get(name))]
        if not targets:
            return
        message = decode(payload)
        if TRACE_KEY in message:
            self._deliver_traced(targets, message)
        else:
            hand(_as_reply(message), targets)

    def _deliver_traced(self, targets: list[Target], message: dict[str, Any]) -> None:
        """Deliver a reply that carries a trace context to ``targets`` without it (in
        a copy: ``message`` may be shared), inside a reply span when tracing is on."""
        reply = _as_reply({key: value for key, value in message.items() if key != TRACE_KEY})
        if self.tracing is not None:
            self.tracing.reply(message[TRACE_KEY], reply, functools.partial(hand, reply, targets))
        else:
            hand(reply, targets)


def hand(reply: dict[str, Any], targets: list[Target]) -> None:
    """Give ``reply`` to each of ``targets``; the socket writes it makes start
    together (:class:`~chanlite.sockets.Writes`) when there are several."""
    if len(targets) == 1:
        targets[0](reply, None)
        return
    with Writes() as writes:
        for target in targets:
            target(reply, writes)


def _as_reply(message: dict[str, Any]) -> dict[str, Any]:
    """A reply as sockets take it: a message of a group with history becomes a
    :class:`~chanlite.wire.GroupMessage` (its content, with group and position
    aside), made once for every connection it is for."""
    if GROUP_KEY in message:
        return GroupMessage.of(message) or message
    return message
