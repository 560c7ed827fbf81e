"""A memory layer's local readers and takers: who is attached, and the hand-off to them.

:class:`LocalHandoff` holds the readers (by process prefix) and the takers (by queue
name). The layer's sends check them before queueing a message: a reader gets it
through :meth:`Reader.hand`, the takers through ``_offer``. What readers and takers
are for is said in :mod:`chanlite.layers.memory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from .._codec import decode, encode
from ..names import is_process_specific, validate_channel_name
from ._capabilities import LocalReader, LocalTaker
from ._memory_state import MemoryState, closed_error

__all__ = ["LocalHandoff", "Reader", "Taker"]

logger = logging.getLogger("chanlite.layers")


class Reader:
    """A local reader, and the event loop (and thread) it runs on."""

    __slots__ = ("deliver", "loop", "thread")

    def __init__(self, deliver: LocalReader, loop: asyncio.AbstractEventLoop) -> None:
        self.deliver = deliver
        self.loop = loop
        self.thread = threading.get_ident()

    def hand(self, channels: list[str], payload: bytes) -> None:
        """Give one payload for ``channels`` to the reader, on its own loop.

        Never raises into the sender: a failing reader is logged, and a reader whose
        loop has closed drops the payload (nobody is there to read it).
        """
        # A thread runs one event loop at a time, and a reader is detached before its
        # loop stops: on the reader's thread, this is the reader's loop (and the
        # thread check is several times cheaper than asking for the running loop).
        if threading.get_ident() == self.thread:
            self._call(channels, payload)
            return
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._call, channels, payload)

    def _call(self, channels: list[str], payload: bytes) -> None:
        try:
            self.deliver(channels, payload)
        except Exception:
            logger.exception("a local reader failed; %d message(s) dropped", len(channels))


class Taker:
    """A local taker, and the thread whose sends it is offered."""

    __slots__ = ("take", "thread")

    def __init__(self, take: LocalTaker) -> None:
        self.take = take
        self.thread = threading.get_ident()


class LocalHandoff(MemoryState):
    """A memory layer's local readers (by process prefix) and local takers (by
    queue name)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._readers: dict[str, Reader] = {}
        # Queue name -> the local takers offered what would be first on it.
        self._takers: dict[str, tuple[Taker, ...]] = {}

    # -- local readers ----------------------------------------------------------

    def attach_reader(self, prefix: str, deliver: LocalReader) -> bool:
        """Hand every message for ``prefix`` + local names to ``deliver`` from now on.

        ``prefix`` is a process prefix (ending in ``!``). ``deliver(channels, payload)``
        gets the full names and the encoded payload (decode it once for all of them),
        always on the event loop running this call; it must not raise. Messages
        already queued for the prefix are handed over at once. Sends to the prefix
        no longer queue, so they never raise ChannelFull and never expire; a
        ``receive`` on the prefix finds nothing.
        """
        validate_channel_name(prefix)
        if not prefix.endswith("!"):
            raise ValueError(f"a local reader needs a process prefix ending in '!', not {prefix!r}")
        reader = Reader(deliver, asyncio.get_running_loop())
        with self._lock:
            if self._closed:
                raise closed_error()
            self._readers[prefix] = reader
            queued = self._queues.pop(prefix, deque())
        for _, channel, payload in queued:
            reader.hand([channel], payload if isinstance(payload, bytes) else encode(payload))
        return True

    def detach_reader(self, prefix: str) -> None:
        """Stop handing ``prefix``'s messages to a local reader; they queue again."""
        with self._lock:
            self._readers.pop(prefix, None)

    # -- local takers ------------------------------------------------------------

    def attach_taker(self, channels: Iterable[str], take: LocalTaker) -> bool:
        """Offer ``take`` every message sent to ``channels`` on this thread that would
        be first on its queue (see the base contract); always True here.

        ``channels`` are plain names (not process-specific ones). Takers of one name
        are offered a message in the order they were attached, until one takes it.
        """
        keys = [validate_channel_name(channel) for channel in channels]
        for key in keys:
            if is_process_specific(key):
                raise ValueError(f"a local taker takes plain channels, not {key!r}")
        taker = Taker(take)
        with self._lock:
            if self._closed:
                raise closed_error()
            for key in keys:
                self._takers[key] = (*self._takers.get(key, ()), taker)
        return True

    def detach_taker(self, take: LocalTaker) -> None:
        """Stop offering messages to ``take``."""
        with self._lock:
            for key, takers in list(self._takers.items()):
                kept = tuple(taker for taker in takers if taker.take is not take)
                if kept:
                    self._takers[key] = kept
                else:
                    del self._takers[key]

    def _offer(self, key: str, channel: str, payload: bytes | dict[str, Any]) -> bool:
        """Offer a message for ``key`` to its takers; True if one took it.

        Only when nothing is ahead of it on the queue (FIFO), and only to takers of
        this thread. A dict ``payload`` is handed over as is (the sender owns none of
        it); bytes are decoded into the taker's own copy.
        """
        if self._queues.get(key) or key in self._senders:
            return False
        thread = threading.get_ident()
        content = None
        for taker in self._takers.get(key, ()):
            if taker.thread != thread:
                continue
            if content is None:
                content = payload if isinstance(payload, dict) else decode(payload)
            if taker.take(channel, content):
                return True
        return False
