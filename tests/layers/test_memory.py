"""The ``memory://`` layer: the layer contract, plus what only memory promises.

Beyond the contract, memory is the layer that :func:`~chanlite.get_layer` is tested
through (URL parsing and options), and the one shared by threads and event loops
inside one process.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import anyio.to_thread
import pytest

from chanlite import ChannelFull, get_layer
from chanlite.layers import BaseChannelLayer
from chanlite.layers.memory import InMemoryChannelLayer

from .closing import ClosedLayerContract
from .contract import PATIENCE, WAKE_WITHIN, LayerContract, until


class TestMemoryLayer(LayerContract, ClosedLayerContract):
    async def make_layer(self, **options: Any) -> BaseChannelLayer:
        return get_layer("memory://", **options)


# -- get_layer: URLs and options ------------------------------------------------


def test_memory_url_builds_a_memory_layer_with_the_defaults():
    layer = get_layer("memory://")
    assert isinstance(layer, InMemoryChannelLayer)
    settings = (layer.expiry, layer.group_expiry, layer.capacity, layer.channel_capacity)
    assert settings == (60.0, 86400.0, 100, [])
    assert layer.prefix == "chanlite"


@pytest.mark.parametrize("url", ["memory:///", "MEMORY://", "Memory://?capacity=5"])
def test_memory_url_spellings_are_accepted(url):
    assert isinstance(get_layer(url), InMemoryChannelLayer)


@pytest.mark.anyio
async def test_capacity_from_url_is_enforced():
    layer = get_layer("memory://?capacity=5")
    for n in range(5):
        await layer.send("cap", {"n": n})
    with pytest.raises(ChannelFull) as caught:
        await layer.send("cap", {"n": 5})
    assert caught.value.capacity == 5


def test_every_url_option_is_read():
    layer = get_layer("memory://?expiry=2.5&group_expiry=10&capacity=7&prefix=app")
    assert (layer.expiry, layer.group_expiry, layer.capacity, layer.prefix) == (
        2.5,
        10.0,
        7,
        "app",
    )


def test_keyword_options_win_over_url_options():
    layer = get_layer("memory://?capacity=5&expiry=3", capacity=9)
    assert (layer.capacity, layer.expiry) == (9, 3.0)


def test_channel_capacity_is_taken_as_a_keyword():
    layer = get_layer("memory://", channel_capacity={"http.request": 200, "*!*": 1000})
    assert layer.capacity_for("http.request") == 200
    assert layer.capacity_for("reply!") == 1000
    assert layer.capacity_for("other") == 100


def test_channel_capacity_in_url_is_refused():
    with pytest.raises(ValueError, match="channel_capacity"):
        get_layer("memory://?channel_capacity=5")


def test_unknown_scheme_is_named():
    with pytest.raises(ValueError, match="'bogus'"):
        get_layer("bogus://localhost")


def test_url_without_scheme_is_refused():
    with pytest.raises(ValueError, match="no scheme"):
        get_layer("localhost:6379")


def test_memory_url_with_host_is_refused():
    with pytest.raises(ValueError, match="memory://"):
        get_layer("memory://somehost")


def test_unknown_url_option_is_named():
    with pytest.raises(ValueError, match="'colour'"):
        get_layer("memory://?colour=blue")


def test_unknown_keyword_option_is_named():
    with pytest.raises(ValueError, match="'colour'"):
        get_layer("memory://", colour="blue")


@pytest.mark.parametrize(
    ("url", "option"),
    [
        ("memory://?capacity=lots", "capacity"),
        ("memory://?capacity=", "capacity"),
        ("memory://?capacity=0", "capacity"),
        ("memory://?capacity=2.5", "capacity"),
        ("memory://?expiry=soon", "expiry"),
        ("memory://?expiry=-1", "expiry"),
        ("memory://?group_expiry=0", "group_expiry"),
        ("memory://?prefix=not%20valid", "prefix"),
    ],
)
def test_bad_url_option_value_is_named(url, option):
    with pytest.raises(ValueError, match=option):
        get_layer(url)


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": 1.5}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"capacity": "10"}, "capacity"),
        ({"expiry": 0}, "expiry"),
        ({"expiry": "60"}, "expiry"),
        ({"group_expiry": -5}, "group_expiry"),
        ({"channel_capacity": {"big.*": 0}}, "channel_capacity"),
        ({"channel_capacity": ["big.*"]}, "channel_capacity"),
        ({"prefix": "has!mark"}, "prefix"),
        ({"prefix": 7}, "prefix"),
    ],
)
def test_bad_keyword_option_value_is_named(options, option):
    with pytest.raises(ValueError, match=option):
        get_layer("memory://", **options)


def test_get_layer_returns_a_layer_instance_unchanged():
    layer = InMemoryChannelLayer()
    assert get_layer(layer) is layer


def test_get_layer_refuses_options_with_an_instance():
    with pytest.raises(ValueError, match="options"):
        get_layer(InMemoryChannelLayer(), capacity=5)


# -- memory only ------------------------------------------------------------------


@pytest.mark.anyio
async def test_stats_report_channel_depths_and_group_sizes():
    layer = get_layer("memory://")
    await layer.send("depth", {"n": 1})
    await layer.send("depth", {"n": 2})
    await layer.send("proc!a", {"n": 3})
    await layer.group_add("room", "proc!a")
    assert await layer.stats() == {"channels": {"depth": 2, "proc!": 1}, "groups": {"room": 1}}


@pytest.mark.anyio
async def test_layers_do_not_share_messages():
    first, second = get_layer("memory://"), get_layer("memory://")
    await first.send("mine", {"n": 1})
    assert await second.receive(["mine"], timeout=0) == (None, None)
    assert await first.receive(["mine"], timeout=0) == ("mine", {"n": 1})


# -- threads and event loops ------------------------------------------------------


@pytest.mark.anyio
async def test_send_from_another_thread_wakes_a_waiting_receiver():
    layer = get_layer("memory://")

    def send_from_thread() -> None:
        asyncio.run(layer.send("thread", {"n": 1}))

    result: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            result.append(await layer.receive(["thread"], timeout=5))

        tg.start_soon(receive)
        await until(lambda: layer.waiting_receivers("thread") == 1, "a receive waiting")
        sent_at = time.monotonic()
        await anyio.to_thread.run_sync(send_from_thread)
    assert result == [("thread", {"n": 1})]
    assert time.monotonic() - sent_at < WAKE_WITHIN


@pytest.mark.anyio
async def test_receiver_on_another_threads_loop_is_woken():
    layer = get_layer("memory://")

    def receive_in_thread() -> Any:
        return asyncio.run(layer.receive(["thread"], timeout=5))

    sent_at: list[float] = []

    async def send_once_receiving() -> None:
        waiting = "a receive waiting in another thread"
        await until(lambda: layer.waiting_receivers("thread") == 1, waiting, pause=0.001)
        sent_at.append(time.monotonic())
        await layer.send("thread", {"n": 1})

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_once_receiving)
        result = await anyio.to_thread.run_sync(receive_in_thread)
    assert result == ("thread", {"n": 1})
    assert time.monotonic() - sent_at[0] < WAKE_WITHIN


@pytest.mark.anyio
async def test_senders_in_many_threads_lose_nothing_and_keep_their_order():
    layer = get_layer("memory://", capacity=1000)
    batches = [range(start, start + 250) for start in range(0, 1000, 250)]

    def send_batch(numbers: range) -> None:
        async def send_all() -> None:
            for n in numbers:
                await layer.send("threads", {"n": n})

        asyncio.run(send_all())

    received: list[int] = []
    async with anyio.create_task_group() as tg:
        for numbers in batches:
            tg.start_soon(anyio.to_thread.run_sync, send_batch, numbers)
        while len(received) < 1000:
            channel, message = await layer.receive(["threads"], timeout=PATIENCE)
            assert channel == "threads"
            received.append(message["n"])
    assert sorted(received) == list(range(1000))
    for numbers in batches:
        assert [n for n in received if n in numbers] == list(numbers)


def abandon_a_receive(layer: BaseChannelLayer, channel: str) -> None:
    """Leave a receive waiting on ``channel`` in an event loop that is then closed,
    without cancelling it, as a thread that dies might."""
    loop = asyncio.new_event_loop()
    abandoned = loop.create_task(layer.receive([channel]))
    waiting = until(lambda: layer.waiting_receivers(channel) == 1, "a receive waiting")
    loop.run_until_complete(waiting)
    loop.close()
    abandoned._log_destroy_pending = False  # it can never finish: do not log that


@pytest.mark.anyio
async def test_receiver_whose_loop_was_closed_does_not_break_senders():
    layer = get_layer("memory://")
    await anyio.to_thread.run_sync(abandon_a_receive, layer, "orphan")
    await layer.send("orphan", {"n": 1})
    assert await layer.receive(["orphan"], timeout=0) == ("orphan", {"n": 1})


@pytest.mark.anyio
async def test_receiver_whose_loop_was_closed_does_not_swallow_a_wake_up():
    layer = get_layer("memory://")
    await anyio.to_thread.run_sync(abandon_a_receive, layer, "orphan")

    sent_at: list[float] = []

    async def send_once_receiving() -> None:
        # The abandoned receive still counts: it was never woken nor cancelled.
        await until(lambda: layer.waiting_receivers("orphan") == 2, "a second receive waiting")
        sent_at.append(time.monotonic())
        await layer.send("orphan", {"n": 1})

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_once_receiving)
        result = await layer.receive(["orphan"], timeout=5)
    assert result == ("orphan", {"n": 1})
    assert time.monotonic() - sent_at[0] < WAKE_WITHIN
