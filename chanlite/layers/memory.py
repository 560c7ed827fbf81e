"""``memory://``: the in-process layer, and the embedded default.

Every operation is a short critical section under one lock, so the layer may be used
from any thread and any event loop in the process. A receiver that finds nothing
registers one :class:`_Waiter` on each queue it reads; a send wakes exactly one
waiter of its queue (on that waiter's own loop). A woken receiver that leaves without
taking a message passes the wake-up on, so no arrival is ever slept through.

Messages are stored encoded, which both enforces the codec's rules and isolates
receivers from senders (and from each other, for group sends).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from .._codec import decode
from ..exceptions import ChannelFull
from ..names import is_process_specific, queue_name, validate_channel_name, validate_group_name
from .base import BaseChannelLayer, ReceiveResult

# (expires_at, full channel name, encoded payload)
_Entry = tuple[float, str, bytes]


class _Waiter:
    """One blocked receive: a future plus a flag set (under the lock) once woken."""

    __slots__ = ("future", "woken")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.woken = False

    def wake(self) -> bool:
        """Resolve the future from any thread (caller holds the layer lock).

        Returns False, waking nobody, if the waiter's event loop has been closed.
        """
        loop = self.future.get_loop()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _resolve(self.future)
        else:
            try:
                loop.call_soon_threadsafe(_resolve, self.future)
            except RuntimeError:  # its loop was closed under it: nobody is waiting
                return False
        self.woken = True
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class InMemoryChannelLayer(BaseChannelLayer):
    """A channel layer in this process's memory (``memory://``)."""

    schemes = ("memory",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._lock = threading.Lock()
        self._queues: dict[str, deque[_Entry]] = {}
        self._waiters: dict[str, deque[_Waiter]] = {}
        # group -> {channel: membership expiry}; channel -> groups it is in
        self._groups: dict[str, dict[str, float]] = {}
        self._memberships: dict[str, set[str]] = {}
        self._rotation = 0

    # -- sending --------------------------------------------------------------

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        """Append ``payload`` to ``channel``; raise ChannelFull when at capacity."""
        now = time.monotonic()
        with self._lock:
            if not self._append(channel, payload, now):
                key = queue_name(channel)
                raise ChannelFull(channel, self.capacity_for(key))

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        """Append ``payload`` to every live member; full members are skipped."""
        now = time.monotonic()
        with self._lock:
            for channel in self._live_members(group, now):
                if not self._append(channel, payload, now):
                    self.group_full_skips += 1

    def _append(self, channel: str, payload: bytes, now: float) -> bool:
        key = queue_name(channel)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        elif queue:
            self._drop_expired(queue, now)
            if len(queue) >= self.capacity_for(key):
                return False
        queue.append((now + self.expiry, channel, payload))
        self._wake_one(key)
        return True

    def _wake_one(self, key: str) -> None:
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.woken and not waiter.future.done() and waiter.wake():
                return

    # -- receiving ------------------------------------------------------------

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> ReceiveResult:
        """Take the next message from any of ``channels`` (see the base contract)."""
        keys = self.receive_names(channels)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            waiter = None
            with self._lock:
                entry = self._pop_first(keys, time.monotonic())
                if entry is None and not _past(deadline):
                    waiter = self._register(keys)
            if entry is not None:
                return entry[1], decode(entry[2])
            if waiter is None:
                return None, None
            await self._wait(waiter, keys, deadline)

    def _register(self, keys: list[str]) -> _Waiter:
        waiter = _Waiter(asyncio.get_running_loop().create_future())
        for key in keys:
            self._waiters.setdefault(key, deque()).append(waiter)
        return waiter

    async def _wait(self, waiter: _Waiter, keys: list[str], deadline: float | None) -> None:
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

    def _unregister(self, waiter: _Waiter, keys: list[str]) -> None:
        for key in keys:
            waiters = self._waiters.get(key)
            if waiters is None:
                continue
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
            if not waiters:
                del self._waiters[key]

    def _pop_first(self, keys: list[str], now: float) -> _Entry | None:
        count = len(keys)
        start = self._rotation % count
        self._rotation += 1
        for index in range(count):
            key = keys[(start + index) % count]
            queue = self._queues.get(key)
            if not queue:
                continue
            self._drop_expired(queue, now)
            if queue:
                entry = queue.popleft()
                if not queue:
                    del self._queues[key]
                return entry
            del self._queues[key]
        return None

    def _drop_expired(self, queue: deque[_Entry], now: float) -> None:
        while queue and queue[0][0] <= now:
            _, channel, _ = queue.popleft()
            if is_process_specific(channel):
                self._evict(channel)

    # -- groups ---------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, refreshing its membership expiry."""
        validate_group_name(group)
        validate_channel_name(channel)
        with self._lock:
            self._groups.setdefault(group, {})[channel] = time.monotonic() + self.group_expiry
            self._memberships.setdefault(channel, set()).add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` if it is a member."""
        validate_group_name(group)
        validate_channel_name(channel)
        with self._lock:
            self._remove_member(group, channel)

    async def group_channels(self, group: str) -> set[str]:
        """The unexpired members of ``group``."""
        validate_group_name(group)
        with self._lock:
            return set(self._live_members(group, time.monotonic()))

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

    # -- housekeeping ---------------------------------------------------------

    async def flush(self) -> None:
        """Drop every message and group."""
        with self._lock:
            self._queues.clear()
            self._groups.clear()
            self._memberships.clear()

    async def stats(self) -> dict[str, Any]:
        """Current channel depths and group sizes."""
        with self._lock:
            return {
                "channels": {key: len(queue) for key, queue in self._queues.items()},
                "groups": {group: len(members) for group, members in self._groups.items()},
            }


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _loop_deadline(deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
