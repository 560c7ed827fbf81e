"""What a memory layer holds, and every change made to it.

:class:`MemoryState` keeps the per-channel queues, the receives and the
``send_waiting`` calls waiting on them, and the group memberships, all guarded by
one lock: every method here expects its caller to hold ``_lock``, except
``_wait`` and ``_wait_for_room``, which await outside it and take it themselves.
:class:`~chanlite.layers.memory.InMemoryChannelLayer` builds its operations on it.

A receiver that finds nothing registers one :class:`Waiter` on each queue it reads;
a message put on a queue wakes exactly one waiter of it (on that waiter's own loop).
A woken receiver that leaves without taking a message passes the wake-up on, so no
arrival is ever slept through.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..exceptions import ChannelFull, LayerError
from ..names import is_process_specific
from .base import BaseChannelLayer

__all__ = ["BACKEND", "Entry", "MemoryState", "Sender", "Waiter", "closed_error", "wake"]

# (expires_at, full channel name, encoded payload, or a dict handed over by its sender)
Entry = tuple[float, str, "bytes | dict[str, Any]"]
#: How a memory layer names itself in a LayerError.
BACKEND = "memory layer"


def closed_error() -> LayerError:
    """The error of an operation on a memory layer closed by ``aclose()``."""
    return LayerError(BACKEND, "closed by aclose()")


def wake(future: asyncio.Future[None]) -> bool:
    """Resolve ``future`` from any thread, on its own loop.

    Returns False, waking nobody, if the future's event loop has been closed.
    """
    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        _resolve(future)
        return True
    try:
        loop.call_soon_threadsafe(_resolve, future)
    except RuntimeError:  # its loop was closed under it: nobody is waiting
        return False
    return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Waiter:
    """One blocked receive: a future plus a flag set (under the lock) once woken."""

    __slots__ = ("future", "woken")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.woken = False

    def wake(self) -> bool:
        """Wake the receive (caller holds the layer lock); False if its loop is gone."""
        self.woken = wake(self.future)
        return self.woken


class Sender:
    """One send waiting for room; ``admitted`` is set (under the lock) once its
    message is on the queue."""

    __slots__ = ("admitted", "channel", "future", "payload")

    def __init__(
        self, future: asyncio.Future[None], channel: str, payload: bytes | dict[str, Any]
    ) -> None:
        self.future = future
        self.channel = channel
        self.payload = payload
        self.admitted = False


class MemoryState(BaseChannelLayer):
    """The queues, waiters, waiting senders and groups of a memory layer.

    ``clock`` is the time source of message and group expiry.
    """

    def __init__(self, *, clock: Callable[[], float], **options: Any) -> None:
        super().__init__(**options)
        self._clock = clock
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Entry]] = {}
        self._waiters: dict[str, deque[Waiter]] = {}
        # Per queue, the sends waiting for room, oldest first. Invariant: a queue with
        # waiting senders is full (each message leaving it admits one at once).
        self._senders: dict[str, deque[Sender]] = {}
        # group -> {channel: membership expiry}; channel -> groups it is in
        self._groups: dict[str, dict[str, float]] = {}
        self._memberships: dict[str, set[str]] = {}
        self._rotation = 0
        self._closed = False

    # -- queues -----------------------------------------------------------------

    def _append(self, key: str, channel: str, payload: bytes | dict[str, Any], now: float) -> bool:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        elif queue:
            if queue[0][0] <= now:
                self._drop_expired(queue, now)
            if key in self._senders:
                self._admit_senders(key, now)  # waiting senders go first
            if len(queue) >= self.capacity_for(key):
                return False
        queue.append((now + self.expiry, channel, payload))
        if key in self._waiters:
            self._wake_one(key)
        return True

    def _pop_first(self, keys: list[str], now: float) -> Entry | None:
        count = len(keys)
        start = self._rotation % count
        self._rotation += 1
        for index in range(count):
            key = keys[(start + index) % count]
            queue = self._queues.get(key)
            if not queue:
                continue
            if queue[0][0] <= now:
                self._drop_expired(queue, now)
            if queue:
                entry = queue.popleft()
                if self._senders:
                    self._admit_senders(key, now)
                if not queue:
                    del self._queues[key]
                return entry
            del self._queues[key]
            if self._senders:
                self._admit_senders(key, now)
        return None

    def _drop_expired(self, queue: deque[Entry], now: float) -> None:
        while queue and queue[0][0] <= now:
            _, channel, _ = queue.popleft()
            self.expired_messages += 1
            if is_process_specific(channel):
                self._evict(channel)

    # -- waiting senders ----------------------------------------------------------

    def _admit_senders(self, key: str, now: float) -> None:
        """Move waiting senders' messages onto ``key``'s queue while it has room."""
        senders = self._senders.get(key)
        if not senders:
            return
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        capacity = self.capacity_for(key)
        while senders and len(queue) < capacity:
            sender = senders.popleft()
            queue.append((now + self.expiry, sender.channel, sender.payload))
            sender.admitted = True
            wake(sender.future)
            self._wake_one(key)
        if not senders:
            del self._senders[key]

    def _expire_and_admit(self, key: str, now: float) -> None:
        queue = self._queues.get(key)
        if queue:
            self._drop_expired(queue, now)
        self._admit_senders(key, now)

    async def _wait_for_room(self, sender: Sender, key: str, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await sender.future
            if not sender.admitted:  # woken by aclose(), not by room on the queue
                raise closed_error()
        except TimeoutError:
            with self._lock:
                if not sender.admitted:
                    # Expired messages free room without anyone touching the queue.
                    self._expire_and_admit(key, self._clock())
                if not sender.admitted:
                    self._forget_sender(sender, key)
                    raise ChannelFull(sender.channel, self.capacity_for(key)) from None
        except asyncio.CancelledError:
            with self._lock:
                if not sender.admitted:
                    self._forget_sender(sender, key)
            raise

    def _forget_sender(self, sender: Sender, key: str) -> None:
        senders = self._senders.get(key)
        if senders is not None:
            with contextlib.suppress(ValueError):
                senders.remove(sender)
            if not senders:
                del self._senders[key]

    # -- waiting receivers --------------------------------------------------------

    def _wake_one(self, key: str) -> None:
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.woken and not waiter.future.done() and waiter.wake():
                return

    def _register(self, keys: list[str]) -> Waiter:
        waiter = Waiter(asyncio.get_running_loop().create_future())
        for key in keys:
            waiters = self._waiters.get(key)  # not setdefault: it would build a deque
            if waiters is None:
                waiters = self._waiters[key] = deque()
            waiters.append(waiter)
        return waiter

    async def _wait(self, waiter: Waiter, keys: list[str], deadline: float | None) -> None:
        try:
            if deadline is None:
                await waiter.future
            else:
                async with asyncio.timeout_at(_loop_deadline(deadline)):
                    await waiter.future
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            with self._lock:
                self._unregister(waiter, keys)
                if waiter.woken:
                    # Woken but leaving without a message: pass the wake-up on.
                    for key in keys:
                        if self._queues.get(key):
                            self._wake_one(key)
            raise
        with self._lock:
            self._unregister(waiter, keys)

    def _unregister(self, waiter: Waiter, keys: list[str]) -> None:
        # Runs after every wait, so plain try/except rather than contextlib.suppress.
        for key in keys:
            waiters = self._waiters.get(key)
            if waiters is None:
                continue
            try:
                waiters.remove(waiter)
            except ValueError:  # the wake-up already took it off this queue
                continue
            if not waiters:
                del self._waiters[key]

    # -- groups -------------------------------------------------------------------

    def _live_members(self, group: str, now: float) -> list[str]:
        members = self._groups.get(group)
        if not members:
            return []
        expired = [channel for channel, until in members.items() if until <= now]
        for channel in expired:
            self._remove_member(group, channel)
        return list(members)

    def _remove_member(self, group: str, channel: str) -> None:
        members = self._groups.get(group)
        if members is not None and members.pop(channel, None) is not None and not members:
            del self._groups[group]
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]

    def _evict(self, channel: str) -> None:
        for group in list(self._memberships.get(channel, ())):
            self._remove_member(group, channel)


def _loop_deadline(deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
