"""The presence part of the layer contract (DESIGN §12), mixed into
:class:`~tests.layers.contract.LayerContract`, so that every layer runs it.

Announcements arrive on ``chanlite.presence`` in the order they were made. A test that
expects nothing to be announced makes a marker join in another group afterwards and
checks that the marker's announcement is the next one: no waiting on a silence.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import pytest

from chanlite.channels import Group
from chanlite.exceptions import ConfigurationError
from chanlite.layers import BaseChannelLayer
from chanlite.presence import PRESENCE_CHANNEL, PRESENCE_SIZE_LIMIT

#: The ``group_presence`` option of these tests.
PRESENCE = ["room-*", "marker"]
ALICE = {"user": "alice"}
BOB = {"user": "bob"}
PATIENCE = 2.0


async def next_announcement(layer: BaseChannelLayer) -> dict[str, Any]:
    channel, message = await layer.receive([PRESENCE_CHANNEL], timeout=PATIENCE)
    assert channel == PRESENCE_CHANNEL, "no presence announcement came"
    assert message is not None
    return message


async def nothing_announced(layer: BaseChannelLayer, marker: str) -> None:
    """Assert that no announcement is waiting before one made now."""
    await layer.presence_join("marker", marker, layer.presence_payload("marker", {}))
    assert await next_announcement(layer) == {
        "group": "marker",
        "joins": {marker: {}},
        "leaves": {},
    }


def joined(group: str, channel: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"group": group, "joins": {channel: data}, "leaves": {}}


def left(group: str, channels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"group": group, "joins": {}, "leaves": channels}


async def sweep_until(layer: BaseChannelLayer, count: int, within: float = PATIENCE) -> None:
    """Sweep until a sweep removes ``count`` entries (after a grace or a heartbeat
    runs out); fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while (removed := await layer.presence_sweep()) == 0:
        if time.monotonic() > deadline:
            pytest.fail(f"no sweep removed anything within {within} s")
        await anyio.sleep(0.02)  # a grace measured on the backend's clock runs out
    assert removed == count


class PresenceContract:
    """Presence: joins and leaves, counts, graces, heartbeats, flush, bad input."""

    async def test_join_is_announced_once_and_read_back(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        room = Group("room-join", layer)
        await room.aadd("pj!tab1", presence=ALICE)
        assert await next_announcement(layer) == joined("room-join", "pj!tab1", ALICE)
        await room.aadd("pj!tab1", presence=ALICE)  # already present: no second join
        await nothing_announced(layer, "marker.pj")
        assert await room.apresence() == {"pj!tab1": ALICE}
        assert "pj!tab1" in await room.achannels()

    async def test_two_users_with_two_tabs_each_count_as_two(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        room = Group("room-count", layer)
        await room.aadd("pc!tab1", presence={"user": "alice", "role": "admin"})
        await room.aadd("pc!tab2", presence={"role": "admin", "user": "alice"})
        await room.aadd("pc.plain", presence=BOB)
        await room.aadd("pc!bob2", presence=BOB)
        assert await room.apresence_count() == 2
        assert len(await room.apresence()) == 4
        await room.adiscard("pc!tab1")
        await room.adiscard("pc!bob2")
        assert await room.apresence_count() == 2
        await room.adiscard("pc!tab2")
        assert await room.apresence_count() == 1
        assert await room.apresence() == {"pc.plain": BOB}

    async def test_re_add_with_new_data_updates_without_announcing(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        room = Group("room-update", layer)
        await room.aadd("pu!tab", presence=ALICE)
        await next_announcement(layer)
        await room.aadd("pu!tab", presence=BOB)
        await nothing_announced(layer, "marker.pu")
        assert await room.apresence() == {"pu!tab": BOB}
        assert await room.apresence_count() == 1

    async def test_discard_announces_the_leave_once(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        room = Group("room-discard", layer)
        await room.aadd("pd!tab", presence=ALICE)
        await next_announcement(layer)
        await room.adiscard("pd!tab")
        assert await next_announcement(layer) == left("room-discard", {"pd!tab": ALICE})
        await room.adiscard("pd!tab")
        await nothing_announced(layer, "marker.pd")
        assert await room.apresence() == {}
        assert await room.apresence_count() == 0
        assert "pd!tab" not in await room.achannels()

    async def test_add_without_presence_records_none(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        room = Group("room-plain", layer)
        await room.aadd("pp!tab")
        assert await room.apresence() == {}
        await nothing_announced(layer, "marker.pp")

    async def test_groups_without_presence_read_empty(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        assert await layer.group_presence("other") == {}
        assert await layer.group_presence_count("other") == 0
        plain = await layer_factory()
        assert await plain.group_presence("room-x") == {}
        assert await plain.group_presence_count("room-x") == 0

    async def test_close_then_rejoin_within_grace_announces_nothing(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE, presence_grace=0.3)
        await layer.presence_heartbeat("pg!", 30)
        payload = layer.presence_payload("room-grace", ALICE)
        await layer.presence_join("room-grace", "pg!old", payload, client_id="tab-1")
        await next_announcement(layer)
        await layer.presence_close("pg!old")
        await layer.presence_discard("room-grace", "pg!old")  # a disconnect consumer's
        assert await layer.group_presence("room-grace") == {"pg!old": ALICE}
        await layer.presence_join("room-grace", "pg!new", payload, client_id="tab-1")
        assert await layer.group_presence("room-grace") == {"pg!new": ALICE}
        assert await layer.group_presence_count("room-grace") == 1
        await anyio.sleep(0.4)  # past the grace, which is the behaviour under test
        assert await layer.presence_sweep() == 0
        await nothing_announced(layer, "marker.pg")
        assert await layer.group_presence("room-grace") == {"pg!new": ALICE}

    async def test_close_without_rejoin_leaves_when_the_grace_ends(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE, presence_grace=0.3)
        payload = layer.presence_payload("room-gone", BOB)
        await layer.presence_join("room-gone", "pl!tab", payload, client_id="tab-2")
        await next_announcement(layer)
        started = time.monotonic()
        await layer.presence_close("pl!tab")
        assert await layer.presence_sweep() == 0  # still in its grace
        assert await layer.group_presence("room-gone") == {"pl!tab": BOB}
        await sweep_until(layer, 1)
        assert time.monotonic() - started >= 0.25
        assert await next_announcement(layer) == left("room-gone", {"pl!tab": BOB})
        assert await layer.group_presence("room-gone") == {}
        assert await layer.group_presence_count("room-gone") == 0

    async def test_close_without_client_id_leaves_at_once(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE, presence_grace=30)
        room = Group("room-anon", layer)
        await room.aadd("pa!tab", presence=ALICE)
        await room.aadd("pa!other", presence=BOB)
        await next_announcement(layer)
        await next_announcement(layer)
        await layer.presence_close("pa!tab")
        assert await next_announcement(layer) == left("room-anon", {"pa!tab": ALICE})
        assert await room.apresence() == {"pa!other": BOB}

    async def test_a_dead_process_leaves_once_with_concurrent_sweeps(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        room = Group("room-dead", layer)
        await layer.presence_heartbeat("alive!", 30)
        for channel in ("alive!a", "dead!b", "dead!c", "plain.d"):
            await room.aadd(channel, presence={"who": channel})
            await next_announcement(layer)
        sweeps = await asyncio.gather(*(layer.presence_sweep() for _ in range(4)))
        if layer.process_local:  # one process: none of its channels dies
            assert sweeps == [0, 0, 0, 0]
            assert len(await room.apresence()) == 4
            return
        assert sum(sweeps) == 2
        gone = {"dead!b": {"who": "dead!b"}, "dead!c": {"who": "dead!c"}}
        leaves: dict[str, Any] = {}
        while len(leaves) < 2:
            message = await next_announcement(layer)
            assert message["group"] == "room-dead" and message["joins"] == {}
            assert not set(message["leaves"]) & set(leaves), "a leave was announced twice"
            leaves.update(message["leaves"])
        assert leaves == gone
        await nothing_announced(layer, "marker.pdd")
        assert set(await room.apresence()) == {"alive!a", "plain.d"}

    async def test_a_held_entry_of_a_dead_process_keeps_its_grace(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE, presence_grace=30)
        payload = layer.presence_payload("room-moving", ALICE)
        await layer.presence_join("room-moving", "gone!a", payload, client_id="tab-3")
        await next_announcement(layer)
        await layer.presence_close("gone!a")
        assert await layer.presence_sweep() == 0
        await layer.presence_join("room-moving", "back!b", payload, client_id="tab-3")
        await nothing_announced(layer, "marker.pm")
        assert await layer.group_presence("room-moving") == {"back!b": ALICE}

    async def test_flush_removes_presence(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        room = Group("room-flush", layer)
        await room.aadd("pf!a", presence=ALICE)
        await layer.flush()
        assert await room.apresence() == {}
        assert await room.apresence_count() == 0
        await room.aadd("pf!a", presence=ALICE)  # joins again after the flush
        assert await next_announcement(layer) == joined("room-flush", "pf!a", ALICE)

    async def test_presence_on_a_group_without_it_is_refused(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        with pytest.raises(ConfigurationError, match="group_presence"):
            await Group("other", layer).aadd("pr!a", presence=ALICE)
        assert "pr!a" not in await Group("other", layer).achannels()

    async def test_too_large_presence_is_refused(self, layer_factory):
        layer = await layer_factory(group_presence=PRESENCE)
        big = {"blob": "x" * PRESENCE_SIZE_LIMIT}
        with pytest.raises(ValueError, match=str(PRESENCE_SIZE_LIMIT)):
            await Group("room-big", layer).aadd("pb!a", presence=big)
        assert await layer.group_presence("room-big") == {}

    @pytest.mark.parametrize("data", [["alice"], "alice", 3, {"when": object()}], ids=repr)
    async def test_presence_that_is_not_a_json_dict_is_refused(self, layer_factory, data):
        layer = await layer_factory(group_presence=PRESENCE)
        with pytest.raises(TypeError):
            await Group("room-type", layer).aadd("pt!a", presence=data)

    @pytest.mark.parametrize(
        "options",
        [
            {"group_presence": "room-*"},
            {"group_presence": [1]},
            {"group_presence": [""]},
            {"group_presence": {"room-*": 1}},
            {"presence_grace": 0},
            {"presence_grace": -1},
        ],
        ids=repr,
    )
    async def test_bad_presence_options_are_refused(self, layer_factory, options):
        with pytest.raises(ConfigurationError):
            await layer_factory(**options)
