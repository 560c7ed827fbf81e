"""The channel layer contract: one suite that every layer passes.

A backend's test module reuses it by subclassing, as itsdangerous does with its test
classes::

    class TestRedisLayer(LayerContract):
        async def make_layer(self, **options):
            return RedisChannelLayer(URL, **options)

Each test asks the ``layer_factory`` fixture for a layer with the options it needs
(``expiry``, ``capacity``, ``channel_capacity``, ``group_expiry``...), or uses
``layer`` for the defaults. Every layer made is handed to :meth:`cleanup_layer` after
the test. The tests that need a waiting receive wait until the layer's
``waiting_receivers`` counts it; a layer that cannot tell (it returns None) gives its
receive a moment instead. This module imports no backend.

The cases follow the ASGI 1.0 layer conformance suite and DESIGN.md §4-§5.
"""

from __future__ import annotations

import asyncio
import math
import re
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from chanlite import ChanliteError, ChannelFull, InvalidChannelName, MessageTooLarge
from chanlite.exceptions import ConfigurationError
from chanlite.layers import BaseChannelLayer
from chanlite.names import queue_name, validate_channel_name
from chanlite.protocol import GROUP_KEY, POSITION_KEY

from .presence_contract import PresenceContract

LayerFactory = Callable[..., Awaitable[BaseChannelLayer]]

#: The encoded size limit every layer enforces (DESIGN §4).
MIB = 1024 * 1024
#: A waiting receiver must return this soon after the send that wakes it.
WAKE_WITHIN = 0.5
#: How long a receive that expects a message may wait before the test gives up.
PATIENCE = 2.0
#: How long a receive is given to start waiting on a layer that cannot tell whether it
#: has (its ``waiting_receivers`` returns None).
SETTLE = 0.05

BAD_CHANNEL_NAMES = [
    "",
    "has space",
    "a" * 100,
    "!leading-mark",
    "two!!marks",
    "mixed?and!",
    "caf\u00e9",
    "slash/name",
    42,
    None,
]
#: The ``group_history`` option of the history tests: groups named ``hist-*`` keep 10.
HISTORY = {"hist-*": 10}
BAD_POSITIONS = ["nope", "", "abc", "abc:", ":3", "abc:-1", "abc:1.5", "abc:\u0663", 5, b"a:1"]
BAD_LIMITS = [0, -1, "3", 1.5, True]


def offsets(history: Any) -> list[int]:
    """The offsets of a history's messages, oldest first."""
    return [int(position.rpartition(":")[2]) for position, _ in history.messages]


def epoch_of(position: str) -> str:
    return position.partition(":")[0]


BAD_GROUP_NAMES = ["", "has space", "a" * 100, "proc!local", "single?", "caf\u00e9", 42]
NOT_DICTS = [[], ["list"], "text", b"bytes", ("tuple",), None, 3]


async def until(
    condition: Callable[[], bool], what: str, *, within: float = PATIENCE, pause: float = 0.0
) -> None:
    """Return once ``condition()`` holds; fail saying ``what`` after ``within`` seconds.

    For state that no event announces. It is looked at again after every ``pause``
    seconds: 0 lets every other task of this loop have a turn in between, which is
    enough for state that they change; state changed by another thread or process
    wants a short pause, so that the looking does not crowd out the changing.
    """
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {within} s waiting for {what}")
        await anyio.sleep(pause)


class LayerContract(PresenceContract):
    """Every promise of :class:`~chanlite.layers.BaseChannelLayer`, as tests.

    The presence promises are in :class:`PresenceContract` (its own module).

    Subclasses implement :meth:`make_layer` (and :meth:`cleanup_layer` if flushing and
    closing is not enough); pytest
    collects them because their names start with ``Test``. This class itself is never
    collected.
    """

    pytestmark = pytest.mark.anyio

    async def make_layer(self, **options: Any) -> BaseChannelLayer:
        """Return a new, empty layer built with ``options``."""
        raise NotImplementedError("a LayerContract subclass must implement make_layer()")

    async def cleanup_layer(self, layer: BaseChannelLayer) -> None:
        """Release ``layer`` after a test, leaving nothing behind for the next one."""
        await layer.flush()
        await layer.aclose()

    async def until_receiving(self, layer: BaseChannelLayer, channel: str, count: int = 1) -> None:
        """Return once ``count`` receives of ``layer`` wait on ``channel`` (``prefix!``
        for process-specific channels)."""
        if layer.waiting_receivers(channel) is None:
            await anyio.sleep(SETTLE)  # the layer cannot tell: give the receive a moment
            return
        await until(
            lambda: (layer.waiting_receivers(channel) or 0) >= count,
            f"{count} receive(s) waiting on {channel!r}",
            pause=0.001,  # a receive may wait on a thread or a server to get there
        )

    @pytest.fixture
    async def layer_factory(self) -> AsyncIterator[LayerFactory]:
        made: list[BaseChannelLayer] = []

        async def factory(**options: Any) -> BaseChannelLayer:
            layer = await self.make_layer(**options)
            made.append(layer)
            return layer

        yield factory
        for layer in made:
            await self.cleanup_layer(layer)

    @pytest.fixture
    async def layer(self, layer_factory: LayerFactory) -> BaseChannelLayer:
        return await layer_factory()

    # -- send and receive -------------------------------------------------------

    async def test_send_then_receive_returns_channel_and_message(self, layer):
        await layer.send("sr.one", {"value": "blue"})
        assert await layer.receive(["sr.one"], timeout=PATIENCE) == ("sr.one", {"value": "blue"})

    async def test_receive_takes_from_whichever_channel_has_a_message(self, layer):
        await layer.send("sr.one", {"value": "blue"})
        await layer.send("sr.two", {"value": "red"})
        first = await layer.receive(["sr.one"], timeout=PATIENCE)
        second = await layer.receive(["sr.one", "sr.two"], timeout=PATIENCE)
        assert first == ("sr.one", {"value": "blue"})
        assert second == ("sr.two", {"value": "red"})

    async def test_receive_over_several_channels_gets_every_message(self, layer):
        names = ["multi.a", "multi.b", "multi.c"]
        for name in names:
            await layer.send(name, {"from": name})
        got = [await layer.receive(names, timeout=PATIENCE) for _ in names]
        assert sorted(channel for channel, _ in got) == names
        assert all(message == {"from": channel} for channel, message in got)

    async def test_channels_do_not_share_messages(self, layer):
        await layer.send("own.a", {"n": 1})
        assert await layer.receive(["own.b"], timeout=0) == (None, None)
        assert await layer.receive(["own.a"], timeout=PATIENCE) == ("own.a", {"n": 1})

    async def test_receive_with_zero_timeout_on_empty_returns_none(self, layer):
        started = time.monotonic()
        assert await layer.receive(["empty"], timeout=0) == (None, None)
        assert time.monotonic() - started < WAKE_WITHIN

    async def test_receive_gives_up_after_its_timeout(self, layer):
        started = time.monotonic()
        assert await layer.receive(["empty"], timeout=0.2) == (None, None)
        assert 0.15 <= time.monotonic() - started < 0.2 + WAKE_WITHIN

    async def send_once_receiving(
        self, layer: BaseChannelLayer, channel: str, message: dict[str, Any], sent_at: list[float]
    ) -> None:
        """Send ``message`` to ``channel`` once a receive waits on it (on ``channel``'s
        ``prefix!`` for a process-specific name), noting when in ``sent_at``."""
        await self.until_receiving(layer, queue_name(channel))
        sent_at.append(time.monotonic())
        await layer.send(channel, message)

    async def test_receive_waits_for_a_message_sent_later(self, layer):
        sent_at: list[float] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.send_once_receiving, layer, "later", {"n": 1}, sent_at)
            result = await layer.receive(["later"], timeout=5)
        assert result == ("later", {"n": 1})
        assert time.monotonic() - sent_at[0] < WAKE_WITHIN

    async def test_receive_on_several_channels_wakes_for_any_of_them(self, layer):
        sent_at: list[float] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.send_once_receiving, layer, "wake.second", {"n": 2}, sent_at)
            result = await layer.receive(["wake.first", "wake.second"], timeout=5)
        assert result == ("wake.second", {"n": 2})
        assert time.monotonic() - sent_at[0] < WAKE_WITHIN

    async def test_each_waiting_receiver_is_woken_by_its_own_message(self, layer):
        results: list[Any] = []

        async def receive_one() -> None:
            results.append(await layer.receive(["pair"], timeout=5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive_one)
            tg.start_soon(receive_one)
            await self.until_receiving(layer, "pair", 2)
            sent_at = time.monotonic()
            await layer.send("pair", {"n": 1})
            await layer.send("pair", {"n": 2})
        assert sorted(message["n"] for _, message in results) == [1, 2]
        assert time.monotonic() - sent_at < WAKE_WITHIN

    async def test_messages_come_out_in_the_order_they_went_in(self, layer_factory):
        layer = await layer_factory(capacity=1000)
        for n in range(1000):
            await layer.send("fifo", {"n": n})
        received = []
        for _ in range(1000):
            _, message = await layer.receive(["fifo"], timeout=PATIENCE)
            received.append(message["n"])
        assert received == list(range(1000))

    async def test_concurrent_receivers_get_each_message_exactly_once(self, layer_factory):
        count = 10_000
        layer = await layer_factory(capacity=count)
        received: list[int] = []
        all_in = anyio.Event()

        async def receiver() -> None:
            while True:
                _, message = await layer.receive(["once"])
                received.append(message["n"])
                if len(received) >= count:
                    all_in.set()

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(receiver)
            for n in range(count):
                await layer.send("once", {"n": n})
                if n % 3 == 0:  # let receivers in, some finding a message and some waiting
                    await anyio.lowlevel.checkpoint()
            with anyio.fail_after(15):
                await all_in.wait()
            tg.cancel_scope.cancel()
        assert sorted(received) == list(range(count))
        assert await layer.receive(["once"], timeout=0) == (None, None)

    # -- cancellation -----------------------------------------------------------

    async def test_cancelled_receive_takes_nothing(self, layer):
        async with anyio.create_task_group() as tg:
            tg.start_soon(layer.receive, ["cancel"])
            await self.until_receiving(layer, "cancel")
            tg.cancel_scope.cancel()
        await layer.send("cancel", {"n": 1})
        assert await layer.receive(["cancel"], timeout=PATIENCE) == ("cancel", {"n": 1})

    async def cancel_the_woken_receiver(
        self, layer: BaseChannelLayer, *messages: dict[str, Any], steps: int = 0
    ) -> list[Any]:
        """Two receivers wait on one channel; ``messages`` arrive and the receiver
        woken first is cancelled ``steps`` event-loop steps later (0: before it can
        run). Returns what was received, in the order it was taken, then what was
        left on the channel.

        Plain asyncio tasks, not an anyio cancel scope: a scope delivers no
        cancellation to a task whose wake-up is already due, so it would never hit
        the window between wake-up and taking the message.
        """
        received: list[Any] = []
        got_one = anyio.Event()

        async def receive() -> None:
            received.append(await layer.receive(["baton"], timeout=5))
            got_one.set()

        first = asyncio.create_task(receive())
        tasks = [first]
        try:
            await self.until_receiving(layer, "baton")  # the first to wait is woken first
            tasks.append(asyncio.create_task(receive()))
            await self.until_receiving(layer, "baton", 2)
            for message in messages:
                await layer.send("baton", message)
            for _ in range(steps):
                await asyncio.sleep(0)  # the point of cancelling under test, in loop steps
            first.cancel()
            with anyio.fail_after(WAKE_WITHIN):
                await got_one.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        while (leftover := await layer.receive(["baton"], timeout=0)) != (None, None):
            received.append(leftover)
        return received

    async def test_woken_receiver_cancelled_passes_message_to_other_waiter(self, layer):
        received = await self.cancel_the_woken_receiver(layer, {"n": 1})
        assert received == [("baton", {"n": 1})]

    @pytest.mark.parametrize("steps", [1, 2, 3])
    async def test_receiver_cancelled_just_after_wake_up_loses_nothing(self, layer, steps):
        received = await self.cancel_the_woken_receiver(layer, {"n": 1}, steps=steps)
        assert received == [("baton", {"n": 1})]

    async def test_order_holds_across_a_cancelled_woken_receiver(self, layer):
        received = await self.cancel_the_woken_receiver(layer, {"n": 1}, {"n": 2})
        assert received == [("baton", {"n": 1}), ("baton", {"n": 2})]

    # -- process-specific channels ---------------------------------------------

    async def test_prefix_receive_gets_process_specific_messages_with_full_names(self, layer):
        await layer.send("proc!a", {"best": "ponies"})
        await layer.send("proc!b", {"best": "pangolins"})
        assert await layer.receive(["proc!"], timeout=PATIENCE) == ("proc!a", {"best": "ponies"})
        assert await layer.receive(["proc!"], timeout=PATIENCE) == (
            "proc!b",
            {"best": "pangolins"},
        )

    async def test_prefix_receive_wakes_for_a_process_specific_message(self, layer):
        sent_at: list[float] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.send_once_receiving, layer, "proc!late", {"n": 1}, sent_at)
            result = await layer.receive(["proc!"], timeout=5)
        assert result == ("proc!late", {"n": 1})
        assert time.monotonic() - sent_at[0] < WAKE_WITHIN

    async def test_prefixes_are_separate(self, layer):
        await layer.send("alpha!a", {"n": 1})
        assert await layer.receive(["beta!"], timeout=0) == (None, None)
        assert await layer.receive(["alpha!"], timeout=PATIENCE) == ("alpha!a", {"n": 1})

    async def test_receive_on_full_process_specific_name_is_refused(self, layer):
        with pytest.raises(InvalidChannelName) as caught:
            await layer.receive(["proc!local"], timeout=0)
        assert caught.value.name == "proc!local"

    # -- new_channel ------------------------------------------------------------

    async def test_new_channel_names_are_unique(self, layer):
        names = {await layer.new_channel("uniq!") for _ in range(1000)}
        assert len(names) == 1000

    @pytest.mark.parametrize("prefix", ["reply!", "test.foo?", "a-b_c.d!"])
    async def test_new_channel_name_is_valid_and_keeps_its_prefix(self, layer, prefix):
        name = await layer.new_channel(prefix)
        assert isinstance(name, str)
        assert validate_channel_name(name) == name
        assert name.startswith(prefix)
        assert len(name) > len(prefix)
        assert name.count(prefix[-1]) == 1

    async def test_new_channel_has_at_least_128_random_bits(self, layer):
        parts = [(await layer.new_channel("bits!"))[len("bits!") :] for _ in range(500)]
        alphabet = set().union(*parts)
        shortest = min(len(part) for part in parts)
        assert alphabet <= set(string.ascii_letters + string.digits + "-_.")
        assert shortest * math.log2(len(alphabet)) >= 128

    async def test_new_channel_with_question_mark_can_be_used(self, layer):
        name = await layer.new_channel("test.foo?")
        await layer.send(name, {"value": "blue"})
        other = await layer.new_channel("test.foo?")
        assert await layer.receive([name, other], timeout=PATIENCE) == (name, {"value": "blue"})

    async def test_new_process_channel_is_received_through_its_prefix(self, layer):
        name = await layer.new_channel("reply!")
        await layer.send(name, {"value": "blue"})
        assert await layer.receive(["reply!"], timeout=PATIENCE) == (name, {"value": "blue"})

    @pytest.mark.parametrize(
        "prefix", ["test.foo", "test!foo", "test?foo", "bad prefix!", "!", "?", "", 42, None]
    )
    async def test_new_channel_refuses_bad_prefix(self, layer, prefix):
        with pytest.raises(InvalidChannelName):
            await layer.new_channel(prefix)

    # -- content round-trips --------------------------------------------------

    async def roundtrip(self, layer: BaseChannelLayer, content: dict[str, Any]) -> Any:
        await layer.send("roundtrip", content)
        channel, received = await layer.receive(["roundtrip"], timeout=PATIENCE)
        assert channel == "roundtrip"
        return received

    async def test_bytes_and_str_keep_their_types(self, layer):
        content = {
            "values": {
                "utf8-bytes": b"\xc2\xa3",
                "unicode": "\u00a3",
                "emoji": "\U0001f612",
                "control": b"\x01\x00\x03\x21",
            }
        }
        received = await self.roundtrip(layer, content)
        assert received == content
        assert [type(value) for value in received["values"].values()] == [bytes, str, str, bytes]

    async def test_empty_bytes_stay_bytes(self, layer):
        received = await self.roundtrip(layer, {"body": b"", "text": ""})
        assert received == {"body": b"", "text": ""}
        assert type(received["body"]) is bytes
        assert type(received["text"]) is str

    async def test_non_utf8_bytes_round_trip(self, layer):
        raw = bytes(range(256))
        assert await self.roundtrip(layer, {"body": raw}) == {"body": raw}

    async def test_unicode_str_round_trips(self, layer):
        text = "caf\u00e9 \u4e2d\u6587 \U0001f600 \u0000 \ud7ff"
        assert await self.roundtrip(layer, {"text": text}) == {"text": text}

    async def test_str_that_looks_like_base64_stays_str(self, layer):
        content = {"text": "AAEC", "b": "Yg==", "tag": "\x00b"}
        assert await self.roundtrip(layer, content) == content

    async def test_nested_bytes_round_trip(self, layer):
        content = {"a": [{"b": [b"\xff", b"", {"c": b"\x00"}]}], "d": {"e": {"f": b"deep"}}}
        assert await self.roundtrip(layer, content) == content

    async def test_json_scalars_round_trip(self, layer):
        content = {
            "int": -7,
            "big": 2**63 - 1,
            "float": 0.1,
            "true": True,
            "false": False,
            "none": None,
        }
        received = await self.roundtrip(layer, content)
        assert received == content
        assert type(received["true"]) is bool
        assert type(received["int"]) is int

    async def test_tuples_become_lists(self, layer):
        received = await self.roundtrip(layer, {"t": (1, "two", (b"3",))})
        assert received == {"t": [1, "two", [b"3"]]}
        assert type(received["t"]) is list
        assert type(received["t"][2]) is list

    # -- isolation of copies ----------------------------------------------------

    async def test_mutating_message_after_send_does_not_change_received(self, layer):
        message = {"value": [1, 2, 3], "inner": {"k": "v"}}
        await layer.send("mutate", message)
        message["value"][0] = "new value"
        message["inner"]["k"] = "changed"
        message["added"] = True
        _, received = await layer.receive(["mutate"], timeout=PATIENCE)
        assert received == {"value": [1, 2, 3], "inner": {"k": "v"}}

    async def test_mutating_message_after_group_send_does_not_change_received(self, layer):
        await layer.group_add("mutants", "mutate")
        message = {"value": [1, 2, 3]}
        await layer.group_send("mutants", message)
        message["value"].append(4)
        assert await layer.receive(["mutate"], timeout=PATIENCE) == ("mutate", {"value": [1, 2, 3]})

    async def test_group_members_receive_independent_copies(self, layer):
        await layer.group_add("copies", "copy.a")
        await layer.group_add("copies", "copy.b")
        await layer.group_send("copies", {"items": [1, 2], "meta": {"k": "v"}})
        _, first = await layer.receive(["copy.a"], timeout=PATIENCE)
        first["items"].append(3)
        first["meta"]["k"] = "changed"
        _, second = await layer.receive(["copy.b"], timeout=PATIENCE)
        assert second == {"items": [1, 2], "meta": {"k": "v"}}

    # -- expiry -----------------------------------------------------------------

    async def test_message_expires_unread(self, layer_factory):
        layer = await layer_factory(expiry=0.1)
        await layer.send("expire", {"value": "blue"})
        await anyio.sleep(0.2)  # expiry is the behaviour under test: past it
        assert await layer.receive(["expire"], timeout=0) == (None, None)

    async def test_process_specific_message_expires_unread(self, layer_factory):
        layer = await layer_factory(expiry=0.1)
        await layer.send("expire!a", {"value": "blue"})
        await anyio.sleep(0.2)  # expiry is the behaviour under test: past it
        assert await layer.receive(["expire!"], timeout=0) == (None, None)

    async def test_expiry_drops_only_the_older_messages(self, layer_factory):
        layer = await layer_factory(expiry=0.4)
        await layer.send("expire", {"n": 1})
        await anyio.sleep(0.25)  # aging n=1 (the behaviour under test)
        await layer.send("expire", {"n": 2})
        await anyio.sleep(0.25)  # n=1 is now past its expiry, n=2 is not
        assert await layer.receive(["expire"], timeout=0) == ("expire", {"n": 2})

    async def test_expired_messages_free_capacity(self, layer_factory):
        layer = await layer_factory(expiry=0.1, capacity=1)
        await layer.send("expire", {"n": 1})
        await anyio.sleep(0.2)  # expiry is the behaviour under test: past it
        await layer.send("expire", {"n": 2})
        assert await layer.receive(["expire"], timeout=0) == ("expire", {"n": 2})

    async def test_expired_messages_free_capacity_for_a_group_send(self, layer_factory):
        layer = await layer_factory(expiry=0.2, capacity=2)
        await layer.group_add("gexpire", "gexpire.member")
        await layer.send("gexpire.member", {"n": 1})
        await layer.send("gexpire.member", {"n": 2})
        await anyio.sleep(0.3)  # expiry is the behaviour under test: past it
        await layer.send("gexpire.member", {"n": 3})
        await layer.group_send("gexpire", {"n": 4})  # 1 and 2 expired: room for 4
        assert layer.group_full_skips == 0
        got = [await layer.receive(["gexpire.member"], timeout=0) for _ in range(3)]
        assert got == [("gexpire.member", {"n": 3}), ("gexpire.member", {"n": 4}), (None, None)]

    # -- groups -----------------------------------------------------------------

    async def test_group_send_reaches_every_member(self, layer):
        for name in ("tg.a", "tg.b", "tg.c"):
            await layer.group_add("tgroup", name)
        await layer.group_send("tgroup", {"value": "orange"})
        for name in ("tg.a", "tg.b", "tg.c"):
            assert await layer.receive([name], timeout=PATIENCE) == (name, {"value": "orange"})

    async def test_group_add_is_idempotent(self, layer):
        await layer.group_add("twice", "tw.a")
        await layer.group_add("twice", "tw.a")
        await layer.group_send("twice", {"n": 1})
        assert await layer.group_channels("twice") == {"tw.a"}
        assert await layer.receive(["tw.a"], timeout=PATIENCE) == ("tw.a", {"n": 1})
        assert await layer.receive(["tw.a"], timeout=0) == (None, None)

    async def test_group_discard_removes_member(self, layer):
        await layer.group_add("tgroup", "tg.stay")
        await layer.group_add("tgroup", "tg.leave")
        await layer.group_discard("tgroup", "tg.leave")
        await layer.group_send("tgroup", {"value": "orange"})
        assert await layer.receive(["tg.leave"], timeout=0) == (None, None)
        assert await layer.receive(["tg.stay"], timeout=PATIENCE) == (
            "tg.stay",
            {"value": "orange"},
        )

    async def test_group_discard_of_non_member_is_a_no_op(self, layer):
        await layer.group_add("tgroup", "tg.member")
        await layer.group_discard("tgroup", "tg.stranger")
        await layer.group_discard("no-such-group", "tg.member")
        assert await layer.group_channels("tgroup") == {"tg.member"}

    async def test_group_send_reaches_process_specific_members(self, layer):
        for name in ("tgp!one", "tgp!two", "tgp!three"):
            await layer.group_add("tgroup", name)
        await layer.group_discard("tgroup", "tgp!two")
        await layer.group_send("tgroup", {"value": "orange"})
        first = await layer.receive(["tgp!"], timeout=PATIENCE)
        second = await layer.receive(["tgp!"], timeout=PATIENCE)
        assert {first[0], second[0]} == {"tgp!one", "tgp!three"}
        assert first[1] == second[1] == {"value": "orange"}
        assert await layer.receive(["tgp!"], timeout=0) == (None, None)

    async def test_group_channels_lists_current_members(self, layer):
        for name in ("tg.a", "tg.b", "tgp!c"):
            await layer.group_add("tgroup", name)
        assert await layer.group_channels("tgroup") == {"tg.a", "tg.b", "tgp!c"}
        await layer.group_discard("tgroup", "tg.b")
        assert await layer.group_channels("tgroup") == {"tg.a", "tgp!c"}

    async def test_group_channels_of_unknown_group_is_empty(self, layer):
        assert await layer.group_channels("nobody-here") == set()

    async def test_group_send_to_unknown_group_is_a_no_op(self, layer):
        await layer.group_send("nobody-here", {"n": 1})
        assert await layer.group_channels("nobody-here") == set()

    async def test_groups_are_separate(self, layer):
        await layer.group_add("left", "side.left")
        await layer.group_add("right", "side.right")
        await layer.group_send("left", {"n": 1})
        assert await layer.receive(["side.right"], timeout=0) == (None, None)
        assert await layer.receive(["side.left"], timeout=PATIENCE) == ("side.left", {"n": 1})

    async def test_group_membership_expires(self, layer_factory):
        layer = await layer_factory(group_expiry=0.2)
        await layer.group_add("tge", "tge.member")
        await anyio.sleep(0.3)  # group expiry is the behaviour under test: past it
        await layer.group_send("tge", {"value": "blue"})
        assert await layer.receive(["tge.member"], timeout=0) == (None, None)
        assert await layer.group_channels("tge") == set()

    async def test_group_add_refreshes_membership_expiry(self, layer_factory):
        layer = await layer_factory(group_expiry=0.4)
        await layer.group_add("tge", "tge.member")
        await anyio.sleep(0.25)  # aging the membership (the behaviour under test)
        await layer.group_add("tge", "tge.member")
        await anyio.sleep(0.25)  # past the first add's expiry, not the second's
        assert await layer.group_channels("tge") == {"tge.member"}

    async def test_member_whose_message_expired_is_removed_from_groups(self, layer_factory):
        layer = await layer_factory(expiry=0.2)
        await layer.group_add("evict", "gone!a")
        await layer.group_add("evict", "live!b")
        await layer.group_send("evict", {"n": 1})
        assert await layer.receive(["live!"], timeout=PATIENCE) == ("live!b", {"n": 1})
        await anyio.sleep(0.3)  # gone!a's message expires unread
        await layer.group_send("evict", {"n": 2})
        assert await layer.group_channels("evict") == {"live!b"}

    # -- flush ------------------------------------------------------------------

    async def test_flush_empties_channels(self, layer):
        await layer.send("fl.test", {"value": "blue"})
        await layer.send("fl!proc", {"value": "blue"})
        await layer.flush()
        assert await layer.receive(["fl.test", "fl!"], timeout=0) == (None, None)

    async def test_flush_empties_groups(self, layer):
        await layer.group_add("tfg", "tfg.test")
        await layer.group_send("tfg", {"value": "blue"})
        await layer.flush()
        assert await layer.receive(["tfg.test"], timeout=0) == (None, None)
        assert await layer.group_channels("tfg") == set()
        await layer.group_send("tfg", {"value": "after"})
        assert await layer.receive(["tfg.test"], timeout=0) == (None, None)

    async def test_layer_works_after_flush(self, layer):
        await layer.flush()
        await layer.send("fl.after", {"n": 1})
        assert await layer.receive(["fl.after"], timeout=PATIENCE) == ("fl.after", {"n": 1})

    # -- capacity ---------------------------------------------------------------

    async def test_send_to_full_channel_raises_channel_full(self, layer_factory):
        layer = await layer_factory(capacity=3)
        for n in range(3):
            await layer.send("cap", {"n": n})
        with pytest.raises(ChannelFull) as caught:
            await layer.send("cap", {"n": 3})
        assert (caught.value.channel, caught.value.capacity) == ("cap", 3)

    async def test_default_capacity_is_100(self, layer):
        for n in range(100):
            await layer.send("cap", {"n": n})
        with pytest.raises(ChannelFull) as caught:
            await layer.send("cap", {"n": 100})
        assert caught.value.capacity == 100

    async def test_refused_send_to_full_channel_stores_nothing(self, layer_factory):
        layer = await layer_factory(capacity=2)
        await layer.send("cap", {"n": 0})
        await layer.send("cap", {"n": 1})
        with pytest.raises(ChannelFull):
            await layer.send("cap", {"n": 2})
        received = [await layer.receive(["cap"], timeout=0) for _ in range(3)]
        assert received == [("cap", {"n": 0}), ("cap", {"n": 1}), (None, None)]

    async def test_full_channel_accepts_again_after_a_receive(self, layer_factory):
        layer = await layer_factory(capacity=1)
        await layer.send("cap", {"n": 0})
        with pytest.raises(ChannelFull):
            await layer.send("cap", {"n": 1})
        await layer.receive(["cap"], timeout=PATIENCE)
        await layer.send("cap", {"n": 2})
        assert await layer.receive(["cap"], timeout=PATIENCE) == ("cap", {"n": 2})

    async def test_capacity_counts_on_process_prefix(self, layer_factory):
        layer = await layer_factory(capacity=3)
        for n in range(3):
            await layer.send(f"capp!{n}", {"n": n})
        with pytest.raises(ChannelFull) as caught:
            await layer.send("capp!final", {"n": 3})
        assert (caught.value.channel, caught.value.capacity) == ("capp!final", 3)
        await layer.send("other!x", {"n": 0})  # another prefix has its own room

    async def test_channel_capacity_globs_override_capacity(self, layer_factory):
        layer = await layer_factory(capacity=2, channel_capacity={"big.*": 5, "*!*": 3})
        limits = {}
        for name in ("big.one", "small", "proc!a"):
            with pytest.raises(ChannelFull) as caught:
                for n in range(10):
                    await layer.send(name, {"n": n})
            limits[name] = caught.value.capacity
        assert limits == {"big.one": 5, "small": 2, "proc!a": 3}

    async def test_interface_reply_queues_have_a_large_builtin_capacity(self, layer_factory):
        layer = await layer_factory(capacity=2)
        # One group send to many sockets of one interface lands in one queue.
        for n in range(150):
            await layer.send(f"interface.abc!s{n}", {"n": n})
        assert layer.capacity_for("interface.abc!") == 100_000
        assert layer.capacity_for("other!") == 2
        override = await layer_factory(capacity=2, channel_capacity={"interface.*!": 7})
        assert override.capacity_for("interface.abc!") == 7

    async def test_process_prefix_capacity_glob_counts_across_locals(self, layer_factory):
        layer = await layer_factory(capacity=10, channel_capacity={"*!*": 2})
        await layer.send("proc!a", {"n": 0})
        await layer.send("proc!b", {"n": 1})
        with pytest.raises(ChannelFull):
            await layer.send("proc!c", {"n": 2})

    async def test_group_send_skips_full_member_without_raising(self, layer_factory):
        layer = await layer_factory(capacity=1)
        await layer.group_add("gcap", "gcap.full")
        await layer.group_add("gcap", "gcap.free")
        await layer.send("gcap.full", {"n": "direct"})
        await layer.group_send("gcap", {"n": "group"})
        assert await layer.receive(["gcap.free"], timeout=PATIENCE) == (
            "gcap.free",
            {"n": "group"},
        )
        assert await layer.receive(["gcap.full"], timeout=PATIENCE) == (
            "gcap.full",
            {"n": "direct"},
        )
        assert await layer.receive(["gcap.full"], timeout=0) == (None, None)

    async def test_group_send_counts_skipped_full_members(self, layer_factory):
        layer = await layer_factory(capacity=1)
        await layer.group_add("gcap", "gcap.full")
        await layer.group_add("gcap", "gcap.free")
        await layer.send("gcap.full", {"n": "direct"})
        before = layer.group_full_skips
        await layer.group_send("gcap", {"n": "group"})
        assert layer.group_full_skips == before + 1

    async def test_group_send_past_capacity_never_raises(self, layer_factory):
        layer = await layer_factory(capacity=3)
        await layer.group_add("gcap", "gcap.only")
        for n in range(5):
            await layer.group_send("gcap", {"n": n})
        received = [await layer.receive(["gcap.only"], timeout=0) for _ in range(4)]
        assert [message for _, message in received] == [{"n": 0}, {"n": 1}, {"n": 2}, None]

    # -- bad input --------------------------------------------------------------

    @pytest.mark.parametrize("name", BAD_CHANNEL_NAMES)
    async def test_send_refuses_invalid_channel_name(self, layer, name):
        with pytest.raises(InvalidChannelName) as caught:
            await layer.send(name, {"n": 1})
        assert caught.value.name == name

    @pytest.mark.parametrize("name", BAD_CHANNEL_NAMES)
    async def test_receive_refuses_invalid_channel_name(self, layer, name):
        with pytest.raises(InvalidChannelName) as caught:
            await layer.receive(["fine", name], timeout=0)
        assert caught.value.name == name

    @pytest.mark.parametrize("name", BAD_GROUP_NAMES)
    async def test_group_add_refuses_invalid_group_name(self, layer, name):
        with pytest.raises(InvalidChannelName):
            await layer.group_add(name, "fine")

    @pytest.mark.parametrize("name", BAD_CHANNEL_NAMES)
    async def test_group_add_refuses_invalid_channel_name(self, layer, name):
        with pytest.raises(InvalidChannelName):
            await layer.group_add("fine", name)
        assert await layer.group_channels("fine") == set()

    @pytest.mark.parametrize("name", BAD_GROUP_NAMES)
    async def test_group_discard_refuses_invalid_group_name(self, layer, name):
        with pytest.raises(InvalidChannelName):
            await layer.group_discard(name, "fine")

    @pytest.mark.parametrize("name", BAD_CHANNEL_NAMES)
    async def test_group_discard_refuses_invalid_channel_name(self, layer, name):
        with pytest.raises(InvalidChannelName):
            await layer.group_discard("fine", name)

    @pytest.mark.parametrize("name", BAD_GROUP_NAMES)
    async def test_group_send_refuses_invalid_group_name(self, layer, name):
        with pytest.raises(InvalidChannelName):
            await layer.group_send(name, {"n": 1})

    @pytest.mark.parametrize("name", BAD_GROUP_NAMES)
    async def test_group_channels_refuses_invalid_group_name(self, layer, name):
        with pytest.raises(InvalidChannelName):
            await layer.group_channels(name)

    async def test_longest_valid_names_are_accepted(self, layer):
        channel, group = "c" * 99, "g" * 99
        await layer.group_add(group, channel)
        await layer.group_send(group, {"n": 1})
        assert await layer.receive([channel], timeout=PATIENCE) == (channel, {"n": 1})

    async def test_receive_refuses_a_bare_string(self, layer):
        with pytest.raises(TypeError):
            await layer.receive("chan", timeout=0)

    async def test_receive_refuses_no_channels(self, layer):
        with pytest.raises(ValueError):
            await layer.receive([], timeout=0)

    @pytest.mark.parametrize("content", NOT_DICTS)
    async def test_send_refuses_non_dict_content(self, layer, content):
        with pytest.raises(TypeError):
            await layer.send("typed", content)

    @pytest.mark.parametrize("content", NOT_DICTS)
    async def test_group_send_refuses_non_dict_content(self, layer, content):
        await layer.group_add("typed", "typed")
        with pytest.raises(TypeError):
            await layer.group_send("typed", content)

    async def test_unserializable_value_error_names_the_key_path(self, layer):
        with pytest.raises(TypeError, match=r"\['a'\]\['b'\]"):
            await layer.send("typed", {"a": {"b": object()}, "c": 1})

    async def test_unserializable_value_in_list_error_names_the_index(self, layer):
        with pytest.raises(TypeError, match=r"\['a'\]\[1\]"):
            await layer.send("typed", {"a": [1, {2, 3}]})

    async def test_group_send_unserializable_value_error_names_the_key_path(self, layer):
        with pytest.raises(TypeError, match=r"\['x'\]"):
            await layer.group_send("typed", {"x": 1.5j})

    async def test_non_str_key_raises_type_error(self, layer):
        with pytest.raises(TypeError, match=r"\['a'\]"):
            await layer.send("typed", {"a": {1: "one"}})

    async def test_refused_content_is_not_stored(self, layer):
        with pytest.raises(TypeError):
            await layer.send("typed", {"a": object()})
        assert await layer.receive(["typed"], timeout=0) == (None, None)

    async def test_message_over_one_mib_raises_message_too_large(self, layer):
        with pytest.raises(MessageTooLarge) as caught:
            await layer.send("huge", {"text": "x" * MIB})
        assert caught.value.limit == MIB
        assert caught.value.size > MIB
        assert await layer.receive(["huge"], timeout=0) == (None, None)

    async def test_group_send_over_one_mib_raises_message_too_large(self, layer):
        await layer.group_add("huge", "huge")
        with pytest.raises(MessageTooLarge):
            await layer.group_send("huge", {"text": "x" * MIB})

    async def test_bytes_over_one_mib_raise_message_too_large(self, layer):
        with pytest.raises(MessageTooLarge):
            await layer.send("huge", {"bytes": b"\x00" * (MIB + 1)})

    async def test_small_bytes_value_is_accepted(self, layer):
        raw = bytes(range(256)) * 4  # 1024 bytes
        assert await self.roundtrip(layer, {"bytes": raw}) == {"bytes": raw}

    async def test_bytes_count_at_raw_length_towards_the_limit(self, layer):
        # Base64 would make this about 1.33 MiB; counted raw, it is under 1 MiB.
        raw = b"\xfe" * (MIB - 100)
        assert await self.roundtrip(layer, {"bytes": raw}) == {"bytes": raw}

    async def test_layer_errors_are_chanlite_errors(self, layer_factory):
        layer = await layer_factory(capacity=1)
        await layer.send("errs", {"n": 1})
        with pytest.raises(ChanliteError):
            await layer.send("errs", {"n": 2})
        with pytest.raises(ChanliteError):
            await layer.send("errs two", {"n": 1})
        with pytest.raises(ChanliteError):
            await layer.send("errs.big", {"text": "x" * MIB})

    # -- history ----------------------------------------------------------------

    async def test_group_without_history_option_keeps_nothing(self, layer):
        await layer.group_send("hist-none", {"n": 1})
        history = await layer.group_history("hist-none")
        assert (history.messages, history.position, history.complete) == ([], None, True)
        assert layer.history_size("hist-none") == 0

    async def test_history_positions_count_up_in_one_epoch(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        assert layer.history_size("hist-count") == 10
        for n in range(1, 4):
            await layer.group_send("hist-count", {"n": n})
        history = await layer.group_history("hist-count")
        positions = [position for position, _ in history.messages]
        epoch = epoch_of(positions[0])
        assert re.fullmatch(r"[0-9a-f]{8}", epoch)
        assert positions == [f"{epoch}:1", f"{epoch}:2", f"{epoch}:3"]
        assert [content for _, content in history.messages] == [{"n": 1}, {"n": 2}, {"n": 3}]
        assert history.position == f"{epoch}:3"
        assert history.complete

    async def test_history_before_the_first_message_is_empty(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        history = await layer.group_history("hist-quiet")
        assert (history.messages, history.position, history.complete) == ([], None, True)
        since = await layer.group_history("hist-quiet", since="abcd1234:3")
        assert (since.messages, since.position, since.complete) == ([], None, False)

    async def test_history_content_round_trips(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        content = {
            "text": "caf\u00e9 \U0001f600",
            "bytes": b"\x00\xff\xfe",
            "nested": {"list": [1, 2.5, None, True], "empty": b""},
        }
        await layer.group_send("hist-content", content)
        history = await layer.group_history("hist-content")
        assert [message for _, message in history.messages] == [content]

    async def test_history_groups_count_their_own_offsets(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        await layer.group_send("hist-left", {"n": 1})
        await layer.group_send("hist-left", {"n": 2})
        await layer.group_send("hist-right", {"n": 3})
        right = await layer.group_history("hist-right")
        assert offsets(right) == [1]
        assert [message for _, message in right.messages] == [{"n": 3}]
        assert offsets(await layer.group_history("hist-left")) == [1, 2]

    async def test_group_messages_carry_their_group_and_position(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        local = await layer.new_channel("hist-proc!")  # received through its prefix
        await layer.group_add("hist-live", "hist-live-member")
        await layer.group_add("hist-live", local)
        await layer.group_send("hist-live", {"n": 1, GROUP_KEY: "forged"})
        await layer.group_send("hist-live", {})
        positions = [position for position, _ in (await layer.group_history("hist-live")).messages]
        for channel in ("hist-live-member", "hist-proc!"):
            first = (await layer.receive([channel], timeout=2))[1]
            second = (await layer.receive([channel], timeout=2))[1]
            assert first == {"n": 1, GROUP_KEY: "hist-live", POSITION_KEY: positions[0]}
            assert second == {GROUP_KEY: "hist-live", POSITION_KEY: positions[1]}
        # What the history keeps is the content as it was sent.
        kept = await layer.group_history("hist-live")
        assert [content for _, content in kept.messages] == [{"n": 1, GROUP_KEY: "forged"}, {}]

    async def test_history_position_starts_an_epoch_for_a_quiet_group(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        assert await layer.history_position("plain-quiet") is None
        position = await layer.history_position("hist-start")
        epoch = epoch_of(position)
        assert position == f"{epoch}:0"
        assert await layer.history_position("hist-start") == position
        # A member that joined then missed the first messages recovers them all.
        await layer.group_send("hist-start", {"n": 1})
        await layer.group_send("hist-start", {"n": 2})
        history = await layer.group_history("hist-start", since=position)
        assert (offsets(history), history.complete) == ([1, 2], True)
        assert await layer.history_position("hist-start") == f"{epoch}:2"
        with pytest.raises(InvalidChannelName):
            await layer.history_position("bad name")

    async def test_group_without_history_delivers_content_unchanged(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        await layer.group_add("plain-live", "plain-live-member")
        await layer.group_send("plain-live", {"n": 1})
        assert (await layer.receive(["plain-live-member"], timeout=2))[1] == {"n": 1}

    async def test_history_since_returns_only_later_messages(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        for n in range(1, 6):
            await layer.group_send("hist-since", {"n": n})
        first = await layer.group_history("hist-since")
        since = first.messages[1][0]  # offset 2
        history = await layer.group_history("hist-since", since=since)
        assert offsets(history) == [3, 4, 5]
        assert [message["n"] for _, message in history.messages] == [3, 4, 5]
        assert history.complete
        assert history.position == first.position
        latest = await layer.group_history("hist-since", since=first.position)
        assert (latest.messages, latest.complete) == ([], True)

    async def test_history_limit_keeps_the_newest(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        for n in range(1, 6):
            await layer.group_send("hist-limit", {"n": n})
        history = await layer.group_history("hist-limit", limit=2)
        assert offsets(history) == [4, 5]
        assert history.complete
        since = f"{epoch_of(history.position)}:1"
        limited = await layer.group_history("hist-limit", since=since, limit=3)
        assert offsets(limited) == [3, 4, 5]
        assert limited.complete
        assert offsets(await layer.group_history("hist-limit", limit=50)) == [1, 2, 3, 4, 5]

    async def test_history_keeps_only_the_last_n(self, layer_factory):
        layer = await layer_factory(group_history={"hist-*": 3})
        for n in range(1, 6):
            await layer.group_send("hist-bound", {"n": n})
        history = await layer.group_history("hist-bound")
        assert offsets(history) == [3, 4, 5]
        assert [message["n"] for _, message in history.messages] == [3, 4, 5]
        epoch = epoch_of(history.position)
        assert history.position == f"{epoch}:5"
        # A client that saw 2 missed nothing that is not kept.
        just = await layer.group_history("hist-bound", since=f"{epoch}:2")
        assert (offsets(just), just.complete) == ([3, 4, 5], True)
        # One that saw 1 missed 2, which is gone: it gets what is kept, incomplete.
        old = await layer.group_history("hist-bound", since=f"{epoch}:1")
        assert (offsets(old), old.complete) == ([3, 4, 5], False)

    async def test_history_since_from_another_epoch_is_incomplete(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        await layer.group_send("hist-epoch", {"n": 1})
        await layer.group_send("hist-epoch", {"n": 2})
        epoch = epoch_of((await layer.group_history("hist-epoch")).position)
        other = "0" * 8 if epoch != "0" * 8 else "1" * 8
        history = await layer.group_history("hist-epoch", since=f"{other}:1")
        assert history.complete is False
        assert offsets(history) == [1, 2]
        assert history.position == f"{epoch}:2"

    async def test_history_since_newer_than_the_latest_is_incomplete(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        await layer.group_send("hist-ahead", {"n": 1})
        epoch = epoch_of((await layer.group_history("hist-ahead")).position)
        history = await layer.group_history("hist-ahead", since=f"{epoch}:2")
        assert history.complete is False
        assert history.position == f"{epoch}:1"

    async def test_flush_starts_a_new_history_epoch(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        await layer.group_send("hist-flush", {"n": 1})
        await layer.group_send("hist-flush", {"n": 2})
        before = (await layer.group_history("hist-flush")).position
        await layer.flush()
        emptied = await layer.group_history("hist-flush")
        assert (emptied.messages, emptied.position) == ([], None)
        await layer.group_send("hist-flush", {"n": 3})
        after = await layer.group_history("hist-flush")
        assert epoch_of(after.position) != epoch_of(before)
        assert after.position.endswith(":1")
        assert [message for _, message in after.messages] == [{"n": 3}]
        stale = await layer.group_history("hist-flush", since=before)
        assert stale.complete is False

    async def test_history_entries_expire_after_history_ttl(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY, history_ttl=0.2)
        await layer.group_send("hist-ttl", {"n": 1})
        await layer.group_send("hist-ttl", {"n": 2})
        position = (await layer.group_history("hist-ttl")).position
        await anyio.sleep(0.3)  # expiry is the behaviour under test: past it
        history = await layer.group_history("hist-ttl")
        # The messages are gone; the epoch and offset outlive them (group_expiry).
        assert (history.messages, history.position, history.complete) == ([], position, True)
        caught_up = await layer.group_history("hist-ttl", since=position)
        assert (caught_up.messages, caught_up.complete) == ([], True)
        behind = await layer.group_history("hist-ttl", since=f"{epoch_of(position)}:1")
        assert (behind.messages, behind.complete) == ([], False)
        await layer.group_send("hist-ttl", {"n": 3})
        later = await layer.group_history("hist-ttl")
        assert later.messages == [(f"{epoch_of(position)}:3", {"n": 3})]

    async def test_history_expiry_drops_only_the_older_entries(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY, history_ttl=0.4)
        await layer.group_send("hist-ttl", {"n": 1})
        await anyio.sleep(0.25)  # aging n=1 (the behaviour under test)
        await layer.group_send("hist-ttl", {"n": 2})
        await anyio.sleep(0.25)  # n=1 is now past its history_ttl, n=2 is not
        history = await layer.group_history("hist-ttl")
        assert [message for _, message in history.messages] == [{"n": 2}]
        assert offsets(history) == [2]

    async def test_forgotten_history_starts_a_new_epoch(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY, history_ttl=0.2, group_expiry=0.2)
        await layer.group_send("hist-gone", {"n": 1})
        before = (await layer.group_history("hist-gone")).position
        await anyio.sleep(0.3)  # the history's expiry is the behaviour under test
        gone = await layer.group_history("hist-gone")
        assert (gone.messages, gone.position) == ([], None)
        await layer.group_send("hist-gone", {"n": 2})
        after = await layer.group_history("hist-gone")
        assert epoch_of(after.position) != epoch_of(before)
        assert after.position.endswith(":1")

    async def test_group_not_matching_the_history_globs_keeps_nothing(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        assert layer.history_size("other-room") == 0
        await layer.group_send("other-room", {"n": 1})
        history = await layer.group_history("other-room")
        assert (history.messages, history.position, history.complete) == ([], None, True)

    @pytest.mark.parametrize("since", BAD_POSITIONS)
    async def test_history_refuses_a_malformed_since(self, layer_factory, since):
        layer = await layer_factory(group_history=HISTORY)
        await layer.group_send("hist-bad", {"n": 1})
        with pytest.raises(ValueError):
            await layer.group_history("hist-bad", since=since)
        with pytest.raises(ValueError):
            await layer.group_history("no-history", since=since)

    @pytest.mark.parametrize("limit", BAD_LIMITS)
    async def test_history_refuses_a_bad_limit(self, layer_factory, limit):
        layer = await layer_factory(group_history=HISTORY)
        with pytest.raises(ValueError):
            await layer.group_history("hist-bad", limit=limit)

    @pytest.mark.parametrize("name", BAD_GROUP_NAMES)
    async def test_history_refuses_invalid_group_name(self, layer_factory, name):
        layer = await layer_factory(group_history={"*": 5})
        with pytest.raises(InvalidChannelName):
            await layer.group_history(name)

    @pytest.mark.parametrize(
        "options",
        [
            {"group_history": {"a*": 0}},
            {"group_history": {"a*": -1}},
            {"group_history": {"a*": "5"}},
            {"group_history": {"a*": True}},
            {"group_history": [1]},
            {"history_ttl": 0},
            {"history_ttl": -1},
        ],
        ids=repr,
    )
    async def test_bad_history_options_are_refused(self, layer_factory, options):
        with pytest.raises(ConfigurationError):
            await layer_factory(**options)

    async def test_group_send_with_history_still_delivers(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        for name in ("hd.a", "hd!b"):
            await layer.group_add("hist-deliver", name)
        await layer.group_send("hist-deliver", {"value": "orange"})
        position = (await layer.group_history("hist-deliver")).position
        sent = {"value": "orange", GROUP_KEY: "hist-deliver", POSITION_KEY: position}
        assert await layer.receive(["hd.a"], timeout=PATIENCE) == ("hd.a", sent)
        assert await layer.receive(["hd!"], timeout=PATIENCE) == ("hd!b", sent)
        assert await layer.receive(["hd.a", "hd!"], timeout=0) == (None, None)
        history = await layer.group_history("hist-deliver")
        assert [message for _, message in history.messages] == [{"value": "orange"}]

    async def test_history_records_sends_to_a_group_with_no_members(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY)
        await layer.group_send("hist-empty", {"n": 1})
        assert offsets(await layer.group_history("hist-empty")) == [1]

    async def test_history_order_is_the_delivery_order(self, layer_factory):
        layer = await layer_factory(group_history=HISTORY, capacity=100)
        await layer.group_add("hist-order", "ho.member")
        await asyncio.gather(*(layer.group_send("hist-order", {"n": n}) for n in range(10)))
        history = await layer.group_history("hist-order")
        assert offsets(history) == list(range(1, 11))
        received = [await layer.receive(["ho.member"], timeout=PATIENCE) for _ in range(10)]
        kept = [{**m, GROUP_KEY: "hist-order", POSITION_KEY: p} for p, m in history.messages]
        assert [message for _, message in received] == kept
