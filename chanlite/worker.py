"""The worker: take messages off routed channels and run their consumers.

* A message is taken off its channel only when there is room to run it (at most
  ``concurrency`` in flight, see :mod:`chanlite.inflight`), so channel capacity is
  real backpressure. A ``def`` consumer's message is taken only with a free thread.
* Each message runs as its own task, started at once
  (:func:`~chanlite._eager.start_eagerly`): one whose consumer and sends never wait
  is done before the worker takes the next, without a task switch; one that waits
  goes on by itself while the worker takes the next. How one consumer runs (its
  sends, timeout and thread) is :mod:`chanlite.running`'s job.
* Ordered consumers (``enforce_ordering``) run in socket order through a
  :class:`~chanlite.ordering.Sequencer` on the app's session store.
* On a layer with local takers (memory), a message sent on the worker's own event
  loop while the worker waits for one is started at once, in the sender's step,
  instead of waking the worker: see :meth:`Worker._take_handed`.
* A layer that fails while the worker waits for a message is logged, and the worker
  tries again after a pause (at most :data:`RECEIVE_RETRY_MAX` seconds).
* :meth:`Worker.stop` is graceful: no new messages are taken, in-flight consumers
  finish, then :meth:`Worker.run` returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._eager import start_eagerly
from ._wrap import marked
from .config import CONSUMER_TIMEOUT, check_consumer_timeout
from .default_routes import default_connect, drop
from .exceptions import ConfigurationError, LayerError
from .inflight import InFlight, Job
from .layers.base import BaseChannelLayer
from .metrics import Metrics
from .ordering import Mode, Sequencer, ordering_mode
from .protocol import WEBSOCKET_CONNECT, WEBSOCKET_DISCONNECT, WEBSOCKET_RECEIVE
from .routing import Route, Routes
from .running import MAX_CONSUME_LATER, RETRY_KEY, ConsumerRunner
from .sessions.decorators import CHANNEL_SESSION_MARK
from .worker_options import (
    ASYNC_CONCURRENCY,
    check_concurrency,
    check_threads,
    default_concurrency,
    select_channels,
)

if TYPE_CHECKING:
    from .tracing import Tracing

__all__ = ["ASYNC_CONCURRENCY", "MAX_CONSUME_LATER", "RETRY_KEY", "Worker", "select_channels"]

logger = logging.getLogger("chanlite.worker")

#: First and longest pause (seconds) before the worker asks a failing layer again.
RECEIVE_RETRY_MIN = 0.05
RECEIVE_RETRY_MAX = 2.0
# Messages started back to back, none of them waiting, before the worker lets the
# event loop serve sockets and timers.
_STREAK = 64
# Channels whose unmatched messages are dropped without a log line.
_SILENT_DROPS = frozenset({WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT})

Found = tuple[Route, dict[str, str]] | None


class Worker:
    """Runs the consumers of ``routes`` for messages arriving on ``layer``."""

    def __init__(
        self,
        routes: Routes,
        layer: BaseChannelLayer,
        *,
        threads: int = 4,
        concurrency: int | None = None,
        only_channels: Iterable[str] | None = None,
        exclude_channels: Iterable[str] | None = None,
        consumer_timeout: float | None = CONSUMER_TIMEOUT,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """``metrics``: where to count (a fresh :class:`~chanlite.metrics.Metrics`
        when None)."""
        self.routes = routes
        self.layer = layer
        self.threads = check_threads(threads)
        self.channels = select_channels(routes.channels, only_channels, exclude_channels)
        if not self.channels:
            raise ConfigurationError("the worker has no channels to listen on")
        self.concurrency = check_concurrency(concurrency) or default_concurrency(routes, threads)
        self._inflight = InFlight(self.concurrency, threads)
        #: Seconds a consumer may run before it is given up on; None: no limit.
        self.consumer_timeout = check_consumer_timeout(consumer_timeout)
        #: What this worker counts.
        self.metrics = metrics if metrics is not None else Metrics(routes.channels)
        channel_sessions = any(marked(r.consumer, CHANNEL_SESSION_MARK) for r in routes)
        self._runner = ConsumerRunner(
            layer,
            self._inflight,
            self.consumer_timeout,
            channel_sessions=channel_sessions,
            metrics=self.metrics,
            tracing=tracing,
        )
        self._sequencer: Sequencer | None = None
        if any(ordering_mode(r.consumer) for r in routes):
            self._sequencer = Sequencer(self._runner.session_store())
        # What every message runs in a fresh copy of (set when run() starts).
        self._context = contextvars.copy_context()
        self._tasks: set[asyncio.Task[None]] = set()
        self._taker: asyncio.Task[Any] | None = None
        # Whether the taker waits for room or a message (what stop() may cancel), and
        # whether it waits on the layer itself.
        self._idle = self._receiving = False
        # Whether a handed message is starting now (a send it makes is never taken).
        self._handing = False
        self._stopping = False

    async def run(self) -> None:
        """Receive and dispatch until :meth:`stop`; then wait for in-flight work."""
        self._runner.open()
        logger.info("worker listening on %s", ", ".join(self.channels))
        try:
            await self._take_loop()
        finally:
            self._stopping = True
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._runner.close()

    def stop(self) -> None:
        """Stop taking messages; :meth:`run` returns once in-flight consumers finish."""
        self._stopping = True
        if self._idle and self._taker is not None:
            self._idle = False  # one cancellation, taken back in _receive
            self._taker.cancel()

    async def _take_loop(self) -> None:
        """Take messages and start them, one after another, until :meth:`stop`."""
        self._context = contextvars.copy_context()
        self._taker = asyncio.current_task()
        attached = self.layer.attach_taker(self.channels, self._take_handed)
        streak = 0
        try:
            # A queued message is taken without a coroutine; _receive waits for one.
            while (taken := self._receive_ready() or await self._receive()) is not None:
                channel, content = taken
                # Counted in flight in the step the layer gave it up, so wait_idle never
                # sees a message that is neither on its channel nor in flight.
                job = self._inflight.start()
                self.metrics.received[channel] += 1
                found = self.routes.match_content(channel, content)
                if found is not None and not found[0].is_async:
                    await self._wait_for_thread(job)
                if self._start(channel, content, found, job):
                    streak = 0
                    continue
                streak += 1
                if streak >= _STREAK:
                    streak = 0
                    await asyncio.sleep(0)  # let sockets and timers run between batches
        finally:
            if attached:
                self.layer.detach_taker(self._take_handed)
            self._taker = None

    async def _wait_for_thread(self, job: Job) -> None:
        """Wait for a thread for a ``def`` consumer's job: here, not in the executor's
        queue, so the next message stays on its channel until a thread is free."""
        try:
            await self._inflight.take_thread(job)
        except BaseException:
            job.end()
            raise

    def _receive_ready(self) -> tuple[str, dict[str, Any]] | None:
        """A message already queued, if there is room for it (no coroutine, no wait)."""
        if self._stopping or not self._inflight.has_room:
            return None
        return self.layer.receive_ready(self.channels)

    async def _receive(self) -> tuple[str, dict[str, Any]] | None:
        """Wait for room, then for a message; None once stopping. A failing layer is
        logged and asked again after a pause (which stop() cuts short)."""
        pause = 0.0
        while not self._stopping:
            self._idle = True
            try:
                if pause:
                    await asyncio.sleep(pause)
                if not self._inflight.has_room:
                    await self._inflight.wait_room()
                self._receiving = True
                channel, content = await self.layer.receive(self.channels)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                _uncancel_self()
                return None
            except LayerError as exc:
                pause = min(RECEIVE_RETRY_MAX, pause * 2 or RECEIVE_RETRY_MIN)
                logger.error("the worker could not receive (%s); trying again in %gs", exc, pause)
                continue
            finally:
                self._idle = self._receiving = False
            assert channel is not None and content is not None  # no timeout was given
            return channel, content
        return None

    def _start(self, channel: str, content: dict[str, Any], found: Found, job: Job) -> bool:
        """Start running a taken message as a task of its own; True if it waited (and
        runs on), False if it is done already."""
        task = start_eagerly(self._run_job(channel, content, found, job), self._context.copy())
        if task is None:
            return False
        job.waits_in(task)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run_job(self, channel: str, content: dict[str, Any], found: Found, job: Job) -> None:
        try:
            if found is not None and self._sequencer is None:
                await self._runner.run(channel, content, found[0], found[1], job)
            else:
                await self._handle(channel, content, found, job)
        except Exception:
            logger.exception("the worker failed on a message on channel %r", channel)
        finally:
            job.end()

    def _take_handed(self, channel: str, content: dict[str, Any]) -> bool:
        """Start a message a sender hands over (the layer's local taker); True if taken.

        Taken only while the worker waits on the layer for a message (which this one
        would have been) and has room for it and for the one that receive may still
        return. The message starts at once, in the sender's step, sparing the worker a
        wake-up. ``def`` consumers, and what a handed message sends as it starts, go
        through the queue.
        """
        if self._handing or not self._receiving or self._stopping:
            return False
        if self._inflight.count + 1 >= self._inflight.limit:
            return False
        found = self.routes.match_content(channel, content)
        if found is not None and not found[0].is_async:
            return False
        job = self._inflight.start()
        self.metrics.received[channel] += 1
        self._handing = True
        try:
            self._start(channel, content, found, job)
        finally:
            self._handing = False
        return True

    @property
    def in_flight(self) -> int:
        """Messages taken and not finished."""
        return self._inflight.count

    @property
    def running(self) -> bool:
        """True while the worker takes messages (from :meth:`run` until :meth:`stop`)."""
        return self._taker is not None and not self._stopping

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no message is in flight and the layer reports none waiting on
        this worker's channels (layers without ``stats`` report nothing waiting).

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while self._inflight.count or await self._messages_waiting():
                if self._inflight.count:
                    await self._inflight.wait_settled()
                else:
                    await asyncio.sleep(0)  # let the take loop take what is waiting

    async def _messages_waiting(self) -> bool:
        stats = await self.layer.stats()
        depths = (stats or {}).get("channels", {})
        return any(depths.get(name) for name in self.channels)

    async def dispatch(self, channel: str, content: dict[str, Any]) -> None:
        """Run the consumer for one message as the take loop would, and wait for it."""
        job = self._inflight.start()
        found = self.routes.match_content(channel, content)
        if found is not None and not found[0].is_async:
            await self._inflight.take_thread(job)
        # In a task of its own, as the take loop does, so the consumer scope it
        # enters does not leak into the caller's context.
        task = asyncio.get_running_loop().create_task(self._run_job(channel, content, found, job))
        job.waits_in(task)
        await task

    async def _handle(
        self,
        channel: str,
        content: dict[str, Any],
        found: Found,
        job: Job,
    ) -> None:
        if found is None:
            content.pop(RETRY_KEY, None)
            if channel not in _SILENT_DROPS:
                logger.error("no consumer for a message on channel %r; dropped", channel)
            return
        item, kwargs = found
        if self._sequencer is None:
            await self._runner.run(channel, content, item, kwargs, job)
        elif await self._admit(channel, content, item):
            await self._run_in_turn(channel, content, item, kwargs, job)

    async def _admit(self, channel: str, content: dict[str, Any], item: Route) -> bool:
        assert self._sequencer is not None
        try:
            return await self._sequencer.admit(channel, content, self._mode(item))
        except Exception as exc:
            # Losing the message would be worse than running it out of turn.
            logger.error("ordering store failed (%s); running a message on %r now", exc, channel)
            return True

    async def _run_in_turn(
        self, channel: str, content: dict[str, Any], item: Route, kwargs: dict[str, str], job: Job
    ) -> None:
        """Run a message whose turn has come, then each parked one it releases."""
        assert self._sequencer is not None
        pending = deque([(channel, content, item, kwargs)])
        while pending:
            channel, content, item, kwargs = pending.popleft()
            if await self._runner.run(channel, content, item, kwargs, job):
                continue  # ConsumeLater: it runs again in its turn
            # A message that ran out of turn must not move the socket's cursor; an
            # unordered disconnect still removes it.
            advance = channel == WEBSOCKET_CONNECT or self._mode(item) is not None
            if not advance and channel != WEBSOCKET_DISCONNECT:
                continue
            try:
                released = await self._sequencer.finish(
                    channel, content, last=channel == WEBSOCKET_DISCONNECT, advance=advance
                )
            except Exception as exc:
                logger.error("ordering store failed (%s) after a message on %r", exc, channel)
                continue
            for next_channel, next_content in released:
                found = self.routes.match_content(next_channel, next_content)
                if found is not None:
                    pending.append((next_channel, next_content, *found))

    @staticmethod
    def _mode(item: Route) -> Mode | None:
        """How ``item``'s messages are ordered, in an app with ordered consumers.

        chanlite's own default consumers follow the app's ordering strictly (so a
        socket's cursor is removed by the default disconnect). A connect consumer
        without the decorator still finishes before ordered messages of its socket.
        """
        if item.consumer in (default_connect, drop):
            return "strict"
        return ordering_mode(item.consumer)


def _uncancel_self() -> None:
    """Take back the cancellation :meth:`Worker.stop` made to end a wait."""
    task = asyncio.current_task()
    assert task is not None
    task.uncancel()
