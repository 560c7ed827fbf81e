"""The worker: take messages off routed channels and run their consumers.

* ``async def`` consumers run on the event loop; ``def`` consumers run in a bounded
  thread pool of ``threads`` threads.
* A message is taken off its channel only when there is room to run it (at most
  ``concurrency`` in flight), so channel capacity is real backpressure.
* A consumer's sends are buffered and flushed in order when it returns or raises. A
  flush that has to wait (a layer across processes) is finished by the worker's
  flusher while the runner goes on, so the messages of one turn send together; the
  message stays in flight until it is done. Connects, disconnects and ordered
  messages wait for theirs.
* A consumer's exception is logged with its qualified name and the channel; the worker
  carries on. ``ConsumeLater`` requeues the message at the end of its channel, at most
  :data:`MAX_CONSUME_LATER` times. ``DenyConnection`` (or any exception) from a connect
  consumer that had not accepted rejects the socket.
* A consumer still running ``consumer_timeout`` seconds after it started is given up
  on, logged in one line naming it and the timeout, and counts as failed (its sends
  so far are flushed; a connect it had not accepted is rejected; ordering moves on).
  An ``async def`` consumer is cancelled. A ``def`` consumer cannot be: its thread
  runs on and keeps one of the ``threads`` until the function returns; what it
  buffers after the timeout is dropped (``immediately=True`` sends still go).
* Ordered consumers (``enforce_ordering``) run in socket order through a
  :class:`~chanlite.ordering.Sequencer` on the app's session store; a closed socket's
  channel session is deleted after its disconnect consumer.
* On a layer that supports local takers (memory), a message sent on the worker's own
  event loop while the worker is idle runs at once, in the sender's step, instead of
  waking the worker: see :meth:`Worker._take_handed`.
* :meth:`Worker.stop` is graceful: no new messages are taken, in-flight consumers
  finish, then :meth:`Worker.run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from ._eager import CAN_RUN_AS, Continuation, run_eagerly, run_eagerly_as
from ._wrap import marked
from .config import CONSUMER_TIMEOUT, check_consumer_timeout
from .default_routes import default_connect, drop
from .exceptions import ChannelFull, ConfigurationError, ConsumeLater, DenyConnection
from .layers.base import BaseChannelLayer
from .messages import Message
from .ordering import Mode, Sequencer, ordering_mode
from .protocol import WEBSOCKET_CONNECT, WEBSOCKET_DISCONNECT, WEBSOCKET_RECEIVE
from .routing import Route, Routes
from .runtime import ConsumerScope, app_services, enter_scope
from .sessions.decorators import CHANNEL_SESSION_MARK, channel_session_key
from .stores import SessionStore, get_session_store

logger = logging.getLogger("chanlite.worker")

#: How many times ConsumeLater may requeue one message before it is dropped.
MAX_CONSUME_LATER = 10
#: Content key that carries the requeue count of a ConsumeLater'd message.
RETRY_KEY = "__chanlite_retries__"
#: In-flight limit beyond the thread count when some consumers are async.
ASYNC_CONCURRENCY = 64
# Messages a runner runs back to back, none of them waiting, before it lets the
# event loop serve sockets and timers.
_STREAK = 64
# What happens to a def consumer that ran past consumer_timeout, for the log line.
_THREAD_RUNS_ON = (
    "a thread cannot be stopped: it runs on, keeping one of the worker's {} threads, "
    "until the function returns"
)


class _Started(NamedTuple):
    """A handed message that waits: the rest its parked runner finishes."""

    rest: Continuation
    channel: str


class _Parked:
    """A runner waiting for the taker's role, or for a handed message's rest."""

    __slots__ = ("future", "started", "task")

    def __init__(self, future: asyncio.Future[None], task: asyncio.Task[Any]) -> None:
        self.future = future
        self.task = task
        self.started: _Started | None = None


# Channels whose consumers' flush is always waited for: the worker does more after it.
_FOLLOWED_UP = frozenset({WEBSOCKET_CONNECT, WEBSOCKET_DISCONNECT})
# Channels whose unmatched messages are dropped without a log line.
_SILENT_DROPS = frozenset({WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT})


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
    ) -> None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigurationError(f"threads must be a positive integer, got {threads!r}")
        self.routes = routes
        self.layer = layer
        self.threads = threads
        #: Seconds a consumer may run before it is given up on; None: no limit.
        self.consumer_timeout = check_consumer_timeout(consumer_timeout)
        self.channels = select_channels(routes.channels, only_channels, exclude_channels)
        if not self.channels:
            raise ConfigurationError("the worker has no channels to listen on")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ConfigurationError(
                f"concurrency must be a positive integer or None, got {concurrency!r}"
            )
        self.concurrency = concurrency or _default_concurrency(routes, threads)
        # Runners waiting for the taker's role, and whether one holds it.
        # A parked runner may instead be given a handed message's rest to finish.
        self._parked: deque[_Parked] = deque()
        self._taking = False
        # Whether a handed message is running now (a send it makes is never taken).
        self._handing = False
        # What every message runs in a fresh copy of (set when the receive loop starts).
        self._context = contextvars.copy_context()
        self._free_threads = asyncio.Semaphore(threads)
        # def consumers that ran past consumer_timeout and have not returned yet, and
        # the thread slots they keep: the next slots due back stay taken until then.
        self._hung_threads = 0
        self._owed_threads = 0
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Flushes that had to wait, left by their runners, and the task finishing them.
        self._flushes: deque[tuple[Continuation, str]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        # Only a layer whose sends bind nothing to the runner's task lets it go on.
        self._detach_flushes = layer.task_neutral_sends
        self._receiving: asyncio.Task[Any] | None = None
        self._stopping = False
        self._taken = 0
        self._settled = asyncio.Event()
        self._channel_sessions = any(marked(r.consumer, CHANNEL_SESSION_MARK) for r in routes)
        self._sequencer: Sequencer | None = None
        if any(ordering_mode(r.consumer) for r in routes):
            self._sequencer = Sequencer(self._session_store())

    async def run(self) -> None:
        """Receive and dispatch until :meth:`stop`; then wait for in-flight work."""
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="chanlite-worker")
        logger.info("worker listening on %s", ", ".join(self.channels))
        try:
            await self._receive_loop()
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._hung_threads:
                logger.warning(
                    "%d def consumers are still running past consumer_timeout; the "
                    "process exits once they return",
                    self._hung_threads,
                )
            # Waiting here for a thread that ran past its timeout would block the loop.
            self._executor.shutdown(wait=not self._hung_threads)

    def stop(self) -> None:
        """Stop taking messages; :meth:`run` returns once in-flight consumers finish."""
        self._stopping = True
        if self._receiving is not None:
            self._receiving.cancel()

    async def _receive_loop(self) -> None:
        """Run :attr:`concurrency` runners until :meth:`stop`, and until they finish.

        A runner takes one message, runs it to the end, then takes the next, so at
        most ``concurrency`` are in flight and none is taken without room to run it.
        One runner at a time takes (the *taker*); it waits on the layer only while
        nothing is queued, and :meth:`stop` cancels that wait (``_receiving``). A
        message whose consumer never waits runs inside its runner's own step, so a
        busy worker goes from message to message without a task switch; one that
        waits wakes a parked runner to take the next meanwhile.
        """
        loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        runners = [loop.create_task(self._run_runner()) for _ in range(self.concurrency)]
        self._tasks.update(runners)
        attached = CAN_RUN_AS and self.layer.attach_taker(self.channels, self._take_handed)
        try:
            await asyncio.wait(runners)
        finally:
            if attached:
                self.layer.detach_taker(self._take_handed)
            if not all(runner.done() for runner in runners):  # we were cancelled
                self.stop()
                self._wake_parked(everyone=True)

    async def _run_runner(self) -> None:
        runner = asyncio.current_task()
        assert runner is not None
        streak = 0
        while True:
            taken = await self._take(runner)
            if taken is None:
                self._wake_parked(everyone=True)  # they are stopping too
                return
            if isinstance(taken, _Started):
                await self._finish_message(taken.rest, taken.channel, False)
                continue
            channel, content, found, threaded = taken
            rest = self._start_message(channel, content, found, threaded)
            if rest is not None:
                streak = 0
                self._wake_parked()  # take the next message while this one waits
                await self._finish_message(rest, channel, threaded)
            else:
                streak += 1
                if streak >= _STREAK:
                    streak = 0
                    await asyncio.sleep(0)  # let sockets and timers run between batches

    async def _take(
        self, runner: asyncio.Task[Any]
    ) -> tuple[str, dict[str, Any], tuple[Route, dict[str, str]] | None, bool] | _Started | None:
        """Take the next message as the taker (``runner``); None once stopping.

        Returns the channel, content, matched route and whether it runs in a thread;
        or, for a runner that was parked, a handed message's rest to finish.
        """
        while self._taking and not self._stopping:
            started = await self._park(runner)
            if started is not None:
                return started
        if self._stopping:
            return None
        self._taking = True
        try:
            self._receiving = runner  # what stop() cancels
            try:
                channel, content = await self.layer.receive(self.channels)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                runner.uncancel()
                return None
            finally:
                self._receiving = None
            # Counted in the same step as the layer took it, so wait_idle never sees a
            # message that is neither on its channel nor in flight.
            self._taken += 1
            assert channel is not None and content is not None  # no timeout was given
            found = self.routes.match_content(channel, content)
            threaded = found is not None and not found[0].is_async
            if threaded:
                # A def consumer's message waits here, with the taker's role held, not
                # in the executor's queue: the next message stays on its channel
                # until a thread is free.
                try:
                    await self._free_threads.acquire()
                except BaseException:
                    self._done(False)
                    raise
        finally:
            self._taking = False
        return channel, content, found, threaded

    def _start_message(
        self,
        channel: str,
        content: dict[str, Any],
        found: tuple[Route, dict[str, str]] | None,
        threaded: bool,
        runner: asyncio.Task[Any] | None = None,
    ) -> Continuation | None:
        """Run one taken message until it first waits; its rest, or None if done.

        It runs in a fresh copy of the context, as a task of its own would, so what a
        consumer sets there does not reach the next message; and, given a ``runner``
        (suspended, to finish the rest), as that runner's task.
        """
        rest = None
        if found is not None and self._sequencer is None:
            coro: Coroutine[Any, Any, Any] = self._execute(channel, content, *found, detach=True)
        else:
            coro = self._handle(channel, content, found, detach=True)
        try:
            if runner is None:
                rest = run_eagerly(coro, self._context.copy())
            else:
                rest = run_eagerly_as(runner, coro, self._context.copy())
        except Exception:
            logger.exception("the worker failed on a message on channel %r", channel)
        if rest is None:
            self._done(threaded)
        return rest

    async def _finish_message(self, rest: Continuation, channel: str, threaded: bool) -> None:
        """Finish a message that :meth:`_start_message` left waiting."""
        try:
            await rest
        except Exception:
            logger.exception("the worker failed on a message on channel %r", channel)
        finally:
            self._done(threaded)

    def _take_handed(self, channel: str, content: dict[str, Any]) -> bool:
        """Run a message a sender hands over (the layer's local taker); True if run.

        Taken only while the worker is idle: its taker is waiting on the layer (so
        the message would have gone to it anyway) and a runner is parked, free to
        finish the message if it waits. The message's first step runs at once, in
        the sender's step but as that parked runner's task, sparing the worker a
        wake-up; a rest goes to that runner. ``def`` consumers, and what a handed
        message sends, go through the queue.
        """
        if self._handing or self._receiving is None or self._stopping:
            return False
        parked = self._free_runner()
        if parked is None:
            return False
        found = self.routes.match_content(channel, content)
        if found is not None and not found[0].is_async:
            return False
        self._taken += 1
        self._handing = True
        try:
            rest = self._start_message(channel, content, found, False, parked.task)
        finally:
            self._handing = False
        if rest is not None:
            # That runner, and no other: the step ran as its task.
            with contextlib.suppress(ValueError):  # already woken: it finds the rest
                self._parked.remove(parked)
            parked.started = _Started(rest, channel)
            if not parked.future.done():
                parked.future.set_result(None)
        return True

    def _free_runner(self) -> _Parked | None:
        """The parked runner next in line, if any (forgetting cancelled ones)."""
        parked = self._parked
        while parked and parked[0].future.done():
            parked.popleft()
        return parked[0] if parked else None

    async def _park(self, runner: asyncio.Task[Any]) -> _Started | None:
        """Wait to be woken; a handed message's rest to finish, if given one."""
        parked = _Parked(asyncio.get_running_loop().create_future(), runner)
        self._parked.append(parked)
        try:
            await parked.future
        except asyncio.CancelledError as exc:
            if parked.started is None:
                raise
            # Cancelled as the rest was handed over: the cancellation is its own.
            return self._cancel_rest(parked.started, exc)
        finally:
            if not parked.future.done():
                parked.future.cancel()
                self._parked.remove(parked)
        return parked.started

    def _cancel_rest(self, started: _Started, exc: asyncio.CancelledError) -> _Started | None:
        """Raise ``exc`` in a handed message's rest; what is left of it, if anything."""
        try:
            rest = started.rest.throw(exc)
        except Exception:
            logger.exception("the worker failed on a message on channel %r", started.channel)
            rest = None
        except BaseException:  # the cancellation itself: the runner stops, as it would
            self._done(False)
            raise
        if rest is None:
            self._done(False)
            return None
        return started._replace(rest=rest)

    def _wake_parked(self, everyone: bool = False) -> None:
        while self._parked:
            future = self._parked.popleft().future
            if not future.done():
                future.set_result(None)
                if not everyone:
                    return

    def _done(self, threaded: bool) -> None:
        self._taken -= 1
        if threaded:
            self._release_thread()
        self._settled.set()

    def _release_thread(self) -> None:
        """Give a thread slot back, unless a timed-out def consumer still holds one."""
        if self._owed_threads:
            self._owed_threads -= 1
        else:
            self._free_threads.release()

    async def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until no message is in flight and the layer reports none waiting on
        this worker's channels (layers without ``stats`` report nothing waiting).

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while self._taken or await self._messages_waiting():
                self._settled.clear()
                if self._taken:
                    await self._settled.wait()
                else:
                    await asyncio.sleep(0)  # let the receive loop take what is waiting

    async def _messages_waiting(self) -> bool:
        stats = await self.layer.stats()
        depths = (stats or {}).get("channels", {})
        return any(depths.get(name) for name in self.channels)

    async def dispatch(self, channel: str, content: dict[str, Any]) -> None:
        """Run the consumer for one message as the receive loop would."""
        # In a task of its own, as the receive loop does, so the consumer scope it
        # enters does not leak into the caller's context.
        found = self.routes.match_content(channel, content)
        threaded = found is not None and not found[0].is_async
        if threaded:
            await self._free_threads.acquire()
        try:
            await asyncio.get_running_loop().create_task(self._handle(channel, content, found))
        finally:
            if threaded:
                self._release_thread()

    async def _handle(
        self,
        channel: str,
        content: dict[str, Any],
        found: tuple[Route, dict[str, str]] | None,
        *,
        detach: bool = False,
    ) -> None:
        if found is None:
            content.pop(RETRY_KEY, None)
            if channel not in _SILENT_DROPS:
                logger.error("no consumer for a message on channel %r; dropped", channel)
            return
        item, kwargs = found
        if self._sequencer is None:
            await self._execute(channel, content, item, kwargs, detach=detach)
        elif await self._admit(channel, content, item):
            await self._run_in_turn(channel, content, item, kwargs)

    async def _admit(self, channel: str, content: dict[str, Any], item: Route) -> bool:
        assert self._sequencer is not None
        try:
            return await self._sequencer.admit(channel, content, self._mode(item))
        except Exception as exc:
            # Losing the message would be worse than running it out of turn.
            logger.error("ordering store failed (%s); running a message on %r now", exc, channel)
            return True

    async def _run_in_turn(
        self, channel: str, content: dict[str, Any], item: Route, kwargs: dict[str, str]
    ) -> None:
        """Run a message whose turn has come, then each parked one it releases."""
        assert self._sequencer is not None
        pending = deque([(channel, content, item, kwargs)])
        while pending:
            channel, content, item, kwargs = pending.popleft()
            if await self._execute(channel, content, item, kwargs):
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

    async def _execute(
        self,
        channel: str,
        content: dict[str, Any],
        item: Route,
        kwargs: dict[str, str],
        *,
        detach: bool = False,
    ) -> bool:
        """Run one consumer and flush its sends; True if it asked to run later.

        ``detach``: a flush that has to wait (on a layer across processes) may be left
        to the flusher (:meth:`_flush_later`), if the layer's sends are task-neutral
        (``task_neutral_sends``), except after a connect or disconnect, which have more
        to do once it is done.
        """
        retries = content.pop(RETRY_KEY, 0)
        try:
            message = Message(content, channel, self.layer)
        except ValueError as exc:
            logger.error("malformed message on channel %r; dropped: %s", channel, exc)
            return False
        reply_channel = content.get("reply_channel")
        loop = asyncio.get_running_loop()
        scope = ConsumerScope(self.layer, reply_channel, loop=loop)
        enter_scope(scope)
        failed = requeued = False
        try:
            if item.is_async:
                started = loop.time()
                # Only a consumer that waits can run long enough to need the timer.
                rest = run_eagerly(item.consumer(message, **kwargs))
                if rest is not None:
                    failed = not await self._within_timeout(rest, started, item, message)
            else:
                failed = await self._run_in_thread(item, message, kwargs)
        except ConsumeLater:
            requeued = await self._requeue(channel, content, retries)
        except DenyConnection:
            failed = True
        except Exception:
            failed = True
            logger.exception("consumer %s failed on channel %r", item.name, channel)
        finally:
            flushing = run_eagerly(scope.flush())
            if flushing is not None:
                if detach and self._detach_flushes and channel not in _FOLLOWED_UP:
                    self._flush_later(flushing, channel)
                else:
                    await flushing
        if failed and channel == WEBSOCKET_CONNECT and not scope.accepted:
            await self._reject(scope.reply_channel)
        if channel == WEBSOCKET_DISCONNECT and reply_channel:
            await self._forget_channel_session(item, reply_channel)
        return requeued

    def _flush_later(self, flushing: Continuation, channel: str) -> None:
        """Have the flusher finish a consumer's flush, so the runner goes on at once.

        The message stays in flight (for :meth:`wait_idle`) until its sends are done.
        Its sends were made in order, and what it sends next waits for them as before;
        the messages a runner takes in one turn of the loop send together (one script
        call per queue on Redis) instead of one at a time.
        """
        self._taken += 1
        self._flushes.append((flushing, channel))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._run_flusher())
            self._tasks.add(self._flusher)
            self._flusher.add_done_callback(self._tasks.discard)

    async def _run_flusher(self) -> None:
        """Finish the flushes left by :meth:`_flush_later`, oldest first."""
        try:
            while self._flushes:
                flushing, channel = self._flushes.popleft()
                try:
                    await flushing
                except Exception:
                    logger.exception("the worker failed on a message on channel %r", channel)
                finally:
                    self._taken -= 1
                    self._settled.set()
        finally:
            self._flusher = None

    async def _forget_channel_session(self, item: Route, reply_channel: str) -> None:
        """Delete a closed socket's channel session if its disconnect consumer did not."""
        if not self._channel_sessions or marked(item.consumer, CHANNEL_SESSION_MARK):
            return
        try:
            await self._session_store().delete(channel_session_key(reply_channel))
        except Exception as exc:
            logger.error("could not delete the channel session of a closed socket: %s", exc)

    def _session_store(self) -> SessionStore:
        return get_session_store(app_services().session_store, self.layer)

    async def _run_in_thread(self, item: Route, message: Message, kwargs: dict[str, str]) -> bool:
        """Run one ``def`` consumer within ``consumer_timeout``; True if it ran past it."""
        loop = asyncio.get_running_loop()
        call = functools.partial(item.consumer, message, **kwargs)
        context = contextvars.copy_context()
        thread = loop.run_in_executor(self._executor, context.run, call)
        if await self._within_timeout(asyncio.shield(thread), loop.time(), item, message):
            return False
        # The thread cannot be stopped: its slot stays taken until it returns.
        self._hung_threads += 1
        self._owed_threads += 1
        thread.add_done_callback(functools.partial(self._thread_returned, item))
        return True

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
            fate = "cancelled" if item.is_async else _THREAD_RUNS_ON.format(self.threads)
            logger.error(
                "consumer %s ran past consumer_timeout (%gs) on channel %r; %s",
                item.name,
                self.consumer_timeout,
                message.channel.name,
                fate,
            )
            return False
        return True

    def _thread_returned(self, item: Route, thread: asyncio.Future[None]) -> None:
        """A def consumer that ran past consumer_timeout has returned: free its slot."""
        self._hung_threads -= 1
        self._free_threads.release()
        error = None if thread.cancelled() else thread.exception()
        logger.info(
            "consumer %s returned after running past consumer_timeout%s",
            item.name,
            f" (raising {error!r})" if error is not None else "",
        )

    async def _requeue(self, channel: str, content: dict[str, Any], retries: int) -> bool:
        """Put a ConsumeLater'd message back on its channel; False if it was dropped."""
        if retries >= MAX_CONSUME_LATER:
            logger.warning(
                "message on %r raised ConsumeLater %d times; dropped", channel, retries + 1
            )
            return False
        try:
            await self.layer.send(channel, {**content, RETRY_KEY: retries + 1})
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


def select_channels(
    channels: Iterable[str],
    only: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> list[str]:
    """``channels`` filtered by ``only`` and ``exclude`` glob patterns, sorted."""
    only_list = list(only or ())
    exclude_list = list(exclude or ())
    selected = []
    for name in sorted(channels):
        if only_list and not any(fnmatch.fnmatchcase(name, glob) for glob in only_list):
            continue
        if any(fnmatch.fnmatchcase(name, glob) for glob in exclude_list):
            continue
        selected.append(name)
    return selected


def _default_concurrency(routes: Routes, threads: int) -> int:
    if any(item.is_async for item in routes):
        return threads + ASYNC_CONCURRENCY
    return threads
