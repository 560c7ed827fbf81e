"""What ``memory://`` adds for an interface server in the same process: sends that
wait for room in arrival order, local readers for a reply prefix, and the built-in
capacity of interface reply queues (on every layer)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chanlite import ChannelFull, get_layer
from chanlite._codec import decode
from chanlite.layers import BaseChannelLayer
from chanlite.layers.base import BUILTIN_CHANNEL_CAPACITY
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.layers.redis import RedisChannelLayer

from ..conftest import require_redis
from .contract import until

pytestmark = pytest.mark.anyio

TIMEOUT = 5.0
REPLY_PREFIX = "interface.0123456789ab!"


def start(coro: Any) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


# -- send_waiting ----------------------------------------------------------------


async def test_send_waiting_goes_at_once_when_there_is_room() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    await layer.send_waiting("room", {"n": 1}, timeout=TIMEOUT)
    assert await layer.receive(["room"], timeout=0) == ("room", {"n": 1})


async def test_send_waiting_waits_until_a_receive_makes_room() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    await layer.send("full", {"n": 1})
    waiting = start(layer.send_waiting("full", {"n": 2}, timeout=TIMEOUT))
    await until(lambda: layer.waiting_senders("full") == 1, "a send waiting for room")
    assert not waiting.done()
    assert await layer.receive(["full"], timeout=0) == ("full", {"n": 1})
    await waiting  # admitted by that receive
    assert await layer.receive(["full"], timeout=0) == ("full", {"n": 2})


async def test_waiting_senders_are_admitted_in_arrival_order() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    await layer.send("fifo", {"n": 0})
    senders = []
    for n in range(1, 6):
        senders.append(start(layer.send_waiting("fifo", {"n": n}, timeout=TIMEOUT)))
        await until(lambda n=n: layer.waiting_senders("fifo") == n, f"{n} waiting sends")  # type: ignore[misc]
    got = []
    for _ in range(6):
        _, message = await layer.receive(["fifo"], timeout=TIMEOUT)
        got.append(message["n"])
    await asyncio.gather(*senders)
    assert got == [0, 1, 2, 3, 4, 5]


async def test_a_later_send_does_not_barge_ahead_of_waiting_senders() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    await layer.send("queue", {"n": 0})
    waiting = start(layer.send_waiting("queue", {"n": 1}, timeout=TIMEOUT))
    await until(lambda: layer.waiting_senders("queue") == 1, "a send waiting for room")
    await layer.receive(["queue"], timeout=0)  # the room goes to the waiting sender
    with pytest.raises(ChannelFull):
        await layer.send("queue", {"n": 2})
    await waiting
    assert await layer.receive(["queue"], timeout=0) == ("queue", {"n": 1})


async def test_send_waiting_gives_up_with_channel_full_after_the_timeout() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    await layer.send("stuck", {"n": 1})
    with pytest.raises(ChannelFull):
        await layer.send_waiting("stuck", {"n": 2}, timeout=0.05)
    assert layer.waiting_senders("stuck") == 0
    assert await layer.receive(["stuck"], timeout=0) == ("stuck", {"n": 1})
    assert await layer.receive(["stuck"], timeout=0) == (None, None)


async def test_send_waiting_with_no_patience_is_a_plain_send() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    await layer.send("now", {"n": 1})
    with pytest.raises(ChannelFull):
        await layer.send_waiting("now", {"n": 2}, timeout=0)


async def test_a_cancelled_waiting_send_sends_nothing() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    await layer.send("cancel", {"n": 1})
    waiting = start(layer.send_waiting("cancel", {"n": 2}, timeout=TIMEOUT))
    await until(lambda: layer.waiting_senders("cancel") == 1, "a send waiting for room")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert layer.waiting_senders("cancel") == 0
    assert await layer.receive(["cancel"], timeout=0) == ("cancel", {"n": 1})
    assert await layer.receive(["cancel"], timeout=0) == (None, None)


async def test_expired_messages_make_room_for_a_waiting_sender() -> None:
    layer = InMemoryChannelLayer(capacity=1, expiry=0.05)
    await layer.send("old", {"n": 1})
    await layer.send_waiting("old", {"n": 2}, timeout=TIMEOUT)  # room once n=1 expires
    assert await layer.receive(["old"], timeout=0) == ("old", {"n": 2})


async def test_flush_admits_waiting_senders() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    await layer.send("flushed", {"n": 1})
    waiting = start(layer.send_waiting("flushed", {"n": 2}, timeout=TIMEOUT))
    await until(lambda: layer.waiting_senders("flushed") == 1, "a send waiting for room")
    await layer.flush()
    await waiting
    assert await layer.receive(["flushed"], timeout=0) == ("flushed", {"n": 2})


async def test_send_waiting_checks_names_and_content() -> None:
    layer = InMemoryChannelLayer()
    with pytest.raises(ValueError):
        await layer.send_waiting("bad name", {"n": 1}, timeout=0)
    with pytest.raises(TypeError):
        await layer.send_waiting("fine", {"n": object()}, timeout=0)


async def test_an_owned_message_is_received_as_the_same_dict() -> None:
    layer = InMemoryChannelLayer()
    frame = {"text": "hello", "order": 1}
    await layer.send_waiting("owned", frame, timeout=0, owned=True)
    _, received = await layer.receive(["owned"], timeout=0)
    assert received is frame


async def test_a_message_that_is_not_owned_is_copied() -> None:
    layer = InMemoryChannelLayer()
    frame = {"text": "hello", "tags": ["a"]}
    await layer.send_waiting("copied", frame, timeout=0)
    frame["tags"].append("changed after send")
    _, received = await layer.receive(["copied"], timeout=0)
    assert received == {"text": "hello", "tags": ["a"]}


# -- local readers -----------------------------------------------------------------


class Collector:
    """A local reader that records what it is handed, decoded."""

    def __init__(self) -> None:
        self.got: list[tuple[list[str], dict[str, Any]]] = []
        self.threads: set[int] = set()
        self.arrived = asyncio.Event()

    def __call__(self, channels: list[str], payload: bytes) -> None:
        self.got.append((channels, decode(payload)))
        self.threads.add(threading.get_ident())
        self.arrived.set()


async def test_a_local_reader_gets_sends_to_its_prefix_at_once() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    reader = Collector()
    layer.attach_reader(REPLY_PREFIX, reader)
    for n in range(3):  # past the capacity: nothing is queued
        await layer.send(f"{REPLY_PREFIX}a", {"n": n})
    assert reader.got == [([f"{REPLY_PREFIX}a"], {"n": n}) for n in range(3)]
    assert await layer.receive([REPLY_PREFIX], timeout=0) == (None, None)
    await layer.send("other", {"n": 9})  # other channels queue as before
    assert await layer.receive(["other"], timeout=0) == ("other", {"n": 9})


async def test_a_group_send_hands_one_payload_for_all_local_members() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    reader = Collector()
    layer.attach_reader(REPLY_PREFIX, reader)
    members = [f"{REPLY_PREFIX}{n}" for n in range(250)]
    for member in members:
        await layer.group_add("room", member)
    await layer.group_add("room", "elsewhere!x")
    await layer.group_send("room", {"text": "hi"})
    assert len(reader.got) == 1
    channels, message = reader.got[0]
    assert sorted(channels) == sorted(members) and message == {"text": "hi"}
    assert layer.group_full_skips == 0
    assert await layer.receive(["elsewhere!"], timeout=0) == ("elsewhere!x", {"text": "hi"})


async def test_messages_queued_before_attaching_are_handed_over() -> None:
    layer = InMemoryChannelLayer()
    await layer.send(f"{REPLY_PREFIX}early", {"n": 1})
    reader = Collector()
    layer.attach_reader(REPLY_PREFIX, reader)
    assert reader.got == [([f"{REPLY_PREFIX}early"], {"n": 1})]


async def test_after_detaching_messages_queue_again() -> None:
    layer = InMemoryChannelLayer()
    reader = Collector()
    layer.attach_reader(REPLY_PREFIX, reader)
    layer.detach_reader(REPLY_PREFIX)
    await layer.send(f"{REPLY_PREFIX}late", {"n": 1})
    assert reader.got == []
    assert await layer.receive([REPLY_PREFIX], timeout=0) == (f"{REPLY_PREFIX}late", {"n": 1})


async def test_a_send_from_another_thread_reaches_the_reader_on_its_own_loop() -> None:
    layer = InMemoryChannelLayer()
    reader = Collector()
    layer.attach_reader(REPLY_PREFIX, reader)
    thread = threading.Thread(target=lambda: asyncio.run(layer.send(f"{REPLY_PREFIX}t", {"n": 1})))
    thread.start()
    async with asyncio.timeout(TIMEOUT):
        await reader.arrived.wait()
    thread.join()
    assert reader.got == [([f"{REPLY_PREFIX}t"], {"n": 1})]
    assert reader.threads == {threading.get_ident()}


async def test_a_failing_reader_is_logged_and_the_sender_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    layer = InMemoryChannelLayer()

    def broken(channels: list[str], payload: bytes) -> None:
        raise RuntimeError("reader broke")

    layer.attach_reader(REPLY_PREFIX, broken)
    await layer.send(f"{REPLY_PREFIX}x", {"n": 1})
    assert "a local reader failed" in caplog.text


async def test_a_reader_needs_a_process_prefix() -> None:
    layer = InMemoryChannelLayer()
    with pytest.raises(ValueError):
        layer.attach_reader("plain", Collector())


# -- local takers ---------------------------------------------------------------------


class Taker:
    """A local taker that takes while ``taking`` is set, recording what it took."""

    def __init__(self, taking: bool = True) -> None:
        self.taking = taking
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.offers = 0

    def __call__(self, channel: str, content: dict[str, Any]) -> bool:
        self.offers += 1
        if self.taking:
            self.got.append((channel, content))
        return self.taking


async def test_a_taker_takes_a_send_to_an_empty_channel_in_the_senders_step() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    taker = Taker()
    assert layer.attach_taker(["jobs"], taker) is True
    for n in range(3):  # past the capacity: nothing is queued
        await layer.send("jobs", {"n": n})
        assert taker.got[-1] == ("jobs", {"n": n})  # taken before send returned
    await layer.send_waiting("jobs", {"n": 3}, timeout=0)
    assert len(taker.got) == 4
    assert await layer.receive(["jobs"], timeout=0) == (None, None)
    await layer.send("other", {"n": 9})  # other channels queue as before
    assert taker.offers == 4
    assert await layer.receive(["other"], timeout=0) == ("other", {"n": 9})


async def test_a_declined_message_is_queued() -> None:
    layer = InMemoryChannelLayer()
    taker = Taker(taking=False)
    layer.attach_taker(["jobs"], taker)
    await layer.send("jobs", {"n": 1})
    assert taker.offers == 1 and taker.got == []
    assert await layer.receive(["jobs"], timeout=0) == ("jobs", {"n": 1})


async def test_a_taker_is_not_offered_a_message_that_would_overtake_a_queued_one() -> None:
    layer = InMemoryChannelLayer()
    taker = Taker(taking=False)
    layer.attach_taker(["jobs"], taker)
    await layer.send("jobs", {"n": 1})  # declined: queued
    taker.taking = True
    await layer.send("jobs", {"n": 2})  # behind it: queued, never offered
    assert taker.offers == 1 and taker.got == []
    assert await layer.receive(["jobs"], timeout=0) == ("jobs", {"n": 1})
    assert await layer.receive(["jobs"], timeout=0) == ("jobs", {"n": 2})
    await layer.send("jobs", {"n": 3})  # the queue is empty again
    assert taker.got == [("jobs", {"n": 3})]


async def test_a_taker_gets_its_own_copy_unless_the_message_was_handed_over() -> None:
    layer = InMemoryChannelLayer()
    taker = Taker()
    layer.attach_taker(["jobs"], taker)
    sent = {"items": [1]}
    await layer.send_waiting("jobs", sent, timeout=0)
    sent["items"].append(2)
    owned = {"items": [3]}
    await layer.send_waiting("jobs", owned, timeout=0, owned=True)
    assert taker.got[0] == ("jobs", {"items": [1]})
    assert taker.got[1][1] is owned


async def test_sends_from_another_thread_are_never_offered() -> None:
    layer = InMemoryChannelLayer()
    taker = Taker()
    layer.attach_taker(["jobs"], taker)
    thread = threading.Thread(target=lambda: asyncio.run(layer.send("jobs", {"n": 1})))
    thread.start()
    thread.join()
    assert taker.offers == 0
    assert await layer.receive(["jobs"], timeout=0) == ("jobs", {"n": 1})


async def test_takers_are_offered_in_turn_and_detached_ones_no_more() -> None:
    layer = InMemoryChannelLayer()
    first, second = Taker(taking=False), Taker()
    layer.attach_taker(["jobs", "more"], first)
    layer.attach_taker(["jobs"], second)
    await layer.send("jobs", {"n": 1})
    assert (first.offers, second.got) == (1, [("jobs", {"n": 1})])
    layer.detach_taker(second)
    await layer.send("jobs", {"n": 2})
    assert first.offers == 2 and second.offers == 1
    layer.detach_taker(first)
    await layer.send("more", {"n": 3})
    assert first.offers == 2
    assert await layer.receive(["jobs"], timeout=0) == ("jobs", {"n": 2})
    assert await layer.receive(["more"], timeout=0) == ("more", {"n": 3})


async def test_a_taker_takes_plain_channels_only() -> None:
    layer = InMemoryChannelLayer()
    with pytest.raises(ValueError, match="plain channels"):
        layer.attach_taker([f"{REPLY_PREFIX}x"], Taker())


async def test_layers_across_processes_have_no_takers(tmp_path: Path) -> None:
    layer = get_layer(f"sqlite:///{tmp_path / 'layer.db'}")
    try:
        assert layer.attach_taker(["jobs"], Taker()) is False
    finally:
        await layer.aclose()


# -- the built-in capacity of interface reply queues -------------------------------


def test_interface_reply_queues_have_a_large_builtin_capacity() -> None:
    layer = get_layer("memory://", capacity=5)
    assert layer.capacity_for(REPLY_PREFIX) == dict(BUILTIN_CHANNEL_CAPACITY)["interface.*!"]
    assert layer.capacity_for("other!") == 5
    assert layer.channel_capacity == []  # the user's globs only


def test_user_globs_override_the_builtin_capacity() -> None:
    layer = get_layer("memory://", capacity=5, channel_capacity={"*!*": 7})
    assert layer.capacity_for(REPLY_PREFIX) == 7


LayerMaker = Callable[[], BaseChannelLayer]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def any_layer(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        layer: BaseChannelLayer = InMemoryChannelLayer()
    elif request.param == "sqlite":
        layer = get_layer(f"sqlite:///{(tmp_path / 'layer.db').resolve()}")
    else:
        require_redis()
        layer = RedisChannelLayer("redis://127.0.0.1:6379/14", prefix="treply")
        await layer.flush()
    try:
        yield layer
    finally:
        await layer.flush()
        await layer.aclose()


async def test_a_group_send_to_many_sockets_of_one_interface_drops_none(any_layer: Any) -> None:
    # All reply channels of one interface share its queue: at the default capacity of
    # 100, a broadcast to 150 of its sockets used to lose 50.
    layer: BaseChannelLayer = any_layer
    members = [f"{REPLY_PREFIX}{n}" for n in range(150)]
    for member in members:
        await layer.group_add("crowd", member)
    await layer.group_send("crowd", {"text": "all of you"})
    assert layer.group_full_skips == 0
    got = set()
    for _ in members:
        channel, message = await layer.receive([REPLY_PREFIX], timeout=TIMEOUT)
        assert message == {"text": "all of you"}
        got.add(channel)
    assert got == set(members)


# -- receive_ready -------------------------------------------------------------------


async def test_receive_ready_takes_what_is_queued_in_order_without_waiting() -> None:
    layer = InMemoryChannelLayer()
    assert layer.receive_ready(["jobs"]) is None
    await layer.send("jobs", {"n": 1})
    await layer.send("jobs", {"n": 2})
    assert layer.receive_ready(["jobs"]) == ("jobs", {"n": 1})
    assert await layer.receive(["jobs"], timeout=0) == ("jobs", {"n": 2})
    assert layer.receive_ready(["jobs"]) is None


async def test_receive_ready_makes_room_for_a_waiting_sender() -> None:
    layer = InMemoryChannelLayer(capacity=1)
    await layer.send("jobs", {"n": 1})
    waiting = start(layer.send_waiting("jobs", {"n": 2}, timeout=5))
    await until(lambda: layer.waiting_senders("jobs") == 1, "the sender waits")
    assert layer.receive_ready(["jobs"]) == ("jobs", {"n": 1})
    await asyncio.wait_for(waiting, 5)
    assert layer.receive_ready(["jobs"]) == ("jobs", {"n": 2})


async def test_receive_ready_on_a_closed_layer_leaves_the_error_to_receive() -> None:
    layer = InMemoryChannelLayer()
    await layer.send("jobs", {"n": 1})
    await layer.aclose()
    assert layer.receive_ready(["jobs"]) is None


async def test_the_default_receive_ready_leaves_every_message_to_receive(tmp_path: Path) -> None:
    async with get_layer(f"sqlite:///{tmp_path / 'layer.db'}") as layer:
        await layer.send("jobs", {"n": 1})
        assert layer.receive_ready(["jobs"]) is None
        assert await layer.receive(["jobs"], timeout=0) == ("jobs", {"n": 1})
