"""The receive side of the layer (:class:`ReceivingLayer`): the buffer of messages
taken from Redis, the receives waiting on it, and the readers that fill it.

A receive takes from the buffer when it holds something for it; else it waits while
the :class:`~.reader.Reader` of its queues takes a batch from Redis into the buffer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from ..._codec import decode
from ...exceptions import LayerError
from ...names import queue_name
from ..base import ReceiveResult
from .core import RedisLayerCore
from .reader import Reader
from .scripts import EVICT_SCRIPT, POP_SCRIPT, REQUEUE_SCRIPT, parse_entry

logger = logging.getLogger(__package__)  # chanlite.layers.redis, for the whole layer


class _Taken:
    """A message taken from Redis (or handed over in the process), kept in the
    process until a receive takes it."""

    __slots__ = ("channel", "deadline", "expires", "payload")

    def __init__(self, channel: str, payload: bytes, expires: int | None, deadline: float) -> None:
        self.channel, self.payload = channel, payload
        #: Expiry in server ms (for handing it back; None for a message that never
        #: went through Redis), and on the time.monotonic() clock.
        self.expires, self.deadline = expires, deadline

    def entry(self, now_ms: int, clock: float) -> bytes:
        """The entry to store to hand this message back to Redis, when the server's
        clock reads ``now_ms`` at ``time.monotonic()`` ``clock``."""
        expires = self.expires
        if expires is None:
            expires = now_ms + max(1, round((self.deadline - clock) * 1000))
        return b"%d %s %s" % (expires, self.channel.encode("ascii"), self.payload)


class _Waiter:
    """One waiting receive; the layer hands it one taken message."""

    __slots__ = ("future", "readers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[_Taken] = loop.create_future()
        self.readers: list[Reader] = []

    def offer(self, taken: _Taken) -> bool:
        """Hand ``taken`` over; False if this receive is no longer waiting. Its readers
        stop counting it at once, so none reads again for a receive already served."""
        if self.future.done():
            return False
        self.future.set_result(taken)
        for reader in self.readers:
            reader.leave()
        self.readers.clear()
        return True


class ReceivingLayer(RedisLayerCore):
    """Receiving, and the buffer of taken messages, of the Redis layer."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._waiters: dict[str, deque[_Waiter]] = {}
        #: Messages taken from Redis that no receive has taken yet, by stored name.
        self._buffers: dict[str, deque[_Taken]] = {}
        self._readers: dict[tuple[int, tuple[str, ...]], Reader] = {}
        self._rotation = 0

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> ReceiveResult:
        """Take the next message from any of ``channels`` (see the base contract)."""
        names = self.cached_receive_names(channels)
        taken = self._take_buffered(names)
        if taken is None:
            if timeout is not None and timeout <= 0:
                taken = await self._receive_now(names)
            else:
                taken = await self._receive_waiting(names, timeout)
        if taken is None:
            return None, None
        return taken.channel, decode(taken.payload)

    def _take_buffered(self, names: list[str]) -> _Taken | None:
        """The oldest live buffered message of one of ``names`` (rotating), or None."""
        if not self._buffers:
            return None
        for name in self._rotated(names) if len(names) > 1 else names:
            buffer = self._buffers.get(name)
            if buffer:
                taken = self._next_live(buffer)
                if not buffer:
                    del self._buffers[name]
                    self._poke_readers(names)
                if taken is not None:
                    return taken
        return None

    def _poke_readers(self, names: list[str]) -> None:
        """The buffer of one of ``names`` ran dry: their idle readers may read ahead."""
        for key in self._by_shard(names):
            reader = self._readers.get(key)
            if reader is not None:
                reader.poke()

    async def _receive_now(self, names: list[str]) -> _Taken | None:
        """One non-blocking pop; what it took stays buffered if cancelled meanwhile."""
        await asyncio.shield(asyncio.ensure_future(self._pop_now(names)))
        return self._take_buffered(names)

    async def _pop_now(self, names: list[str]) -> None:
        for index, group in self._rotated(self._by_shard(names)):
            keys = self.queue_keys(index, self._rotated(list(group)))
            shard = self.shards.shards[index]
            popped = await shard.run(POP_SCRIPT, keys, self.prefixes[index], patience=0.0)
            if popped:
                self.accept([bytes(popped[0])], int(popped[1]))
                return

    async def _receive_waiting(self, names: list[str], timeout: float | None) -> _Taken | None:
        self.shards.refuse_if_closed()  # its readers would only ever fail
        waiter = _Waiter(asyncio.get_running_loop())
        for name in names:
            self._waiters.setdefault(name, deque()).append(waiter)
        for index, group in self._by_shard(names):
            reader = self._reader_for(index, group)
            reader.join()
            waiter.readers.append(reader)
        try:
            async with asyncio.timeout(timeout):
                return await waiter.future
        except TimeoutError:
            return self._settle(waiter, take=True)  # one handed over as time ran out
        except asyncio.CancelledError:
            self._settle(waiter, take=False)
            raise
        finally:
            self._forget(waiter, names)

    def _reader_for(self, index: int, names: tuple[str, ...]) -> Reader:
        """The reader of ``names`` (sorted, all on shard ``index``), started if need be."""
        reader = self._readers.get((index, names))
        if reader is None:
            reader = self._readers[index, names] = Reader(self, index, names)
        return reader

    def waiting_receivers(self, channel: str) -> int:
        """How many receives of this layer wait on ``channel``'s queue now."""
        waiters = self._waiters.get(queue_name(channel), ())
        return sum(not waiter.future.done() for waiter in waiters)

    def _settle(self, waiter: _Waiter, *, take: bool) -> _Taken | None:
        """End a wait that did not see its result: take what was handed over, or give
        it back to the buffer, in front, for the next receive. Synchronous, so a
        cancelled receive settles without awaiting."""
        future = waiter.future
        if not future.done():
            future.cancel()  # nothing can be handed over after this
            return None
        if future.cancelled() or future.exception() is not None:
            return None
        taken = future.result()
        if take:
            return taken
        name = queue_name(taken.channel)
        self._buffers.setdefault(name, deque()).appendleft(taken)
        self._dispatch(name)
        return None

    def _forget(self, waiter: _Waiter, names: list[str]) -> None:
        for name in names:
            waiters = self._waiters.get(name)
            if waiters is not None:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[name]
        for reader in waiter.readers:
            reader.leave()

    def _by_shard(self, names: list[str]) -> list[tuple[int, tuple[str, ...]]]:
        groups: dict[int, list[str]] = {}
        for name in names:
            groups.setdefault(self.shards.index_for(name), []).append(name)
        return [(index, tuple(sorted(group))) for index, group in sorted(groups.items())]

    def _rotated(self, items: list[Any]) -> list[Any]:
        start = self._rotation % len(items)
        self._rotation += 1
        return [*items[start:], *items[:start]]

    # -- the buffer of taken messages ----------------------------------------------

    def accept(self, entries: list[bytes], now_ms: int) -> None:
        """Buffer entries taken from Redis at server time ``now_ms``, one message per
        channel an entry names, and hand them to waiting receives. Expired entries
        are dropped, evicting their process-specific channels from their groups."""
        clock = time.monotonic()
        touched: dict[str, None] = {}
        local = self._local
        for entry in entries:
            expires, channels, payload = parse_entry(entry)
            if expires <= now_ms:
                self._evict(channels)
                continue
            name = queue_name(channels[0])  # one entry names channels of one stored name
            if local:
                deliver = local.get(name)
                if deliver is not None:
                    self._hand(deliver, channels, payload)
                    continue
            deadline = clock + (expires - now_ms) / 1000
            buffer = self._buffers.get(name)
            if buffer is None:
                buffer = self._buffers[name] = deque()
            buffer.extend(_Taken(channel, payload, expires, deadline) for channel in channels)
            touched[name] = None
        for name in touched:
            self._dispatch(name)

    def buffered(self, names: Iterable[str]) -> int:
        """How many taken messages of ``names`` wait in the buffer."""
        return sum(len(self._buffers.get(name, ())) for name in names)

    def _dispatch(self, name: str) -> None:
        """Hand buffered messages of ``name`` to its waiting receives, oldest first."""
        buffer = self._buffers.get(name)
        while buffer and (waiter := self._first_waiter(name)) is not None:
            taken = self._next_live(buffer)
            if taken is not None:
                waiter.offer(taken)
        if buffer is not None and not buffer:
            del self._buffers[name]

    def _next_live(self, buffer: deque[_Taken]) -> _Taken | None:
        """Pop the oldest message of ``buffer`` that has not expired."""
        clock = time.monotonic()
        while buffer:
            taken = buffer.popleft()
            if taken.deadline > clock:
                return taken
            self.expired_messages += 1
            self._evict([taken.channel])
        return None

    def _evict(self, channels: list[str]) -> None:
        """Evict process-specific ``channels`` whose messages expired unread from
        their groups (in the background)."""
        by_shard: dict[int, list[str]] = {}
        for channel in channels:
            if "!" in channel:
                by_shard.setdefault(self.shards.index_for(queue_name(channel)), []).append(channel)
        for index, evicted in by_shard.items():
            shard = self.shards.shards[index]
            prefixes = self.prefixes[index]
            # The memberships are its keys: on a cluster they name the script's slot.
            keys = [prefixes[2] + channel for channel in evicted]
            self.spawn(shard.run(EVICT_SCRIPT, keys, [*prefixes, *evicted], retry=True))

    async def hand_back(self, names: Iterable[str]) -> None:
        """Put the buffered messages of ``names`` that nobody here waits for back at
        the head of their queues, in order (when their reader stops)."""
        for name in names:
            if name in self._waiters or name not in self._buffers:
                continue
            taken = self._buffers.pop(name)
            try:
                await self._requeue(name, taken)
            except LayerError as error:
                logger.warning(
                    "lost %d message(s) for %s: could not put them back (%s)",
                    len(taken),
                    name,
                    error,
                )

    async def _requeue(self, name: str, taken: deque[_Taken]) -> None:
        index = self.shards.index_for(name)
        shard = self.shards.shards[index]
        now_ms = 0
        if any(item.expires is None for item in taken):  # never went through Redis
            seconds, micros = await shard.call("TIME", retry=True)
            now_ms = int(seconds) * 1000 + int(micros) // 1000
        clock = time.monotonic()
        entries = [item.entry(now_ms, clock) for item in taken if item.deadline > clock]
        if entries:
            args = [*self.prefixes[index], self._queue_ttl(name), *entries]
            await shard.run(REQUEUE_SCRIPT, self.queue_keys(index, [name]), args)

    def _first_waiter(self, name: str) -> _Waiter | None:
        for waiter in self._waiters.get(name, ()):
            if not waiter.future.done():
                return waiter
        return None

    def reader_done(self, reader: Reader) -> None:
        """Forget a reader that has stopped (called by the reader itself)."""
        if self._readers.get((reader.index, reader.names)) is reader:
            del self._readers[reader.index, reader.names]
        if reader.users > 0:  # the layer was closed under waiting receives
            self.fail_waiters(reader.names, reader.shard.closed_error())

    def fail_waiters(self, names: Iterable[str], error: Exception) -> None:
        """Make the receives waiting on ``names`` raise ``error``."""
        for name in names:
            for waiter in self._waiters.get(name, ()):
                if not waiter.future.done():
                    waiter.future.set_exception(error)
