"""The worker, driven for real against a memory layer.

Every wait is a handshake (events, barriers) bounded by a timeout; nothing sleeps to
let a race settle.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import chanlite.worker as worker_module
from chanlite import (
    Channel,
    ChannelFull,
    ConsumeLater,
    DenyConnection,
    Group,
    Message,
    Routes,
    route,
)
from chanlite.default_routes import served_routes
from chanlite.exceptions import ConfigurationError, LayerError
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.worker import (
    ASYNC_CONCURRENCY,
    MAX_CONSUME_LATER,
    RETRY_KEY,
    Worker,
    select_channels,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0
REPLY = "chanlite!reply1"


class SpyLayer(InMemoryChannelLayer):
    """A memory layer that counts the messages receivers have taken off it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.taken = 0
        #: Set once a receiver has started waiting on this layer.
        self.receiving = asyncio.Event()
        self._watchers: list[tuple[int, asyncio.Event]] = []

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> Any:
        self.receiving.set()
        result = await super().receive(channels, timeout)
        if result[0] is not None:
            self._took()
        return result

    def receive_ready(self, channels: list[str]) -> tuple[str, dict[str, Any]] | None:
        result = super().receive_ready(channels)
        if result is not None:
            self._took()
        return result

    def _took(self) -> None:
        self.taken += 1
        for count, event in self._watchers:
            if self.taken >= count:
                event.set()

    async def wait_taken(self, count: int) -> None:
        """Wait until ``count`` messages in all have been taken."""
        event = asyncio.Event()
        self._watchers.append((count, event))
        if self.taken >= count:
            event.set()
        async with asyncio.timeout(TIMEOUT):
            await event.wait()


class Signal:
    """An asyncio.Event that may be set from any thread (worker threads included)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            await self._event.wait()


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker`` for the body of the block; stop it and wait for it after."""
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        yield task
    finally:
        worker.stop()
        async with asyncio.timeout(TIMEOUT):
            await task


async def receive(layer: InMemoryChannelLayer, channel: str) -> dict[str, Any]:
    """The next message on ``channel``, waiting for it (boundedly)."""
    name, content = await layer.receive([channel], timeout=TIMEOUT)
    assert name is not None, f"nothing arrived on {channel!r}"
    return content


async def nothing_on(layer: InMemoryChannelLayer, channel: str) -> bool:
    return await layer.receive([channel], timeout=0) == (None, None)


async def depth(layer: InMemoryChannelLayer, channel: str) -> int:
    stats = await layer.stats()
    return int(stats["channels"].get(channel, 0))


@pytest.fixture
def layer() -> SpyLayer:
    return SpyLayer()


# -- module-level consumers, so their qualified names are plain --------------------


async def failing_async(message: Message) -> None:
    raise RuntimeError("async boom")


def failing_sync(message: Message) -> None:
    raise RuntimeError("sync boom")


# -- dispatching -----------------------------------------------------------------------


async def test_async_and_sync_consumers_are_both_dispatched(layer: SpyLayer) -> None:
    async def on_async(message: Message) -> None:
        await Channel("out").asend({"kind": "async", "thread": threading.current_thread().name})

    def on_sync(message: Message) -> None:
        Channel("out").send({"kind": "sync", "thread": threading.current_thread().name})

    worker = Worker(Routes([route("a", on_async), route("s", on_sync)]), layer)
    async with running(worker):
        await layer.send("a", {})
        first = await receive(layer, "out")
        await layer.send("s", {})
        second = await receive(layer, "out")
    assert first == {"kind": "async", "thread": threading.current_thread().name}
    assert second["kind"] == "sync"
    assert second["thread"].startswith("chanlite-worker")


async def test_consumer_gets_the_message(layer: SpyLayer) -> None:
    seen: list[Message] = []

    async def consumer(message: Message) -> None:
        seen.append(message)

    worker = Worker(Routes([route("chat", consumer)]), layer)
    await layer.send("chat", {"text": "hi", "reply_channel": REPLY})
    await worker.dispatch("chat", (await layer.receive(["chat"], timeout=0))[1])
    [message] = seen
    assert message.content == {"text": "hi", "reply_channel": REPLY}
    assert message.channel == Channel("chat")
    assert message.reply_channel == Channel(REPLY)
    assert message.channel_layer is layer


async def test_named_groups_become_kwargs(layer: SpyLayer) -> None:
    def consumer(message: Message, room: str, verb: str) -> None:
        Channel("out").send({"room": room, "verb": verb})

    routes = Routes(
        [route("chat", consumer, path=r"^/(?P<room>\w+)/$", method=r"^(?P<verb>[A-Z]+)$")]
    )
    async with running(Worker(routes, layer)):
        await layer.send("chat", {"path": "/lobby/", "method": "POST"})
        assert await receive(layer, "out") == {"room": "lobby", "verb": "POST"}


async def test_sync_consumer_can_use_blocking_group_calls(layer: SpyLayer) -> None:
    def consumer(message: Message) -> None:
        assert message.reply_channel is not None
        Group("room").add(message.reply_channel)
        Group("room").send({"members": sorted(Group("room").channels())})

    async with running(Worker(Routes([route("join", consumer)]), layer)):
        await layer.send("join", {"reply_channel": REPLY})
        assert await receive(layer, "chanlite!") == {"members": [REPLY]}


async def test_dispatch_does_not_leave_a_consumer_scope_behind(layer: SpyLayer) -> None:
    async def consumer(message: Message) -> None:
        pass

    worker = Worker(Routes([route("chat", consumer)]), layer)
    await worker.dispatch("chat", {})
    await Channel("after", layer).asend({"sent": "outside a consumer"})
    assert await layer.receive(["after"], timeout=0) == ("after", {"sent": "outside a consumer"})


# -- messages handed over on the worker's own loop ------------------------------------


async def idle(worker: Worker, layer: SpyLayer) -> None:
    """Wait until ``worker``'s take loop waits on ``layer``."""
    async with asyncio.timeout(TIMEOUT):
        await layer.receiving.wait()


async def test_an_idle_worker_runs_a_message_sent_on_its_loop_within_the_send(
    layer: SpyLayer,
) -> None:
    seen: list[dict[str, Any]] = []

    async def consumer(message: Message) -> None:
        seen.append(message.content)

    worker = Worker(Routes([route("chat", consumer)]), layer)
    async with running(worker):
        await idle(worker, layer)
        await layer.send("chat", {"n": 1})
        assert seen == [{"n": 1}]  # no turn of the loop was needed
        assert layer.taken == 0
        await worker.wait_idle(TIMEOUT)


async def test_a_handed_message_that_waits_runs_as_one_task_of_the_worker(
    layer: SpyLayer,
) -> None:
    tasks: list[asyncio.Task[Any] | None] = []
    outcome: list[str] = []
    done = asyncio.Event()

    async def consumer(message: Message) -> None:
        tasks.append(asyncio.current_task())
        try:
            # A timeout binds the current task: it must be the task that waits (had
            # it been bound to the sender, the sleep would run its full second).
            async with asyncio.timeout(0.01):
                await asyncio.sleep(1)
        except TimeoutError:
            outcome.append("timed out")
        tasks.append(asyncio.current_task())
        done.set()

    worker = Worker(Routes([route("chat", consumer)]), layer)
    async with running(worker):
        await idle(worker, layer)
        # Sent from a task of its own, which ends with the send: had the consumer's
        # timeout been bound to the sender, it would never fire.
        sender = asyncio.get_running_loop().create_task(layer.send("chat", {}))
        async with asyncio.timeout(TIMEOUT):
            await sender
            await done.wait()
        await worker.wait_idle(TIMEOUT)
    assert outcome == ["timed out"]
    assert tasks[0] is tasks[1] and tasks[0] is not sender


async def test_a_handed_message_cancelled_before_it_waits_is_cancelled_where_it_waits(
    layer: SpyLayer,
) -> None:
    outcome: list[str] = []

    async def consumer(message: Message) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0)  # its first wait: where the cancellation must land
        except asyncio.CancelledError:
            outcome.append(f"cancelled {message['n']}")

    worker = Worker(Routes([route("chat", consumer)]), layer)
    async with running(worker):
        await idle(worker, layer)
        await layer.send("chat", {"n": 1})
        await worker.wait_idle(TIMEOUT)
        await layer.send("chat", {"n": 2})  # the worker carries on
        await worker.wait_idle(TIMEOUT)
    assert outcome == ["cancelled 1", "cancelled 2"]


async def test_what_a_handed_message_sends_is_queued_not_run_inside_it(
    layer: SpyLayer,
) -> None:
    events: list[str] = []

    async def consumer(message: Message) -> None:
        n = message["n"]
        events.append(f"start {n}")
        if n < 3:
            await Channel("tick").asend({"n": n + 1}, immediately=True)
        events.append(f"end {n}")

    worker = Worker(Routes([route("tick", consumer)]), layer)
    async with running(worker):
        await idle(worker, layer)
        await layer.send("tick", {"n": 1})
        await worker.wait_idle(TIMEOUT)
    assert events == ["start 1", "end 1", "start 2", "end 2", "start 3", "end 3"]


async def test_wait_idle_counts_a_handed_message_until_it_finishes(layer: SpyLayer) -> None:
    release = asyncio.Event()

    async def consumer(message: Message) -> None:
        await release.wait()

    worker = Worker(Routes([route("chat", consumer)]), layer)
    async with running(worker):
        await idle(worker, layer)
        await layer.send("chat", {})
        with pytest.raises(TimeoutError):
            await worker.wait_idle(0.05)
        release.set()
        await worker.wait_idle(TIMEOUT)


async def test_def_consumers_are_not_handed_over(layer: SpyLayer) -> None:
    threads: list[str] = []
    done = Signal()

    def consumer(message: Message) -> None:
        threads.append(threading.current_thread().name)
        done.set()

    worker = Worker(Routes([route("chat", consumer)]), layer)
    async with running(worker):
        await idle(worker, layer)
        await layer.send("chat", {})
        await done.wait()
    assert layer.taken == 1
    assert threads[0].startswith("chanlite-worker")


# -- flushes that wait ------------------------------------------------------------------


class GatedLayer(SpyLayer):
    """A memory layer whose sends to ``out`` wait until the gate opens, as a send
    across processes waits for its server."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.gate = asyncio.Event()

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        if channel == "out":
            await self.gate.wait()
        await super().send_encoded(channel, payload)


async def relaying_worker(layer: GatedLayer, ran: list[int], concurrency: int) -> Worker:
    """A worker relaying ``jobs`` to ``out`` (noting each job in ``ran``), with three
    jobs queued for it."""

    async def consumer(message: Message) -> None:
        ran.append(message["n"])
        await Channel("out").asend({"n": message["n"]})

    for n in range(3):
        await layer.send("jobs", {"n": n})
    return Worker(Routes([route("jobs", consumer)]), layer, concurrency=concurrency)


async def test_the_worker_goes_on_while_a_flush_waits_and_wait_idle_waits_for_it() -> None:
    layer = GatedLayer()
    ran: list[int] = []
    worker = await relaying_worker(layer, ran, concurrency=3)
    async with running(worker):
        await layer.wait_taken(3)
        # All three ran while the first one's send was still waiting.
        assert ran == [0, 1, 2]
        with pytest.raises(TimeoutError):
            await worker.wait_idle(0.05)
        assert await nothing_on(layer, "out")
        layer.gate.set()
        await worker.wait_idle(TIMEOUT)
        assert [(await receive(layer, "out"))["n"] for _ in range(3)] == [0, 1, 2]


async def test_a_message_whose_flush_waits_keeps_its_place_in_flight() -> None:
    layer = GatedLayer()
    ran: list[int] = []
    worker = await relaying_worker(layer, ran, concurrency=1)
    async with running(worker):
        await layer.wait_taken(1)
        # The only place in flight is the first message's, waiting in its flush.
        assert ran == [0] and await depth(layer, "jobs") == 2
        layer.gate.set()
        await worker.wait_idle(TIMEOUT)
    assert ran == [0, 1, 2]


async def test_a_connects_flush_is_waited_for_before_it_is_rejected() -> None:
    layer = GatedLayer()

    async def connect(message: Message) -> None:
        await Channel("out").asend({"seen": True})
        raise DenyConnection

    worker = Worker(Routes([route("websocket.connect", connect)]), layer)
    async with running(worker):
        await layer.send("websocket.connect", {"path": "/", "reply_channel": REPLY})
        await layer.wait_taken(1)
        assert await nothing_on(layer, "chanlite!")  # no verdict before the flush
        layer.gate.set()
        assert await receive(layer, "chanlite!") == {"accept": False}
        assert await receive(layer, "out") == {"seen": True}


# -- consumer atomicity --------------------------------------------------------------


async def test_async_consumer_sends_wait_until_it_returns(layer: SpyLayer) -> None:
    sent, release = Signal(), asyncio.Event()

    async def consumer(message: Message) -> None:
        await Channel("out").asend({"n": 1})
        Channel("out").send({"n": 2})  # the blocking form buffers too
        sent.set()
        await release.wait()

    async with running(Worker(Routes([route("work", consumer)]), layer)):
        await layer.send("work", {})
        await sent.wait()
        assert await nothing_on(layer, "out")
        release.set()
        assert await receive(layer, "out") == {"n": 1}
        assert await receive(layer, "out") == {"n": 2}


async def test_sync_consumer_sends_wait_until_it_returns(layer: SpyLayer) -> None:
    sent, release = Signal(), threading.Event()

    def consumer(message: Message) -> None:
        Channel("out").send({"n": 1})
        sent.set()
        assert release.wait(TIMEOUT)

    async with running(Worker(Routes([route("work", consumer)]), layer)):
        try:
            await layer.send("work", {})
            await sent.wait()
            assert await nothing_on(layer, "out")
        finally:
            release.set()
        assert await receive(layer, "out") == {"n": 1}


async def test_buffered_sends_flush_in_call_order(layer: SpyLayer) -> None:
    await layer.group_add("everyone", "out")

    def consumer(message: Message) -> None:
        Channel("out").send({"n": 1})
        Group("everyone").send({"n": 2})
        Channel("out").send({"n": 3})
        Group("everyone").send({"n": 4})

    async with running(Worker(Routes([route("work", consumer)]), layer)):
        await layer.send("work", {})
        received = [(await receive(layer, "out"))["n"] for _ in range(4)]
    assert received == [1, 2, 3, 4]


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_buffered_sends_flush_when_the_consumer_raises(
    layer: SpyLayer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def async_consumer(message: Message) -> None:
        await Channel("out").asend({"before": "error"})
        raise RuntimeError("after sending")

    def sync_consumer(message: Message) -> None:
        Channel("out").send({"before": "error"})
        raise RuntimeError("after sending")

    consumer = async_consumer if kind == "async" else sync_consumer
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        async with running(Worker(Routes([route("work", consumer)]), layer)):
            await layer.send("work", {})
            assert await receive(layer, "out") == {"before": "error"}


async def test_immediately_goes_at_once(layer: SpyLayer) -> None:
    sent, release = Signal(), threading.Event()

    def consumer(message: Message) -> None:
        Channel("out").send({"n": "buffered"})
        Channel("now").send({"n": "immediate"}, immediately=True)
        Group("g").send({"n": "group-immediate"}, immediately=True)
        sent.set()
        assert release.wait(TIMEOUT)

    await layer.group_add("g", "group-out")
    async with running(Worker(Routes([route("work", consumer)]), layer)):
        try:
            await layer.send("work", {})
            await sent.wait()
            assert await layer.receive(["now"], timeout=0) == ("now", {"n": "immediate"})
            assert await layer.receive(["group-out"], timeout=0) == (
                "group-out",
                {"n": "group-immediate"},
            )
            assert await nothing_on(layer, "out")
        finally:
            release.set()
        assert await receive(layer, "out") == {"n": "buffered"}


async def test_async_immediately_goes_at_once(layer: SpyLayer) -> None:
    sent, release = Signal(), asyncio.Event()

    async def consumer(message: Message) -> None:
        await Channel("now").asend({"n": 1}, immediately=True)
        sent.set()
        await release.wait()

    async with running(Worker(Routes([route("work", consumer)]), layer)):
        await layer.send("work", {})
        await sent.wait()
        assert await layer.receive(["now"], timeout=0) == ("now", {"n": 1})
        release.set()


# -- failures --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consumer", "name"),
    [(failing_async, "failing_async"), (failing_sync, "failing_sync")],
    ids=["async", "sync"],
)
async def test_raising_consumer_is_logged_and_the_worker_carries_on(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture, consumer: Any, name: str
) -> None:
    async def healthy(message: Message) -> None:
        await Channel("out").asend({"ok": True})

    # One channel, so the two messages are taken in the order they were sent.
    routes = Routes([route("work", consumer, kind="^bad$"), route("work", healthy, kind="^good$")])
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        async with running(Worker(routes, layer, concurrency=1)):
            await layer.send("work", {"kind": "bad"})
            await layer.send("work", {"kind": "good"})
            # concurrency=1: the failing message was fully handled before this one ran.
            assert await receive(layer, "out") == {"ok": True}
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.levelno == logging.ERROR
    assert f"{__name__}.{name}" in record.getMessage()
    assert "'work'" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_malformed_message_is_logged_and_dropped(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[Message] = []

    async def consumer(message: Message) -> None:
        calls.append(message)

    worker = Worker(Routes([route("chat", consumer)]), layer)
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        await worker.dispatch("chat", {"reply_channel": "not a channel"})
    assert calls == []
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert "malformed message on channel 'chat'" in record.getMessage()
    assert "not a channel" in record.getMessage()


async def test_unmatched_message_on_a_custom_channel_is_logged_and_dropped(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    async def consumer(message: Message) -> None:
        await Channel("out").asend({"kind": message["kind"]})

    routes = Routes([route("custom", consumer, kind=r"^a$")])
    with caplog.at_level(logging.DEBUG, logger="chanlite.worker"):
        async with running(Worker(routes, layer, concurrency=1)):
            await layer.send("custom", {"kind": "b"})
            await layer.send("custom", {"kind": "a"})
            assert await receive(layer, "out") == {"kind": "a"}
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelno for r in errors] == [logging.ERROR]
    assert "'custom'" in errors[0].getMessage()
    assert "dropped" in errors[0].getMessage()
    assert await depth(layer, "custom") == 0
    assert await nothing_on(layer, "out")


@pytest.mark.parametrize("channel", ["websocket.receive", "websocket.disconnect"])
async def test_unmatched_socket_messages_are_dropped_silently(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture, channel: str
) -> None:
    async def consumer(message: Message) -> None:
        await Channel("out").asend({"path": message["path"]})

    routes = Routes([route(channel, consumer, path=r"^/chat/")])
    with caplog.at_level(logging.DEBUG, logger="chanlite"):
        async with running(Worker(routes, layer, concurrency=1)):
            await layer.send(channel, {"path": "/other/", "reply_channel": REPLY})
            await layer.send(channel, {"path": "/chat/", "reply_channel": REPLY})
            assert await receive(layer, "out") == {"path": "/chat/"}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert await depth(layer, channel) == 0
    assert await nothing_on(layer, "chanlite!")


async def test_served_routes_accept_unrouted_connects(layer: SpyLayer) -> None:
    async def other(message: Message) -> None:
        pass

    async with running(Worker(served_routes(Routes([route("x", other)])), layer)):
        await layer.send("websocket.connect", {"path": "/", "reply_channel": REPLY})
        assert await receive(layer, "chanlite!") == {"accept": True}


# -- ConsumeLater ----------------------------------------------------------------------


async def test_consume_later_requeues_at_the_end_of_the_channel(layer: SpyLayer) -> None:
    seen: list[dict[str, Any]] = []
    third = Signal()

    async def consumer(message: Message) -> None:
        seen.append(dict(message.content))
        if len(seen) == 3:
            third.set()
        if message["id"] == "A" and len(seen) == 1:
            raise ConsumeLater()

    await layer.send("work", {"id": "A"})
    await layer.send("work", {"id": "B"})
    async with running(Worker(Routes([route("work", consumer)]), layer, concurrency=1)):
        await third.wait()
    assert seen == [{"id": "A"}, {"id": "B"}, {"id": "A"}]  # retry marker never shown


async def test_consume_later_gives_up_after_ten_requeues(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []
    last = Signal()

    async def consumer(message: Message) -> None:
        calls.append(1)
        assert RETRY_KEY not in message
        if len(calls) == MAX_CONSUME_LATER + 1:
            last.set()
        raise ConsumeLater()

    assert MAX_CONSUME_LATER == 10
    worker = Worker(Routes([route("later", consumer)]), layer, concurrency=1)
    with caplog.at_level(logging.WARNING, logger="chanlite.worker"):
        async with running(worker):
            await layer.send("later", {"id": 1})
            await last.wait()
        # run() returned: the eleventh run was handled in full (dropped, not requeued).
    assert len(calls) == 11
    assert await depth(layer, "later") == 0
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "'later'" in warnings[0].getMessage()
    assert "dropped" in warnings[0].getMessage()


async def test_consume_later_is_not_logged_as_an_error(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    async def consumer(message: Message) -> None:
        raise ConsumeLater()

    worker = Worker(Routes([route("later", consumer)]), layer)
    with caplog.at_level(logging.DEBUG, logger="chanlite.worker"):
        await worker.dispatch("later", {"id": 1})
    assert caplog.records == []
    assert await layer.receive(["later"], timeout=0) == ("later", {"id": 1, RETRY_KEY: 1})


# -- channel selection ---------------------------------------------------------------


def _noop(message: Message) -> None:
    pass


ROUTES_ABC = Routes([route(["a", "b", "chat.x", "chat.y"], _noop)])


def test_worker_listens_on_every_routed_channel() -> None:
    assert Worker(ROUTES_ABC, SpyLayer()).channels == ["a", "b", "chat.x", "chat.y"]


def test_only_channels_glob() -> None:
    worker = Worker(ROUTES_ABC, SpyLayer(), only_channels=["chat.*"])
    assert worker.channels == ["chat.x", "chat.y"]


def test_exclude_channels_glob() -> None:
    worker = Worker(ROUTES_ABC, SpyLayer(), exclude_channels=["chat.*", "b"])
    assert worker.channels == ["a"]


def test_only_and_exclude_together() -> None:
    worker = Worker(ROUTES_ABC, SpyLayer(), only_channels=["chat.*", "a"], exclude_channels=["*y"])
    assert worker.channels == ["a", "chat.x"]


def test_select_channels_is_case_sensitive() -> None:
    assert select_channels(["Chat", "chat"], only=["chat"]) == ["chat"]


async def test_excluded_channels_are_not_consumed(layer: SpyLayer) -> None:
    def consumer(message: Message) -> None:
        Channel("out").send({"from": message.channel.name})

    routes = Routes([route(["keep", "skip"], consumer)])
    async with running(Worker(routes, layer, exclude_channels=["skip"])):
        await layer.send("skip", {})
        await layer.send("keep", {})
        assert await receive(layer, "out") == {"from": "keep"}
    assert await depth(layer, "skip") == 1


def test_no_channels_left_after_filtering() -> None:
    with pytest.raises(ConfigurationError, match="no channels to listen on"):
        Worker(ROUTES_ABC, SpyLayer(), only_channels=["nothing.*"])


def test_empty_routes() -> None:
    with pytest.raises(ConfigurationError, match="no channels"):
        Worker(Routes(), SpyLayer())


@pytest.mark.parametrize("threads", [0, -1, True, 1.5, "4"])
def test_threads_must_be_a_positive_integer(threads: Any) -> None:
    with pytest.raises(ConfigurationError, match="threads must be a positive integer"):
        Worker(ROUTES_ABC, SpyLayer(), threads=threads)


@pytest.mark.parametrize("concurrency", [0, -3, False, 2.0])
def test_concurrency_must_be_a_positive_integer(concurrency: Any) -> None:
    with pytest.raises(ConfigurationError, match="concurrency must be a positive integer"):
        Worker(ROUTES_ABC, SpyLayer(), concurrency=concurrency)


def test_default_concurrency() -> None:
    async def async_consumer(message: Message) -> None:
        pass

    assert Worker(ROUTES_ABC, SpyLayer(), threads=3).concurrency == 3
    mixed = Routes([route("a", _noop), route("b", async_consumer)])
    assert Worker(mixed, SpyLayer(), threads=3).concurrency == 3 + ASYNC_CONCURRENCY
    assert Worker(ROUTES_ABC, SpyLayer(), concurrency=7).concurrency == 7


# -- websocket.connect rejection ---------------------------------------------------------


async def _connect_replies(layer: SpyLayer, consumer: Any) -> list[dict[str, Any]]:
    """Run ``consumer`` on one websocket.connect; return what reached the reply channel."""
    worker = Worker(Routes([route("websocket.connect", consumer)]), layer)
    await worker.dispatch("websocket.connect", {"path": "/", "reply_channel": REPLY})
    replies = []
    while True:
        name, content = await layer.receive(["chanlite!"], timeout=0)
        if name is None:
            return replies
        assert name == REPLY
        replies.append(content)


async def test_connect_that_raises_before_accepting_is_rejected(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        assert await _connect_replies(layer, failing_async) == [{"accept": False}]
    assert len(caplog.records) == 1


async def test_sync_connect_that_raises_before_accepting_is_rejected(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        assert await _connect_replies(layer, failing_sync) == [{"accept": False}]


async def test_deny_connection_rejects_without_an_error_log(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    def consumer(message: Message) -> None:
        raise DenyConnection()

    with caplog.at_level(logging.DEBUG, logger="chanlite.worker"):
        assert await _connect_replies(layer, consumer) == [{"accept": False}]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_connect_that_accepted_first_is_not_rejected(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    def consumer(message: Message) -> None:
        assert message.reply_channel is not None
        message.reply_channel.send({"accept": True})
        raise RuntimeError("after accepting")

    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        assert await _connect_replies(layer, consumer) == [{"accept": True}]


async def test_connect_that_sent_text_first_is_not_rejected(layer: SpyLayer) -> None:
    async def consumer(message: Message) -> None:
        assert message.reply_channel is not None
        await message.reply_channel.asend({"text": "hello"})
        raise DenyConnection()

    assert await _connect_replies(layer, consumer) == [{"text": "hello"}]


async def test_rejection_follows_the_flushed_sends(layer: SpyLayer) -> None:
    async def consumer(message: Message) -> None:
        await Channel("audit").asend({"refused": message["path"]})
        raise DenyConnection()

    assert await _connect_replies(layer, consumer) == [{"accept": False}]
    assert await layer.receive(["audit"], timeout=0) == ("audit", {"refused": "/"})


async def test_connect_that_returns_normally_gets_no_reply(layer: SpyLayer) -> None:
    def consumer(message: Message) -> None:
        pass

    assert await _connect_replies(layer, consumer) == []


async def test_other_channels_are_not_rejected(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(Routes([route("websocket.receive", failing_async)]), layer)
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        await worker.dispatch("websocket.receive", {"path": "/", "reply_channel": REPLY})
    assert await nothing_on(layer, "chanlite!")
    assert len(caplog.records) == 1


# -- bounded concurrency -----------------------------------------------------------------


async def test_sync_consumers_run_in_at_most_threads_threads(layer: SpyLayer) -> None:
    threads, messages = 2, 6
    lock = threading.Lock()
    state = {"active": 0, "max": 0, "done": 0}
    names: set[str] = set()
    full, all_done = Signal(), Signal()
    release = threading.Event()

    def consumer(message: Message) -> None:
        with lock:
            state["active"] += 1
            state["max"] = max(state["max"], state["active"])
            names.add(threading.current_thread().name)
            if state["active"] == threads:
                full.set()
        try:
            assert release.wait(TIMEOUT)
        finally:
            with lock:
                state["active"] -= 1
                state["done"] += 1
                if state["done"] == messages:
                    all_done.set()

    # Room for every message in flight: only the thread pool can hold them back.
    worker = Worker(Routes([route("work", consumer)]), layer, threads=threads, concurrency=10)
    for index in range(messages):
        await layer.send("work", {"i": index})
    async with running(worker):
        try:
            await full.wait()
            # One more message waits for a thread; the rest stay on the channel.
            await layer.wait_taken(threads + 1)
            assert await depth(layer, "work") == messages - threads - 1
            with lock:
                assert state["active"] == threads
        finally:
            release.set()
        await all_done.wait()
    assert state["max"] == threads
    assert len(names) <= threads


async def test_worker_takes_at_most_concurrency_messages(layer: SpyLayer) -> None:
    threads, messages = 2, 5
    entered, release = Signal(), threading.Event()
    lock = threading.Lock()
    count = [0]

    def consumer(message: Message) -> None:
        with lock:
            count[0] += 1
            if count[0] == threads:
                entered.set()
        assert release.wait(TIMEOUT)

    worker = Worker(Routes([route("work", consumer)]), layer, threads=threads)
    assert worker.concurrency == threads
    for index in range(messages):
        await layer.send("work", {"i": index})
    async with running(worker):
        try:
            await entered.wait()
            assert layer.taken == threads
            assert await depth(layer, "work") == messages - threads
        finally:
            release.set()


async def test_async_consumers_are_bounded_by_concurrency(layer: SpyLayer) -> None:
    concurrency, messages = 3, 7
    entered, release = Signal(), asyncio.Event()
    active = [0]
    done: list[int] = []
    all_done = Signal()

    async def consumer(message: Message) -> None:
        active[0] += 1
        if active[0] == concurrency:
            entered.set()
        await release.wait()
        active[0] -= 1
        done.append(message["i"])
        if len(done) == messages:
            all_done.set()

    worker = Worker(Routes([route("work", consumer)]), layer, concurrency=concurrency)
    for index in range(messages):
        await layer.send("work", {"i": index})
    async with running(worker):
        await entered.wait()
        assert active[0] == concurrency
        assert layer.taken == concurrency
        assert await depth(layer, "work") == messages - concurrency
        release.set()
        await all_done.wait()
    assert sorted(done) == list(range(messages))


async def test_full_channel_is_backpressure_to_senders() -> None:
    small = SpyLayer(capacity=2)
    entered, release = Signal(), asyncio.Event()

    async def consumer(message: Message) -> None:
        entered.set()
        await release.wait()

    async with running(Worker(Routes([route("work", consumer)]), small, concurrency=1)):
        await small.send("work", {"i": 0})
        await entered.wait()
        await small.send("work", {"i": 1})
        await small.send("work", {"i": 2})
        with pytest.raises(ChannelFull):
            await small.send("work", {"i": 3})
        release.set()


# -- graceful stop -----------------------------------------------------------------------


async def test_stop_lets_a_sync_consumer_in_flight_finish(layer: SpyLayer) -> None:
    entered, release = Signal(), threading.Event()

    def consumer(message: Message) -> None:
        Channel("out").send({"i": message["i"]})
        entered.set()
        assert release.wait(TIMEOUT)

    worker = Worker(Routes([route("work", consumer)]), layer, threads=2)
    await _stop_while_in_flight(layer, worker, entered, release.set)


async def test_stop_lets_an_async_consumer_in_flight_finish(layer: SpyLayer) -> None:
    entered, release = Signal(), asyncio.Event()

    async def consumer(message: Message) -> None:
        await Channel("out").asend({"i": message["i"]})
        entered.set()
        await release.wait()

    worker = Worker(Routes([route("work", consumer)]), layer, concurrency=2)
    await _stop_while_in_flight(layer, worker, entered, release.set)


async def _stop_while_in_flight(
    layer: SpyLayer, worker: Worker, entered: Signal, release: Callable[[], None]
) -> None:
    """Stop ``worker`` while one consumer is blocked; release it; check the end.

    The worker has room for a second message, so it is waiting on the layer (not on
    a free slot) when stopped: run() must still wait for the consumer in flight.
    """
    await layer.send("work", {"i": 0})
    task = asyncio.get_running_loop().create_task(worker.run())
    try:
        await entered.wait()
        worker.stop()
        done, _ = await asyncio.wait({task}, timeout=0.05)
        assert not done  # run() is still waiting for the consumer in flight
        assert await nothing_on(layer, "out")
        await layer.send("work", {"i": 1})
    finally:
        release()
    async with asyncio.timeout(TIMEOUT):
        await task
    assert layer.taken == 1  # nothing was taken after stop()
    assert await depth(layer, "work") == 1
    assert await layer.receive(["out"], timeout=0) == ("out", {"i": 0})  # flushed
    assert await nothing_on(layer, "out")


async def test_stop_while_idle_returns_promptly(layer: SpyLayer) -> None:
    worker = Worker(Routes([route("work", _noop)]), layer)
    task = asyncio.get_running_loop().create_task(worker.run())
    async with asyncio.timeout(TIMEOUT):
        await layer.receiving.wait()
    worker.stop()
    async with asyncio.timeout(TIMEOUT):
        await task
    await layer.send("work", {"late": True})
    assert await depth(layer, "work") == 1
    assert layer.taken == 0


async def test_retry_marker_is_hidden_from_consumers(layer: SpyLayer) -> None:
    seen: list[dict[str, Any]] = []

    async def consumer(message: Message) -> None:
        seen.append(dict(message.content))

    worker = Worker(Routes([route("work", consumer)]), layer)
    await worker.dispatch("work", {"id": 1, RETRY_KEY: 3})
    assert seen == [{"id": 1}]


# -- consumer_timeout ------------------------------------------------------------------

#: A consumer_timeout short enough for tests, and long enough that a consumer that
#: does not hang never reaches it on a busy machine.
SHORT = 0.5


async def logged(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    """Wait (boundedly) for a log record containing ``text``; the first one."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            for record in caplog.records:
                if text in record.getMessage():
                    return record
            await asyncio.sleep(0.01)  # records come from worker threads too


async def test_an_async_consumer_past_consumer_timeout_is_cancelled(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    cancelled = asyncio.Event()

    async def stuck(message: Message) -> None:
        await Channel("out").asend({"sent": "before"})
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    worker = Worker(Routes([route("work", stuck)]), layer, consumer_timeout=SHORT)
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        async with running(worker):
            await layer.send("work", {})
            # Like a consumer that raised: what it sent so far is flushed.
            assert await receive(layer, "out") == {"sent": "before"}
    assert cancelled.is_set()
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is None
    assert record.getMessage().endswith(
        f"stuck ran past consumer_timeout ({SHORT:g}s) on channel 'work'; cancelled"
    )


async def test_a_consumers_own_timeout_error_is_a_failure_not_a_timeout(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    async def impatient(message: Message) -> None:
        async with asyncio.timeout(0):
            await asyncio.Event().wait()

    worker = Worker(Routes([route("work", impatient)]), layer, consumer_timeout=60)
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        await worker.dispatch("work", {})
    [record] = caplog.records
    assert "impatient failed on channel 'work'" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], TimeoutError)


async def test_a_connect_consumer_past_consumer_timeout_rejects_the_socket(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    async def silent(message: Message) -> None:
        await asyncio.Event().wait()

    worker = Worker(Routes([route("websocket.connect", silent)]), layer, consumer_timeout=SHORT)
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        await worker.dispatch("websocket.connect", {"path": "/", "reply_channel": REPLY})
    assert await layer.receive(["chanlite!"], timeout=0) == (REPLY, {"accept": False})
    assert "silent ran past consumer_timeout" in caplog.text


async def test_a_def_consumer_past_consumer_timeout_keeps_its_thread_until_it_returns(
    layer: SpyLayer, caplog: pytest.LogCaptureFixture
) -> None:
    # A thread cannot be stopped. With one thread, the next def message waits for
    # it to return, and its own consumer_timeout does not run meanwhile: a second
    # worker's cancelled consumer shows that more than consumer_timeout went by.
    release, returned = threading.Event(), threading.Event()

    def blocking(message: Message) -> None:
        if message["n"] == 1:
            assert release.wait(TIMEOUT)
            Channel("out").send({"n": 1})  # buffered after it was given up on: dropped
            returned.set()
            return
        Channel("out").send({"n": 2, "after_first": returned.is_set()})

    async def clock(message: Message) -> None:
        await asyncio.Event().wait()

    worker = Worker(Routes([route("work", blocking)]), layer, threads=1, consumer_timeout=SHORT)
    timer = Worker(Routes([route("clock", clock)]), layer, consumer_timeout=2 * SHORT)
    with caplog.at_level(logging.INFO, logger="chanlite.worker"):
        async with running(worker), running(timer):
            await layer.send("work", {"n": 1})
            await layer.send("work", {"n": 2})
            line = (await logged(caplog, "blocking ran past consumer_timeout")).getMessage()
            await layer.send("clock", {})
            await logged(caplog, "clock ran past consumer_timeout")
            release.set()
            assert await receive(layer, "out") == {"n": 2, "after_first": True}
            await logged(caplog, "blocking returned after running past consumer_timeout")
    assert await nothing_on(layer, "out")
    assert "a thread cannot be stopped: it runs on, keeping one of the worker's 1 threads" in line
    assert caplog.text.count("blocking ran past consumer_timeout") == 1


@pytest.mark.parametrize("timeout", [0, -1, "60", True, float("nan")])
def test_consumer_timeout_must_be_a_positive_number_or_none(timeout: Any) -> None:
    with pytest.raises(ConfigurationError, match="consumer_timeout"):
        Worker(Routes([route("work", _noop)]), InMemoryChannelLayer(), consumer_timeout=timeout)


def test_consumer_timeout_defaults_to_60_seconds_and_none_means_no_limit() -> None:
    routes, layer = Routes([route("work", _noop)]), InMemoryChannelLayer()
    assert Worker(routes, layer).consumer_timeout == 60
    assert Worker(routes, layer, consumer_timeout=None).consumer_timeout is None


# -- a failing layer ---------------------------------------------------------------------


class FlakyLayer(SpyLayer):
    """A memory layer whose first ``failures`` receives fail as a backend would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> Any:
        if self.failures:
            self.failures -= 1
            raise LayerError("flaky layer", "the server went away")
        return await super().receive(channels, timeout)

    def receive_ready(self, channels: list[str]) -> tuple[str, dict[str, Any]] | None:
        return None  # every message goes through the receive that fails


async def test_a_layer_that_fails_to_receive_is_logged_and_asked_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = FlakyLayer(failures=2)
    ran = asyncio.Event()

    async def consumer(message: Message) -> None:
        ran.set()

    worker = Worker(Routes([route("chat", consumer)]), layer)
    await layer.send("chat", {})
    with caplog.at_level(logging.ERROR, logger="chanlite.worker"):
        async with running(worker):
            async with asyncio.timeout(TIMEOUT):
                await ran.wait()
    assert layer.failures == 0
    failures = [r.getMessage() for r in caplog.records if "could not receive" in r.getMessage()]
    assert len(failures) == 2
    assert "flaky layer: the server went away" in failures[0]


async def test_stop_cuts_short_the_pause_before_asking_a_failing_layer_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A pause far longer than the test's patience: stop() must not wait it out.
    monkeypatch.setattr(worker_module, "RECEIVE_RETRY_MIN", 600.0)
    monkeypatch.setattr(worker_module, "RECEIVE_RETRY_MAX", 600.0)
    layer = FlakyLayer(failures=1)

    async def consumer(message: Message) -> None:
        raise AssertionError("nothing is sent")

    worker = Worker(Routes([route("chat", consumer)]), layer)
    task = asyncio.get_running_loop().create_task(worker.run())
    async with asyncio.timeout(TIMEOUT):
        while layer.failures:  # noqa: ASYNC110 - no event announces a failed receive
            await asyncio.sleep(0)
    worker.stop()
    async with asyncio.timeout(TIMEOUT):
        await task


# -- taking what is queued -------------------------------------------------------------


class CountingLayer(InMemoryChannelLayer):
    """A memory layer that counts the receives made on it."""

    receives = 0

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> Any:
        self.receives += 1
        return await super().receive(channels, timeout)


async def test_queued_messages_are_taken_without_a_receive_each() -> None:
    # The worker asks receive_ready first: a receive only to wait for the next one.
    layer = CountingLayer()
    seen: list[int] = []
    done = asyncio.Event()

    async def consumer(message: Message) -> None:
        seen.append(message["n"])
        if len(seen) == 5:
            done.set()

    for n in range(5):
        await layer.send("jobs", {"n": n})
    worker = Worker(Routes([route("jobs", consumer)]), layer)
    async with running(worker):
        async with asyncio.timeout(TIMEOUT):
            await done.wait()
    assert seen == [0, 1, 2, 3, 4]
    assert layer.receives <= 1
