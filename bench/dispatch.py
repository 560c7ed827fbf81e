"""Suite ``dispatch``: messages per second through :class:`chanlite.worker.Worker`.

Each round preloads N messages into a fresh ``memory://`` layer (capacity N), then
starts a worker whose only route sends them to a no-op consumer and times until the
last one is consumed. Consumers count with a shared counter and set an
:class:`asyncio.Event` on the last message; the timed part only awaits that event.
The ``def`` consumer runs in the worker's thread pool (default 4 threads), the
``async def`` one on the event loop. Worker defaults are used throughout.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import chanlite
from chanlite import Message, Routes, route
from chanlite.worker import Worker

from .core import Config, Row, Sample, Target, check, measure

NAME = "dispatch"
TITLE = "Worker dispatch: no-op consumers through chanlite.worker.Worker"
BASELINE = ""
DESCRIPTION = (
    "Preload N messages into a `memory://` layer, start a `Worker` (default settings: "
    "4 threads), time until the consumer has seen all N. The consumer only counts; "
    "the last message sets an `asyncio.Event` that the timer awaits. The `def` consumer "
    "runs in the worker's thread pool, the `async def` one on the event loop. "
    "Channels 4 has no equivalent worker loop, so there is no baseline column; "
    "targets are judged on medians."
)

CHANNEL = "bench.dispatch"
MESSAGE: dict[str, Any] = {
    "type": "websocket.send",
    "text": "hello world",
    "reply_channel": "bench!reply",
}
ASYNC_TARGET = Target(minimum=30_000)
SYNC_TARGET = Target(minimum=10_000)


class Countdown:
    """Counts consumed messages and sets :attr:`done` on the ``total``-th one."""

    def __init__(self, total: int, loop: asyncio.AbstractEventLoop) -> None:
        self.total = total
        self.done = asyncio.Event()
        self._loop = loop
        # next() on itertools.count is atomic under the GIL: safe from pool threads.
        self._counter = itertools.count(1)

    def hit(self) -> None:
        """Count one message, on the event loop."""
        if next(self._counter) == self.total:
            self.done.set()

    def hit_from_thread(self) -> None:
        """Count one message, from a worker thread."""
        if next(self._counter) == self.total:
            self._loop.call_soon_threadsafe(self.done.set)


Consumer = Callable[..., Any]


def async_noop(countdown: Countdown) -> Consumer:
    """An ``async def`` consumer that only counts."""

    async def consume(message: Message) -> None:
        countdown.hit()

    return consume


def sync_noop(countdown: Countdown) -> Consumer:
    """A ``def`` consumer that only counts."""

    def consume(message: Message) -> None:
        countdown.hit_from_thread()

    return consume


async def run(config: Config) -> list[Row]:
    """Measure the async and the sync no-op consumer."""
    count = config.size(full=50_000, quick=5_000)
    return [
        Row(
            "async def no-op consumer",
            "msg/s",
            await measure(partial(dispatch_round, async_noop, count), config),
            target=ASYNC_TARGET,
        ),
        Row(
            "def no-op consumer (thread pool)",
            "msg/s",
            await measure(partial(dispatch_round, sync_noop, count), config),
            target=SYNC_TARGET,
        ),
    ]


async def dispatch_round(
    make_consumer: Callable[[Countdown], Consumer],
    count: int,
    clock: Callable[[], float] = time.perf_counter,
) -> Sample:
    """Preload ``count`` messages, then time a worker consuming all of them on ``clock``
    (``time.process_time`` times the process's CPU instead of the wall)."""
    layer = chanlite.get_layer("memory://", capacity=count)
    countdown = Countdown(count, asyncio.get_running_loop())
    routes = Routes([route(CHANNEL, make_consumer(countdown))])
    for _ in range(count):
        await layer.send(CHANNEL, MESSAGE)
    worker = Worker(routes, layer)
    start = clock()
    running = asyncio.create_task(worker.run())
    await countdown.done.wait()
    sample = Sample(count, clock() - start)
    worker.stop()
    await running
    leftover = await layer.receive([CHANNEL], timeout=0)
    check(leftover == (None, None), "the worker left a message unconsumed")
    return sample
