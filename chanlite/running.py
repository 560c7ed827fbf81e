"""Running one consumer for one message: its sends, its timeout, its thread.

* A consumer's sends are buffered in its :class:`~chanlite.runtime.ConsumerScope` and
  flushed in call order when it returns or raises, so what it sends goes out together
  after it decided (atomic consumer sends).
* ``async def`` consumers run on the event loop, in the message's own task;
  ``def`` consumers run in the worker's thread pool, in a copy of the context.
* A consumer's exception is logged with its qualified name and the channel.
  ``ConsumeLater`` requeues the message at the end of its channel, at most
  :data:`MAX_CONSUME_LATER` times. ``DenyConnection`` (or any exception, or a timeout)
  from a connect consumer that had not accepted rejects the socket.
* A consumer still running ``consumer_timeout`` seconds after it started is given up
  on, logged in one line naming it and the timeout, and counts as failed (its sends
  so far are flushed). An ``async def`` consumer is cancelled. A ``def`` consumer
  cannot be: its thread runs on and keeps its slot until the function returns; what
  it buffers after the timeout is dropped (``immediately=True`` sends still go).
* After a socket's disconnect consumer, its channel session is deleted if the app
  uses channel sessions and that consumer did not already.
* The trace context a message carries is removed before the ``Message`` is built;
  with tracing on, the consumer runs in a CONSUMER span (:mod:`chanlite.tracing`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._wrap import marked
from .exceptions import ChannelFull, ConsumeLater, DenyConnection
from .inflight import InFlight, Job
from .layers.base import BaseChannelLayer
from .messages import Message
from .metrics import Metrics, clock
from .protocol import TRACE_KEY, WEBSOCKET_CONNECT, WEBSOCKET_DISCONNECT
from .recovery import REPLAY_TIMEOUT, Rejoin
from .routing import Route
from .runtime import ConsumerScope, app_services, enter_scope
from .sessions.decorators import CHANNEL_SESSION_MARK, channel_session_key
from .stores import SessionStore, get_session_store

if TYPE_CHECKING:
    from .tracing import Tracing

logger = logging.getLogger("chanlite.worker")

#: How many times ConsumeLater may requeue one message before it is dropped.
MAX_CONSUME_LATER = 10
#: Content key that carries the requeue count of a ConsumeLater'd message.
RETRY_KEY = "__chanlite_retries__"
# What happens to a def consumer that ran past consumer_timeout, for the log line.
_THREAD_RUNS_ON = (
    "a thread cannot be stopped: it runs on, keeping one of the worker's {} threads, "
    "until the function returns"
)


class ConsumerRunner:
    """Runs consumers for messages on ``layer``, each within ``consumer_timeout``."""

    def __init__(
        self,
        layer: BaseChannelLayer,
        inflight: InFlight,
        consumer_timeout: float | None,
        *,
        channel_sessions: bool,
        metrics: Metrics,
        tracing: Tracing | None = None,
    ) -> None:
        self.layer = layer
        self.metrics = metrics
        #: Traces each consumer (a CONSUMER span) when set.
        self.tracing = tracing
        self.inflight = inflight
        self.consumer_timeout = consumer_timeout
        # Whether the app has channel-session consumers (their sessions are removed).
        self._channel_sessions = channel_sessions
        self._executor: ThreadPoolExecutor | None = None

    def open(self) -> None:
        """Start the thread pool that ``def`` consumers run in."""
        self._executor = ThreadPoolExecutor(
            self.inflight.threads, thread_name_prefix="chanlite-worker"
        )

    def close(self) -> None:
        """Stop the thread pool; without waiting for threads that ran past their timeout
        (that would block the event loop), which keep the process until they return."""
        hung = self.inflight.hung_threads
        if hung:
            logger.warning(
                "%d def consumers are still running past consumer_timeout; the "
                "process exits once they return",
                hung,
            )
        if self._executor is not None:
            self._executor.shutdown(wait=not hung)

    async def run(
        self, channel: str, content: dict[str, Any], item: Route, kwargs: dict[str, str], job: Job
    ) -> bool:
        """Run ``item``'s consumer on one message and flush its sends; True if it
        asked to run later (and was requeued)."""
        retries = content.pop(RETRY_KEY, 0)
        carrier = content.pop(TRACE_KEY, None)
        try:
            message = Message(content, channel, self.layer)
        except ValueError as exc:
            logger.error("malformed message on channel %r; dropped: %s", channel, exc)
            return False
        reply_channel = content.get("reply_channel")
        metrics = self.metrics
        started = clock() if metrics.timed else 0.0
        scope = ConsumerScope(self.layer, reply_channel, asyncio.get_running_loop(), metrics)
        if channel == WEBSOCKET_CONNECT:
            scope.rejoin = Rejoin.from_connect(content)
        enter_scope(scope)
        span = self.tracing and self.tracing.consumer_span(channel, item.name, carrier, scope)
        failed = requeued = False
        try:
            failed = not await self._call(item, message, kwargs, job)
        except ConsumeLater:
            requeued = await self._requeue(channel, content, retries, scope.trace or carrier)
        except DenyConnection:
            failed = True
        except Exception:
            failed = True
            metrics.failures[item.name] += 1
            logger.exception("consumer %s failed on channel %r", item.name, channel)
        finally:
            if span:
                span.end(failed)
            if scope.outbox:
                await scope.flush()
            if metrics.timed:
                metrics.consumer_done(item.name, clock() - started)
        if failed and channel == WEBSOCKET_CONNECT and not scope.accepted:
            await self._reject(scope.reply_channel)
        elif scope.rejoin is not None and not requeued:
            await self._end_rejoin(scope.rejoin)
        if channel == WEBSOCKET_DISCONNECT and reply_channel:
            await self._forget_channel_session(item, reply_channel)
        return requeued

    async def _call(self, item: Route, message: Message, kwargs: dict[str, str], job: Job) -> bool:
        """Call the consumer; False if it ran past ``consumer_timeout``."""
        if not item.is_async:
            return await self._run_in_thread(item, message, kwargs)
        if self.consumer_timeout is None:
            await item.consumer(message, **kwargs)
            return True
        # The job sets a timer only if its task waits (see Job).
        job.consumer_started(asyncio.get_running_loop().time() + self.consumer_timeout)
        try:
            await item.consumer(message, **kwargs)
        except asyncio.CancelledError:
            if not job.consumer_ended():
                raise
        else:
            if not job.consumer_ended():
                return True
        self._log_timeout(item, message)
        return False

    async def _run_in_thread(self, item: Route, message: Message, kwargs: dict[str, str]) -> bool:
        """Run one ``def`` consumer; False if it ran past ``consumer_timeout``."""
        loop = asyncio.get_running_loop()
        call = functools.partial(item.consumer, message, **kwargs)
        context = contextvars.copy_context()
        thread = loop.run_in_executor(self._executor, context.run, call)
        if await self._within_timeout(asyncio.shield(thread), loop.time(), item, message):
            return True
        self.inflight.thread_hung()
        thread.add_done_callback(functools.partial(self._thread_returned, item))
        return False

    async def _within_timeout(
        self, running: Awaitable[None], started: float, item: Route, message: Message
    ) -> bool:
        """Await ``running``, ``item``'s consumer started at loop time ``started``;
        False (and one log line) if it was still running ``consumer_timeout`` seconds
        after."""
        if self.consumer_timeout is None:
            await running
            return True
        try:
            async with asyncio.timeout_at(started + self.consumer_timeout) as deadline:
                await running
        except TimeoutError:
            if not deadline.expired():
                raise  # the consumer's own TimeoutError
            self._log_timeout(item, message)
            return False
        return True

    def _log_timeout(self, item: Route, message: Message) -> None:
        self.metrics.timeouts[item.name] += 1
        fate = "cancelled" if item.is_async else _THREAD_RUNS_ON.format(self.inflight.threads)
        logger.error(
            "consumer %s ran past consumer_timeout (%gs) on channel %r; %s",
            item.name,
            self.consumer_timeout,
            message.channel.name,
            fate,
        )

    def _thread_returned(self, item: Route, thread: asyncio.Future[None]) -> None:
        """A def consumer that ran past consumer_timeout has returned: free its slot."""
        self.inflight.hung_thread_returned()
        error = None if thread.cancelled() else thread.exception()
        logger.info(
            "consumer %s returned after running past consumer_timeout%s",
            item.name,
            f" (raising {error!r})" if error is not None else "",
        )

    async def _requeue(
        self, channel: str, content: dict[str, Any], retries: int, trace: object
    ) -> bool:
        """Put a ConsumeLater'd message back on its channel, carrying ``trace`` (if
        not None) as its trace context; False if it was dropped."""
        if retries >= MAX_CONSUME_LATER:
            logger.warning(
                "message on %r raised ConsumeLater %d times; dropped", channel, retries + 1
            )
            return False
        try:
            again = {**content, RETRY_KEY: retries + 1}
            if trace is not None:
                again[TRACE_KEY] = trace
            await self.layer.send(channel, again)
        except ChannelFull:
            logger.warning("channel %r is full; a ConsumeLater message was dropped", channel)
            return False
        return True

    async def _reject(self, reply_channel: str | None) -> None:
        if reply_channel:
            try:
                await self.layer.send(reply_channel, {"accept": False})
            except ChannelFull:
                logger.warning("could not reject %r: its reply channel is full", reply_channel)

    async def _end_rejoin(self, rejoin: Rejoin) -> None:
        """Tell a ``chanlite.v1`` socket's interface that its re-join is over."""
        try:
            await self.layer.send_waiting(rejoin.reply_channel, rejoin.summary(), REPLAY_TIMEOUT)
        except Exception as exc:
            logger.warning("could not end the re-join of %r: %s", rejoin.reply_channel, exc)

    async def _forget_channel_session(self, item: Route, reply_channel: str) -> None:
        """Delete a closed socket's channel session if its disconnect consumer did not."""
        if not self._channel_sessions or marked(item.consumer, CHANNEL_SESSION_MARK):
            return
        try:
            await self.session_store().delete(channel_session_key(reply_channel))
        except Exception as exc:
            logger.error("could not delete the channel session of a closed socket: %s", exc)

    def session_store(self) -> SessionStore:
        """The current app's session store (or the layer's default one)."""
        return get_session_store(app_services().session_store, self.layer)
