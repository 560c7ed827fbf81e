"""The blocking reads (:class:`Reader`) that take entries from Redis into the layer's
buffer.

They block in ``BLMPOP`` (``BLPOP`` before Redis 7) on a connection of their own, so a
waiting receive wakes as soon as a message lands; see :class:`Reader` for how a read is
shared and batched, and why a cancelled receive never loses a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from .._resp import RespConnection
from .shard import BLOCK_SECONDS, backoff

if TYPE_CHECKING:
    from .receiving import ReceivingLayer

logger = logging.getLogger(__package__)  # chanlite.layers.redis, for the whole layer

#: Entries one blocking read takes from a process queue (``prefix!``: nobody else
#: reads it), and the fewest and most it takes from a shared channel (other
#: processes may be waiting for those; see ``Reader.fit_batch``).
PROCESS_BATCH, SHARED_BATCH, SHARED_BATCH_MAX = 256, 8, 64
#: How much of its own work, in seconds, a process takes ahead of a shared channel.
DRAIN_TARGET = 0.01
#: How long a read of a shared channel may go on after its last receiver left before
#: it is ended early: a worker that receives again at once keeps its read.
UNBLOCK_DELAY = 0.02
#: How long a reader with nobody waiting stays, so a process that receives in a loop
#: keeps one reader; then it stops and hands its buffered entries back to Redis.
LINGER = 0.5


class Reader:
    """The blocking read of one set of queues on one shard.

    Every local receive waiting on exactly those queues shares it, and it reads while
    one of them waits: a process reads all its reply channels with one read of
    ``prefix!``. One read takes up to :data:`PROCESS_BATCH` entries of a process queue
    (a batch fitted by :meth:`fit_batch` of a channel other processes read too) into
    the layer's buffer, where the next receives find them at once; receives wait only
    when the buffer holds nothing for them, so a process never takes more than a
    batch ahead of a shared channel. Reads also go on with nobody waiting (see
    :meth:`_awaited`): process queues, which nobody else can read, for :data:`LINGER`
    seconds after the last receive, up to a batch; shared channels for
    :data:`UNBLOCK_DELAY`, while nothing of them is buffered. So the next message is
    on its way while the last one is handled. The read runs on a connection of its
    own and is never cancelled mid-command (a cancelled read may already have taken
    messages). :data:`UNBLOCK_DELAY` after the last receiver of a shared channel left,
    ``CLIENT UNBLOCK`` ends a read still going. A reader with nobody waiting for
    :data:`LINGER` seconds stops, and hands what it buffered back to the head of its
    queues.
    """

    def __init__(self, layer: ReceivingLayer, index: int, names: tuple[str, ...]) -> None:
        self.layer, self.index, self.names = layer, index, names
        self.shard = layer.shards.shards[index]
        #: Only this process reads process queues: they may be read ahead.
        self.ahead = all(name.endswith("!") for name in names)
        self.batch = PROCESS_BATCH if self.ahead else SHARED_BATCH
        # The size and end time of the last read of a shared channel (fit_batch).
        self._took, self._took_at = 0, 0.0
        self.users = 0
        self._idle_since = 0.0
        self.closing = False
        self._wanted = asyncio.Event()
        self._client_id: int | None = None
        self._blocking = False
        self._unblocking: asyncio.TimerHandle | None = None
        self._rotation = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    def join(self) -> None:
        """A receive started waiting on this reader."""
        self.users += 1
        self._wanted.set()

    def leave(self) -> None:
        """A receiver stopped waiting; end the read soon if it was the last and no
        receive comes back within :data:`UNBLOCK_DELAY`."""
        self.users -= 1
        if self.users <= 0:
            self._wanted.clear()
            self._idle_since = asyncio.get_running_loop().time()
            if not self.ahead:  # a read ahead of a process queue ends by itself
                self._unblock_soon()

    def _unblock_soon(self) -> None:
        """End the read :data:`UNBLOCK_DELAY` after the last receiver left, unless a
        receive comes back by then."""
        if self._unblocking is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._idle_since + UNBLOCK_DELAY - loop.time())
            self._unblocking = loop.call_later(delay, self._unblock_if_idle)

    def _unblock_if_idle(self) -> None:
        self._unblocking = None
        if self.users <= 0:
            self.wake()

    def poke(self) -> None:
        """Make an idle reader look again at whether to read ahead."""
        if self.users <= 0:
            self._wanted.set()

    def stop(self) -> None:
        """Stop reading for good (the layer is closing)."""
        self.closing = True
        if self._unblocking is not None:
            self._unblocking.cancel()
            self._unblocking = None
        self._wanted.set()
        self.wake()

    def wake(self) -> None:
        """Unblock a read in flight, so the reader notices it has nobody to read for."""
        if self._blocking and self._client_id is not None:
            self.layer.spawn(self.shard.call("CLIENT", "UNBLOCK", self._client_id, retry=True))

    async def _run(self) -> None:
        connection: RespConnection | None = None
        delays = iter(backoff())
        try:
            while await self._awaited():
                try:
                    connection = connection or await self.shard.blocking_connection()
                    popped = await self._pop(connection)
                except Exception as error:
                    self._failed(error)
                    if connection is not None:
                        await self.shard.release_blocking(connection, broken=True)
                        connection = None
                    await asyncio.sleep(next(delays))
                    continue
                delays = iter(backoff())
                if popped is not None:
                    self._accept(*popped)
        finally:
            self.layer.reader_done(self)
            if connection is not None:
                await self.shard.release_blocking(connection)
            await self.layer.hand_back(self.names)

    async def _awaited(self) -> bool:
        """Whether to read now: a receive waits, or the queues may be read ahead;
        else wait up to :data:`LINGER` for a receive. False: stop reading.

        A process queue is read ahead for :data:`LINGER` seconds, up to a batch. A
        shared channel is read ahead only within :data:`UNBLOCK_DELAY` of its last
        receive, and only when nothing of it is buffered: a process that receives in
        a loop has its next message on the way while it handles the last, and still
        never holds more than one batch that another process could have taken.
        """
        loop = asyncio.get_running_loop()
        while not self.closing:
            if self.users:
                return True
            idle = loop.time() - self._idle_since
            buffered = self.layer.buffered(self.names)
            if self.ahead and idle < LINGER and buffered < self.batch:
                return True
            if not self.ahead and idle < UNBLOCK_DELAY and not buffered:
                return True
            self._wanted.clear()  # set by a receive joining, or by poke()
            try:
                async with asyncio.timeout(max(0.0, LINGER - idle)):
                    await self._wanted.wait()
            except TimeoutError:
                return self.users > 0 and not self.closing
        return False

    def _failed(self, error: Exception) -> None:
        if self.shard.transient(error):
            self.shard.mark_down(error)  # an outage or a moved slot: wait, and retry
        else:  # say, a key of the wrong type: the receivers would wait forever
            logger.error("reading %s failed: %s", ", ".join(self.names), error)
            self.layer.fail_waiters(self.names, self.shard.failure(error))

    async def _pop(self, connection: RespConnection) -> tuple[list[bytes], int] | None:
        """One blocking read, pipelined with TIME (to judge expiry by the server's
        clock); returns (entries, server time in ms)."""
        keys = self.layer.queue_keys(self.index, self._rotated())
        if not self.ahead:
            self.fit_batch()
        if self.shard.blmpop:
            read: tuple[Any, ...] = ("BLMPOP", BLOCK_SECONDS, len(keys), *keys)
            read += ("LEFT", "COUNT", self.batch)
        else:
            read = ("BLPOP", *keys, BLOCK_SECONDS)
        replies = connection.execute([read, ("TIME",)])
        self._client_id = connection.client_id
        self._blocking = True
        if self.closing:
            self.wake()
        elif not (self.users or self.ahead):  # a read ahead of a shared channel
            self._unblock_soon()
        try:
            reply, clock = await replies
        finally:
            self._blocking = False
        if isinstance(reply, ResponseError):
            if "unknown command" not in str(reply).lower():
                raise reply
            self.shard.blmpop = False  # Redis before 7.0: one entry per read
            return None
        if reply is None:
            return None
        seconds, micros = clock
        entries = list(reply[1]) if self.shard.blmpop else [reply[1]]
        self._took, self._took_at = len(entries), time.monotonic()
        return entries, int(seconds) * 1000 + int(micros) // 1000

    def fit_batch(self) -> None:
        """Size the next read of a shared channel to about :data:`DRAIN_TARGET` seconds
        of this process's work, between :data:`SHARED_BATCH` and
        :data:`SHARED_BATCH_MAX`.

        Reads happen when the buffer is empty, so the last batch was handled in the
        time since it arrived. Only a full batch (more was waiting) lets the next
        grow: a process whose consumers are quick takes more at a time, one whose
        consumers are slow leaves the rest to other processes. A batch that came
        back less than half full halves the next.
        """
        took, self._took = self._took, 0
        if took and took >= self.batch:
            rate = took / max(time.monotonic() - self._took_at, 1e-6)
            self.batch = max(SHARED_BATCH, min(SHARED_BATCH_MAX, int(rate * DRAIN_TARGET)))
        elif took and took < self.batch // 2:
            self.batch = max(SHARED_BATCH, self.batch // 2)

    def _accept(self, entries: list[bytes], now_ms: int) -> None:
        try:
            self.layer.accept(entries, now_ms)
        except Exception as error:  # a broken entry must not stop the reader
            logger.exception("dropped messages that could not be read: %s", error)

    def _rotated(self) -> list[str]:
        # Start each read at another queue, so a busy queue cannot starve the rest.
        start = self._rotation % len(self.names)
        self._rotation += 1
        return [*self.names[start:], *self.names[:start]]
