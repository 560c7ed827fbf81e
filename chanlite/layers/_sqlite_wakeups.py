"""In-process wake-ups of the SQLite layer's waiting receivers.

A :class:`Notifier` holds the receives of this process waiting on one database file
and prefix; :func:`notifier_for` gives every layer on that file and prefix the same
one, so a send through any of them wakes a receive waiting in another.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import deque

__all__ = ["Notifier", "Waiter", "notifier_for"]


class Waiter:
    """One waiting receive: a future on its own loop, and whether it was woken."""

    __slots__ = ("asleep", "future", "loop", "woken")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()
        self.woken = False
        #: True while the receive sleeps in :meth:`wait` (its take found nothing).
        self.asleep = False

    def wake(self) -> bool:
        """Resolve the future from any thread (caller holds the notifier lock)."""
        if self.woken or self.future.done():
            return False
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            _resolve(self.future)
        else:
            try:
                self.loop.call_soon_threadsafe(_resolve, self.future)
            except RuntimeError:  # its loop is closed: nobody is waiting there
                return False
        self.woken = True
        return True

    async def wait(self, timeout: float) -> None:
        """Wait until woken or ``timeout`` seconds pass."""
        self.asleep = True
        try:
            async with asyncio.timeout(timeout):
                await self.future
        except TimeoutError:
            pass
        finally:
            self.asleep = False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Notifier:
    """Waiting receivers of one database file and prefix, in this process.

    A committed send wakes one waiter of its queue, from whatever thread it ran on.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, deque[Waiter]] = {}

    def register(self, queues: list[str]) -> Waiter:
        waiter = Waiter()
        with self._lock:
            for queue in queues:
                self._waiters.setdefault(queue, deque()).append(waiter)
        return waiter

    def unregister(self, waiter: Waiter, queues: list[str]) -> bool:
        """Forget ``waiter``; return whether it was woken (final once unregistered)."""
        with self._lock:
            for queue in queues:
                waiters = self._waiters.get(queue)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del self._waiters[queue]
            return waiter.woken

    def leave(self, waiter: Waiter, queues: list[str]) -> None:
        """Unregister a waiter for good, passing on a wake-up it will not use."""
        if self.unregister(waiter, queues):
            for queue in queues:
                self.wake_one(queue)

    def wake_one(self, queue: str) -> None:
        with self._lock:
            waiters = self._waiters.get(queue)
            while waiters:
                if waiters.popleft().wake():
                    return

    def waiting(self, queue: str) -> int:
        """How many receivers sleep waiting on ``queue`` (for tests and debugging)."""
        with self._lock:
            return sum(1 for waiter in self._waiters.get(queue, ()) if waiter.asleep)


_notifiers: weakref.WeakValueDictionary[tuple[str, str], Notifier] = weakref.WeakValueDictionary()
_notifiers_lock = threading.Lock()


def notifier_for(path: str, prefix: str) -> Notifier:
    key = (os.path.realpath(path), prefix)
    with _notifiers_lock:
        notifier = _notifiers.get(key)
        if notifier is None:
            notifier = _notifiers[key] = Notifier()
        return notifier
