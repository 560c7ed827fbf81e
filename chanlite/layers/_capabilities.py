"""The optional capabilities of a channel layer (:class:`OptionalCapabilities`, a part
of :class:`~chanlite.layers.BaseChannelLayer`).

Each has a plain default that works on any layer; a layer that can do better
overrides it (the memory layer overrides them all, the Redis layer the readers).
The interface and the worker call these, never a concrete layer's own methods.
``send_waiting`` is in :class:`~chanlite.layers._send_waiting.WaitingSends`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..stores.base import SessionStore

#: A local reader: ``deliver(channels, payload)`` takes one encoded payload meant for
#: every one of ``channels`` (full ``prefix!local`` names of one process prefix).
LocalReader = Callable[[list[str], bytes], None]
#: A local taker: ``take(channel, content)`` runs one message in its sender's step and
#: returns True, or returns False to leave it to be queued as usual.
LocalTaker = Callable[[str, dict[str, Any]], bool]


class OptionalCapabilities:
    """What a layer may offer beyond the contract; each default does without."""

    def make_session_store(self) -> SessionStore | None:
        """A new session store that keeps its data in this layer's backend (and closes
        with the layer), for an app that names no ``session_store``; None if the
        layer has no such store, and the app must then be given one."""
        return None

    def waiting_receivers(self, channel: str) -> int | None:
        """How many receives in this process wait on ``channel`` now (a process
        prefix names its process-specific channels), or None if the layer cannot
        tell. Optional to override; the built-in layers do."""
        return None

    def attach_reader(self, prefix: str, deliver: LocalReader) -> bool:
        """Hand every message for ``prefix`` + local names to ``deliver`` from now on,
        if the layer can; return whether it did.

        ``prefix`` is a process prefix (ending in ``!``), which by contract only this
        process reads. ``deliver(channels, payload)`` is called on the event loop that
        attached it, with the full names and the encoded payload (decode it once for
        all of them); it must not raise. While attached, a ``receive`` on ``prefix``
        finds nothing, and what this process sends to ``prefix`` names reaches
        ``deliver`` without queueing: no capacity check, no expiry. Layers that cannot
        return ``False``, and the caller reads ``prefix`` with :meth:`receive`.
        """
        return False

    def detach_reader(self, prefix: str) -> None:
        """Stop handing ``prefix``'s messages to its local reader; they queue again."""

    def attach_taker(self, channels: Iterable[str], take: LocalTaker) -> bool:
        """Offer messages sent to ``channels`` on this thread to ``take`` before they
        are queued, if the layer can; return whether it did.

        Only a message that would be first in its queue is offered, and only by a send
        made on the thread that attached ``take``, in that send's own step: FIFO holds,
        and a receiver in this process gets the message without waking up.
        ``take(channel, content)`` gets the full name and the receiver's own copy of
        the content; it returns True if it took the message (the send is then done:
        no queueing, no capacity check) or False to let it queue. It must not raise.
        Layers shared between processes cannot know that nobody elsewhere is about to
        read the channel: they return ``False``.
        """
        return False

    def detach_taker(self, take: LocalTaker) -> None:
        """Stop offering messages to ``take``."""

    def receive_ready(self, channels: list[str]) -> tuple[str, dict[str, Any]] | None:
        """Take the next message from any of ``channels`` if one is there now, as
        :meth:`~chanlite.layers.BaseChannelLayer.receive` would, without waiting and
        without a round trip; None when none is, or when the layer cannot tell.

        ``channels`` is a list the caller has passed to ``receive`` before (so it is
        valid). It never raises a backend failure: a layer that is closed, or whose
        backend fails, returns None, and the next ``receive`` reports it.
        The worker asks this before each ``receive``, sparing a coroutine per
        message while messages are queued. Optional to override; the memory layer
        does, so a subclass of it that changes ``receive`` changes this too (or
        returns None, and every message goes through ``receive``).
        """
        return None
