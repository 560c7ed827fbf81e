"""enforce_ordering in the worker: parking, release, raising, ConsumeLater, slight mode."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from chanlite import ConsumeLater, Message, Routes, enforce_ordering, get_layer
from chanlite.layers.base import BaseChannelLayer
from chanlite.ordering import Sequencer, ordering_mode
from chanlite.sessions import get_session_store
from chanlite.worker import Worker

pytestmark = pytest.mark.anyio


@pytest.fixture
async def layer() -> AsyncIterator[BaseChannelLayer]:
    layer = get_layer("memory://?capacity=10000")
    yield layer
    await layer.aclose()


def socket_messages(socket: str, receives: int) -> list[tuple[str, dict[str, Any]]]:
    """connect, ``receives`` receives and a disconnect of one socket, in order."""
    messages = [("websocket.connect", {"reply_channel": socket, "path": "/", "order": 0})]
    for order in range(1, receives + 1):
        content = {"reply_channel": socket, "path": "/", "order": order, "text": str(order)}
        messages.append(("websocket.receive", content))
    end = {"reply_channel": socket, "path": "/", "order": receives + 1, "code": 1000}
    messages.append(("websocket.disconnect", end))
    return messages


async def run_shuffled(
    layer: BaseChannelLayer,
    routes: Routes,
    messages: list[tuple[str, dict[str, Any]]],
    threads: int = 4,
) -> Worker:
    """Send ``messages`` in a random order, run a worker until all are done."""
    random.Random(7).shuffle(messages)
    worker = Worker(routes, layer, threads=threads)
    for channel, content in messages:
        await layer.send(channel, content)
    task = asyncio.ensure_future(worker.run())
    try:
        await worker.wait_idle(timeout=30)
    finally:
        worker.stop()
        await task
    return worker


def recording_routes(
    decorate: Callable[[Any], Any], log: dict[str, list[int]], sleep: float = 0.002
) -> Routes:
    lock = threading.Lock()
    routes = Routes()

    @routes.consumer(["websocket.connect", "websocket.receive", "websocket.disconnect"])
    @decorate
    def record(message: Message) -> None:
        time.sleep(random.uniform(0, sleep))
        with lock:
            log.setdefault(message["reply_channel"], []).append(message["order"])

    return routes


async def test_strict_order_with_many_threads_and_shuffled_arrival(
    layer: BaseChannelLayer,
) -> None:
    log: dict[str, list[int]] = {}
    messages = [m for n in range(8) for m in socket_messages(f"p!s{n}", 30)]
    await run_shuffled(layer, recording_routes(enforce_ordering, log), messages, threads=8)
    assert sorted(log) == [f"p!s{n}" for n in range(8)]
    assert all(orders == list(range(32)) for orders in log.values())


async def test_without_ordering_the_same_load_runs_out_of_order(
    layer: BaseChannelLayer,
) -> None:
    log: dict[str, list[int]] = {}
    messages = [m for n in range(8) for m in socket_messages(f"p!s{n}", 30)]
    await run_shuffled(layer, recording_routes(lambda f: f, log), messages, threads=8)
    assert any(orders != list(range(32)) for orders in log.values())


async def test_async_consumer_and_undecorated_connect(layer: BaseChannelLayer) -> None:
    seen: list[int] = []
    routes = Routes()

    @routes.consumer("websocket.receive")
    @enforce_ordering
    async def receive(message: Message) -> None:
        await asyncio.sleep(random.uniform(0, 0.002))
        seen.append(message["order"])

    # The connect runs through the default connect consumer, which is not ordered.
    from chanlite.default_routes import served_routes

    await run_shuffled(layer, served_routes(routes), socket_messages("p!a", 40))
    assert seen == list(range(1, 41))


async def test_a_raising_consumer_still_advances(layer: BaseChannelLayer) -> None:
    seen: list[int] = []
    routes = Routes()

    @routes.consumer(["websocket.connect", "websocket.receive", "websocket.disconnect"])
    @enforce_ordering
    def flaky(message: Message) -> None:
        seen.append(message["order"])
        if message["order"] % 3 == 0:
            raise RuntimeError("every third fails")

    await run_shuffled(layer, routes, socket_messages("p!r", 20))
    assert seen == list(range(22))


async def test_consume_later_runs_again_in_its_turn(layer: BaseChannelLayer) -> None:
    seen: list[int] = []
    deferred: set[int] = set()
    routes = Routes()

    @routes.consumer(["websocket.connect", "websocket.receive", "websocket.disconnect"])
    @enforce_ordering
    async def later(message: Message) -> None:
        order = message["order"]
        if order in (2, 5) and order not in deferred:
            deferred.add(order)
            raise ConsumeLater
        seen.append(order)

    await run_shuffled(layer, routes, socket_messages("p!l", 8))
    assert seen == list(range(10))


async def test_slight_mode_runs_a_slow_connect_first(layer: BaseChannelLayer) -> None:
    events: list[str] = []
    routes = Routes()

    @routes.consumer("websocket.connect")
    @enforce_ordering(slight=True)
    async def slow_connect(message: Message) -> None:
        await asyncio.sleep(0.05)
        events.append(f"connect {message['reply_channel']}")

    @routes.consumer(["websocket.receive", "websocket.disconnect"])
    @enforce_ordering(slight=True)
    async def receive(message: Message) -> None:
        events.append(f"{message['order']} {message['reply_channel']}")

    messages = [m for n in range(3) for m in socket_messages(f"p!x{n}", 5)]
    await run_shuffled(layer, routes, messages)
    for n in range(3):
        mine = [event for event in events if event.endswith(f"p!x{n}")]
        assert mine[0] == f"connect p!x{n}" and len(mine) == 7


async def test_ordered_consumer_refuses_a_message_without_order(
    layer: BaseChannelLayer,
) -> None:
    @enforce_ordering
    async def consumer(message: Message) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="order"):
        await consumer(Message({"reply_channel": "p!a"}, "websocket.receive", layer))
    assert ordering_mode(consumer) == "strict"
    assert ordering_mode(enforce_ordering(slight=True)(consumer)) == "slight"


async def test_sequencer_parks_and_releases(layer: BaseChannelLayer) -> None:
    sequencer = Sequencer(get_session_store(None, layer))

    def content(order: int) -> dict[str, Any]:
        return {"reply_channel": "p!q", "order": order, "text": str(order)}

    assert await sequencer.admit("websocket.receive", content(2), "strict") is False
    assert await sequencer.admit("websocket.connect", content(0), "strict") is True
    assert await sequencer.finish("websocket.connect", content(0), last=False) == []
    assert await sequencer.admit("websocket.receive", content(1), "strict") is True
    released = await sequencer.finish("websocket.receive", content(1), last=False)
    assert released == [("websocket.receive", content(2))]
    # Messages that are not a socket's are never held back.
    assert await sequencer.admit("jobs", {"text": "x"}, "strict") is True


async def test_unordered_connect_and_disconnect_in_an_ordered_app(
    layer: BaseChannelLayer, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []
    routes = Routes()

    @routes.consumer("websocket.connect")
    async def connect(message: Message) -> None:
        await asyncio.sleep(0.01)  # slow: receives arrive while it runs
        seen.append(0)

    @routes.consumer("websocket.receive")
    @enforce_ordering
    async def receive(message: Message) -> None:
        seen.append(message["order"])

    @routes.consumer("websocket.disconnect")
    async def disconnect(message: Message) -> None:
        seen.append(message["order"])

    *opening, closing = socket_messages("p!u", 10)
    await run_shuffled(layer, routes, opening)
    await run_shuffled(layer, routes, [closing])
    assert seen == list(range(12))
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    # The disconnect removed the socket's cursor: order 1 waits for a connect again.
    store = get_session_store(None, layer)
    assert await store.order_start("p!u", 1, False, b"", 60) is False
