"""Sends (:class:`SendingLayer`): the sends to one queue made in one turn of the event
loop are stored by one script call, written at the end of that turn, in the order
they were made; each sender still learns on its own whether its message fitted."""

from __future__ import annotations

import asyncio
from typing import Any

from ..._eager import start_eagerly
from ...exceptions import ChannelFull
from ...names import queue_name
from .core import RedisLayerCore
from .scripts import SEND_SCRIPT

#: Most messages one send script stores (sends to one queue in one turn of the event
#: loop are stored together).
SEND_BATCH = 256


class _Send:
    """A send waiting to be stored with the others of its turn."""

    __slots__ = ("channel", "future", "payload")

    def __init__(self, channel: str, payload: bytes, future: asyncio.Future[bool]) -> None:
        self.channel, self.payload, self.future = channel, payload, future


class SendingLayer(RedisLayerCore):
    """Sending, in batches of a turn of the event loop, on the Redis layer."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        #: Sends waiting for the next turn, by stored name (see send_encoded).
        self._batches: dict[str, list[_Send]] = {}

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        """Append ``payload`` to ``channel`` in one script call; ChannelFull if full."""
        name = queue_name(channel)
        if self._local:
            deliver = self._local.get(name)
            if deliver is not None:  # only this process reads it: no need for Redis
                self._hand(deliver, [channel], payload)
                return
        # Stored with the other sends to its queue of this turn of the loop, in one
        # script call: a burst of frames or replies costs Redis one wake-up, not one
        # per message (and one write, whatever else is in flight).
        if not await self._join_batch(name, channel, payload):
            raise ChannelFull(channel, self.capacity_for(name))

    async def _store(self, name: str, pairs: list[Any]) -> int:
        """Store (channel, payload) ``pairs`` (flattened) on queue ``name``, in order,
        in one script call; returns how many fitted."""
        index = self.shards.index_for(name)
        prefixes = self.prefixes[index]
        args = [*prefixes, self._expiry_ms, self._queue_ttl(name), self.capacity_for(name)]
        shard = self.shards.shards[index]
        return int(await shard.run(SEND_SCRIPT, [prefixes[0] + name], [*args, *pairs]))

    def _join_batch(self, name: str, channel: str, payload: bytes) -> asyncio.Future[bool]:
        """Queue a send to go out with the others to ``name`` on the next turn; the
        future says whether it was stored."""
        loop = asyncio.get_running_loop()
        if not self._batches:
            loop.call_soon(self._flush_batches)
        send = _Send(channel, payload, loop.create_future())
        batch = self._batches.get(name)
        if batch is None:
            self._batches[name] = [send]
        else:
            batch.append(send)
        return send.future

    def _flush_batches(self) -> None:
        batches, self._batches = self._batches, {}
        for name, batch in batches.items():
            sends = [send for send in batch if not send.future.cancelled()]
            shard = self.shards.shard_for(name)
            for start in range(0, len(sends), SEND_BATCH):
                sending = self._send_batch(name, sends[start : start + SEND_BATCH])
                if not shard.connected:  # connecting takes a task
                    self.spawn(sending)
                    continue
                # Started here, so the script call is written now, not a turn later.
                task = start_eagerly(sending)
                if task is not None:
                    self.keep(task)

    async def _send_batch(self, name: str, sends: list[_Send]) -> None:
        pairs = [item for send in sends for item in (send.channel, send.payload)]
        try:
            stored = await self._store(name, pairs)
        except Exception as error:
            for send in sends:
                if not send.future.done():
                    send.future.set_exception(error)
            return
        for index, send in enumerate(sends):
            if not send.future.done():
                send.future.set_result(index < stored)
