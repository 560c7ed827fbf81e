"""``enforce_ordering``: run a socket's messages in the order they were sent.

Every message of a socket carries ``order``: 0 for ``websocket.connect``, 1, 2, ...
for each ``websocket.receive``, and the last + 1 for ``websocket.disconnect``.

* ``@enforce_ordering`` (strict): message ``n`` of a socket runs only after messages
  ``0 .. n-1`` have finished.
* ``@enforce_ordering(slight=True)``: the connect finishes before any other message of
  the socket runs; the rest run as they come.

A message whose turn has not come is *parked* in the session store under its socket
(not spun, not polled) and the worker that finishes its predecessor runs it at once,
after flushing the predecessor's sends, so replies leave in order too. Checking the
turn and parking, and advancing and unparking, are each one atomic store operation,
so this holds with many worker threads and many worker processes on one store. A
consumer that raises still advances the order; one that raises ``ConsumeLater`` runs
again in its turn.

In an app with any ordered consumer, a ``websocket.connect`` consumer without the
decorator runs at once and counts as finished when it returns, so decorating only the
receive consumer works; other undecorated consumers run at once and leave the order
alone, except that a disconnect removes the socket's ordering state when nothing of
the socket is parked (it expires a day after the socket's last message otherwise).
chanlite's default connect and disconnect consumers are ordered.
``enforce_ordering`` acts in the worker, around the whole consumer, so it can sit
anywhere in a stack of decorators.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, overload

from ._codec import decode, encode
from ._wrap import Consumer, mark
from .messages import Message
from .protocol import WEBSOCKET_CHANNELS, WEBSOCKET_CONNECT
from .routing import is_async_callable
from .sessions.session import CHANNEL_SESSION_TTL
from .stores import SessionStore

__all__ = ["ORDERING_MARK", "Sequencer", "enforce_ordering", "ordering_mode"]

#: Mark on ordered consumers: ``"strict"`` or ``"slight"``.
ORDERING_MARK = "__chanlite_ordering__"
Mode = Literal["strict", "slight"]


@overload
def enforce_ordering(consumer: Consumer, /) -> Consumer: ...
@overload
def enforce_ordering(*, slight: bool = False) -> Callable[[Consumer], Consumer]: ...


def enforce_ordering(
    consumer: Consumer | None = None, /, *, slight: bool = False
) -> Consumer | Callable[[Consumer], Consumer]:
    """Run the consumer's messages in socket order (see the module docstring)."""
    mode: Mode = "slight" if slight else "strict"
    if consumer is None:
        return lambda func: _ordered(func, mode)
    return _ordered(consumer, mode)


def _ordered(consumer: Consumer, mode: Mode) -> Consumer:
    if is_async_callable(consumer):

        @functools.wraps(consumer)
        async def ordered_async(message: Message, **kwargs: Any) -> Any:
            _check_message(message)
            return await consumer(message, **kwargs)

        return mark(ordered_async, ORDERING_MARK, mode)

    @functools.wraps(consumer)
    def ordered(message: Message, **kwargs: Any) -> Any:
        _check_message(message)
        return consumer(message, **kwargs)

    return mark(ordered, ORDERING_MARK, mode)


def _check_message(message: Message) -> None:
    if sequence_position(message.channel.name, message.content) is None:
        raise ValueError(
            f"enforce_ordering needs a websocket message with 'reply_channel' and an "
            f"integer 'order'; the message on {message.channel.name!r} has not"
        )


def ordering_mode(consumer: object) -> Mode | None:
    """``"strict"`` or ``"slight"`` for an ordered consumer, else None."""
    mode: Mode | None = getattr(consumer, ORDERING_MARK, None)
    return mode


def sequence_position(channel: str, content: dict[str, Any]) -> tuple[str, int] | None:
    """``(socket, order)`` of a socket's message, or None for any other message."""
    if channel not in WEBSOCKET_CHANNELS:
        return None
    socket, order = content.get("reply_channel"), content.get("order")
    if not isinstance(socket, str) or not isinstance(order, int) or isinstance(order, bool):
        return None
    return socket, order


class Sequencer:
    """The worker's side of ordering: admit a message now, or park it; on finish,
    advance and hand back the parked messages whose turn has come."""

    def __init__(self, store: SessionStore, ttl: float = CHANNEL_SESSION_TTL) -> None:
        self.store = store
        self.ttl = ttl

    async def admit(self, channel: str, content: dict[str, Any], mode: Mode | None) -> bool:
        """True if the message may run now; False if it was parked."""
        position = sequence_position(channel, content)
        if position is None or mode is None:
            return True
        socket, order = position
        slight = mode == "slight" and channel != WEBSOCKET_CONNECT
        # Encoded only if the store parks it: most messages run at once.
        payload = functools.partial(encode, {"channel": channel, "content": content})
        return await self.store.order_start(socket, order, slight, payload, self.ttl)

    async def finish(
        self, channel: str, content: dict[str, Any], last: bool, advance: bool = True
    ) -> list[tuple[str, dict[str, Any]]]:
        """Record that the message finished; the parked messages that may now run.

        ``last`` removes the socket's cursor once nothing is parked; without
        ``advance`` the cursor does not move (a message that ran out of turn).
        """
        position = sequence_position(channel, content)
        if position is None:
            return []
        socket, order = position[0], position[1] if advance else -1
        payloads = await self.store.order_finish(socket, order, last, self.ttl)
        released = []
        for payload in payloads:
            item = decode(payload)
            released.append((item["channel"], item["content"]))
        return released
