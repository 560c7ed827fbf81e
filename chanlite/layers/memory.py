"""``memory://``: the in-process layer, and the embedded default.

Every operation is a short critical section under one lock, so the layer may be used
from any thread and any event loop in the process. A receiver that finds nothing
registers one :class:`_Waiter` on each queue it reads; a send wakes exactly one
waiter of its queue (on that waiter's own loop). A woken receiver that leaves without
taking a message passes the wake-up on, so no arrival is ever slept through.

Three additions beyond the base contract serve an interface server and a worker in
this process:

* :meth:`InMemoryChannelLayer.send_waiting` is a send that waits for room while the
  channel is full. The senders waiting on a queue form a FIFO, and each message that
  leaves the queue admits the oldest of them in the same critical section: nobody
  barges ahead, nobody polls, and none is starved.
* :meth:`InMemoryChannelLayer.attach_reader` installs a *local reader* for a process
  prefix ``prefix!``: messages for ``prefix!local`` names are handed to it as they are
  sent instead of being queued, so a reply reaches its socket without a queue, a
  reader task or a capacity check (the interface bounds what waits per socket).
* :meth:`InMemoryChannelLayer.attach_taker` installs a *local taker* for plain
  channels: a send on the taker's thread that would be first on its queue is offered
  to it first, so an idle in-process worker starts the consumer inside the send
  instead of being woken on the next turn of the loop.

Messages are stored encoded, which both enforces the codec's rules and isolates
receivers from senders (and from each other, for group sends). The one exception is
a message the sender hands over (``send_waiting(..., owned=True)``): the interface's
``websocket.receive`` frames, which nobody else holds, are stored as the dict itself.

Nothing here can fail as a backend does, except being used after
:meth:`InMemoryChannelLayer.aclose`: every operation checks for that inside its
critical section, so one that races with the close either finishes before it or
raises :class:`~chanlite.LayerError`, and none is left waiting for a wake-up that
will never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .._codec import decode, encode
from ..exceptions import ChannelFull, LayerError
from ..names import is_process_specific, queue_name, validate_channel_name, validate_group_name
from .base import BaseChannelLayer, LocalReader, LocalTaker, ReceiveResult

logger = logging.getLogger("chanlite.layers")

# (expires_at, full channel name, encoded payload, or a dict handed over by its sender)
_Entry = tuple[float, str, "bytes | dict[str, Any]"]
#: How a memory layer names itself in a LayerError.
BACKEND = "memory layer"


def _closed() -> LayerError:
    return LayerError(BACKEND, "closed by aclose()")


def _wake(future: asyncio.Future[None]) -> bool:
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


class _Waiter:
    """One blocked receive: a future plus a flag set (under the lock) once woken."""

    __slots__ = ("future", "woken")

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future
        self.woken = False

    def wake(self) -> bool:
        """Wake the receive (caller holds the layer lock); False if its loop is gone."""
        self.woken = _wake(self.future)
        return self.woken


class _Sender:
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


class _Reader:
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


class _Taker:
    """A local taker, and the thread whose sends it is offered."""

    __slots__ = ("take", "thread")

    def __init__(self, take: LocalTaker) -> None:
        self.take = take
        self.thread = threading.get_ident()


class InMemoryChannelLayer(BaseChannelLayer):
    """A channel layer in this process's memory (``memory://``).

    ``clock`` is the time source of message and group expiry (``time.monotonic`` by
    default; tests pass a fake one). Receive timeouts always run on real time.
    """

    schemes = ("memory",)
    # Sends never wait at all.
    task_neutral_sends = True
    process_local = True

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, **options: Any) -> None:
        super().__init__(**options)
        self._clock = clock
        self._lock = threading.Lock()
        self._queues: dict[str, deque[_Entry]] = {}
        self._waiters: dict[str, deque[_Waiter]] = {}
        # Per queue, the sends waiting for room, oldest first. Invariant: a queue with
        # waiting senders is full (each message leaving it admits one at once).
        self._senders: dict[str, deque[_Sender]] = {}
        self._readers: dict[str, _Reader] = {}
        # Queue name -> the local takers offered what would be first on it.
        self._takers: dict[str, tuple[_Taker, ...]] = {}
        # group -> {channel: membership expiry}; channel -> groups it is in
        self._groups: dict[str, dict[str, float]] = {}
        self._memberships: dict[str, set[str]] = {}
        self._rotation = 0
        self._closed = False

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
        reader = _Reader(deliver, asyncio.get_running_loop())
        with self._lock:
            if self._closed:
                raise _closed()
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
        taker = _Taker(take)
        with self._lock:
            if self._closed:
                raise _closed()
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

    # -- sending --------------------------------------------------------------

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        """Append ``payload`` to ``channel``; raise ChannelFull when at capacity."""
        key = queue_name(channel)
        reader = self._readers.get(key) if self._readers else None
        if reader is not None:
            reader.hand([channel], payload)
            return
        if self._takers and key in self._takers and self._offer(key, channel, payload):
            return
        now = self._clock()
        with self._lock:
            if self._closed:
                raise _closed()
            if not self._append(key, channel, payload, now):
                raise ChannelFull(channel, self.capacity_for(key))

    async def send_waiting(
        self, channel: str, message: dict[str, Any], timeout: float, *, owned: bool = False
    ) -> None:
        """Send ``message``, waiting up to ``timeout`` seconds for room while
        ``channel`` is full; raise ChannelFull if there is still none by then.

        The senders waiting on a queue are admitted oldest first, one per message that
        leaves it, and ahead of any later ``send``. Raises like :meth:`send` for a bad
        name or content. A cancelled call may already have sent its message.

        ``owned=True`` hands ``message`` over instead of copying it: it is stored and
        received as is, unencoded. Only for a dict the caller built, never touches
        again and knows the codec accepts within its size limit.
        """
        validate_channel_name(channel)
        key = queue_name(channel)
        reader = self._readers.get(key) if self._readers else None
        if reader is not None:
            reader.hand([channel], encode(message))
            return
        payload: bytes | dict[str, Any] = message if owned else encode(message)
        if self._takers and key in self._takers and self._offer(key, channel, payload):
            return
        with self._lock:
            if self._closed:
                raise _closed()
            if self._append(key, channel, payload, self._clock()):
                return
            if timeout <= 0:
                raise ChannelFull(channel, self.capacity_for(key))
            sender = _Sender(asyncio.get_running_loop().create_future(), channel, payload)
            self._senders.setdefault(key, deque()).append(sender)
        await self._wait_for_room(sender, key, timeout)

    async def _wait_for_room(self, sender: _Sender, key: str, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await sender.future
            if not sender.admitted:  # woken by aclose(), not by room on the queue
                raise _closed()
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

    def waiting_receivers(self, channel: str) -> int:
        """How many receives wait on ``channel``'s queue now, on any thread."""
        with self._lock:
            waiters = self._waiters.get(queue_name(channel), ())
            return sum(not waiter.woken for waiter in waiters)

    def waiting_senders(self, channel: str) -> int:
        """How many :meth:`send_waiting` calls wait for room on ``channel``'s queue."""
        with self._lock:
            return len(self._senders.get(queue_name(channel), ()))

    def _forget_sender(self, sender: _Sender, key: str) -> None:
        senders = self._senders.get(key)
        if senders is not None:
            with contextlib.suppress(ValueError):
                senders.remove(sender)
            if not senders:
                del self._senders[key]

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        """Append ``payload`` to every live member; full members are skipped."""
        now = self._clock()
        local: dict[str, list[str]] = {}
        with self._lock:
            if self._closed:
                raise _closed()
            readers = self._readers
            for channel in self._live_members(group, now):
                key = queue_name(channel)
                if readers and key in readers:
                    local.setdefault(key, []).append(channel)
                elif not self._append(key, channel, payload, now):
                    self.group_full_skips += 1
            targets = [(readers[key], channels) for key, channels in local.items()]
        for reader, channels in targets:
            reader.hand(channels, payload)

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
            _wake(sender.future)
            self._wake_one(key)
        if not senders:
            del self._senders[key]

    def _expire_and_admit(self, key: str, now: float) -> None:
        queue = self._queues.get(key)
        if queue:
            self._drop_expired(queue, now)
        self._admit_senders(key, now)

    def _wake_one(self, key: str) -> None:
        waiters = self._waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.woken and not waiter.future.done() and waiter.wake():
                return

    # -- receiving ------------------------------------------------------------

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> ReceiveResult:
        """Take the next message from any of ``channels`` (see the base contract)."""
        keys = self.cached_receive_names(channels)
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            waiter = None
            with self._lock:
                if self._closed:  # also what a receive woken by aclose() finds
                    raise _closed()
                entry = self._pop_first(keys, self._clock())
                if entry is None and not _past(deadline):
                    waiter = self._register(keys)
            if entry is not None:
                payload = entry[2]
                return entry[1], payload if isinstance(payload, dict) else decode(payload)
            if waiter is None:
                return None, None
            await self._wait(waiter, keys, deadline)

    def _register(self, keys: list[str]) -> _Waiter:
        waiter = _Waiter(asyncio.get_running_loop().create_future())
        for key in keys:
            waiters = self._waiters.get(key)  # not setdefault: it would build a deque
            if waiters is None:
                waiters = self._waiters[key] = deque()
            waiters.append(waiter)
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

    def _pop_first(self, keys: list[str], now: float) -> _Entry | None:
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
            if self._closed:
                raise _closed()
            self._groups.setdefault(group, {})[channel] = self._clock() + self.group_expiry
            self._memberships.setdefault(channel, set()).add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` if it is a member."""
        validate_group_name(group)
        validate_channel_name(channel)
        with self._lock:
            if self._closed:
                raise _closed()
            self._remove_member(group, channel)

    async def group_channels(self, group: str) -> set[str]:
        """The unexpired members of ``group``."""
        validate_group_name(group)
        with self._lock:
            if self._closed:
                raise _closed()
            return set(self._live_members(group, self._clock()))

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
        """Drop every message and group (senders waiting for room get it)."""
        with self._lock:
            if self._closed:
                raise _closed()
            self._queues.clear()
            self._groups.clear()
            self._memberships.clear()
            now = self._clock()
            for key in list(self._senders):
                self._admit_senders(key, now)

    async def stats(self) -> dict[str, Any]:
        """Current channel depths and group sizes."""
        with self._lock:
            if self._closed:
                raise _closed()
            return {
                "channels": {key: len(queue) for key, queue in self._queues.items() if queue},
                "groups": {group: len(members) for group, members in self._groups.items()},
            }

    async def aclose(self) -> None:
        """Close the layer and drop what it holds; closing twice is harmless.

        From now on every operation raises :class:`~chanlite.LayerError`, and so do
        the receives and the :meth:`send_waiting` calls waiting when it closes: they
        are woken to find the layer closed.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for waiters in self._waiters.values():
                for waiter in waiters:
                    if not waiter.woken:
                        waiter.wake()
            for senders in self._senders.values():
                for sender in senders:
                    _wake(sender.future)  # not admitted: it raises on waking
            self._waiters.clear()
            self._senders.clear()
            self._queues.clear()
            self._readers.clear()
            self._takers.clear()
            self._groups.clear()
            self._memberships.clear()


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _loop_deadline(deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
