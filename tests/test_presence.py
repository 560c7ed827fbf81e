"""Presence through the app (DESIGN §12): the client id a connect consumer's
``Group.add`` records, sockets that close, and a flood of sockets, driven in-process
through ASGI (the fake clients of ``test_interface``)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from chanlite import Chanlite, Group, Message, Routes, get_layer
from chanlite.layers import BaseChannelLayer
from chanlite.presence import PRESENCE_CHANNEL, PresenceTiming
from chanlite.presence_keeper import PresenceKeeper
from chanlite.recovery import Rejoin
from chanlite.runtime import ConsumerScope, enter_scope
from tests.apps import presence as presence_app

from .asgi_clients import TIMEOUT, FakeClient, started, until
from .conftest import require_redis
from .test_interface import KEY

pytestmark = pytest.mark.anyio

REDIS_URL = "redis://127.0.0.1:6379/12"
#: Sockets in the flood.
FLOOD = 2000
ALICE = {"user": "alice"}


@pytest.fixture(params=["memory", "redis"])
async def layer(request: pytest.FixtureRequest) -> AsyncIterator[BaseChannelLayer]:
    """A layer that keeps presence for ``room-*`` (with room for a flood); an app that
    was given it closes it."""
    options: dict[str, Any] = {"group_presence": ["room-*"], "capacity": 3 * FLOOD}
    if request.param == "memory":
        made = get_layer("memory://", **options)
        yield made
        await made.aclose()
        return
    require_redis()
    options["prefix"] = f"presence-{secrets.token_hex(4)}"
    made = get_layer(REDIS_URL, **options)
    yield made
    await made.aclose()
    async with get_layer(REDIS_URL, **options) as cleaner:
        await cleaner.flush()


async def as_connect_consumer(
    layer: BaseChannelLayer, rejoin: Rejoin, add: Callable[[], Awaitable[None]]
) -> None:
    """Run ``add()`` as a ``chanlite.v1`` socket's connect consumer would (in a task of
    its own, so the scope goes with it)."""

    async def consume() -> None:
        scope = ConsumerScope(layer, rejoin.reply_channel)
        scope.rejoin = rejoin
        enter_scope(scope)
        await add()

    await asyncio.create_task(consume())


async def announcement(layer: BaseChannelLayer) -> dict[str, Any]:
    channel, message = await layer.receive([PRESENCE_CHANNEL], timeout=TIMEOUT)
    assert channel == PRESENCE_CHANNEL and message is not None
    return message


async def test_a_connect_consumer_s_add_records_the_client_id(layer: BaseChannelLayer) -> None:
    room = Group("room-rejoin", layer)
    await layer.presence_heartbeat("interface.a!", 30)
    first = Rejoin("interface.a!one", {}, "tab-1")
    await as_connect_consumer(layer, first, lambda: room.aadd(first.reply_channel, presence=ALICE))
    assert (await announcement(layer))["joins"] == {"interface.a!one": ALICE}
    await layer.presence_close("interface.a!one")
    again = Rejoin("interface.a!two", {}, "tab-1")
    await as_connect_consumer(layer, again, lambda: room.aadd(again.reply_channel, presence=ALICE))
    assert await room.apresence() == {"interface.a!two": ALICE}
    # A channel that is not the re-joining socket's own does not take its client id.
    other = Rejoin("interface.a!three", {}, "tab-1")
    await as_connect_consumer(layer, other, lambda: room.aadd("interface.a!four", presence=ALICE))
    assert (await announcement(layer))["joins"] == {"interface.a!four": ALICE}
    assert set(await room.apresence()) == {"interface.a!two", "interface.a!four"}


async def test_the_keeper_beats_and_sweeps_a_grace_away(layer: BaseChannelLayer) -> None:
    layer.presence_grace = 0.05
    keeper = PresenceKeeper(layer, "interface.k!")
    await keeper.start()
    try:
        room = Group("room-keeper", layer)
        payload = layer.presence_payload("room-keeper", ALICE)
        await layer.presence_join("room-keeper", "interface.k!s", payload, client_id="tab")
        await announcement(layer)
        await layer.presence_close("interface.k!s")

        async def swept() -> bool:
            return await keeper.sweep() == 1

        async with asyncio.timeout(TIMEOUT):
            while not await swept():  # noqa: ASYNC110 - the grace runs on the backend clock
                await asyncio.sleep(0.01)
        assert (await announcement(layer))["leaves"] == {"interface.k!s": ALICE}
        assert await room.apresence() == {}
    finally:
        await keeper.stop()


@pytest.mark.slow
async def test_a_flood_of_sockets_joins_and_leaves_without_a_trace(
    layer: BaseChannelLayer,
) -> None:
    seen = {"joins": 0, "leaves": 0}
    routes = Routes([*presence_app.routes])

    @routes.consumer(PRESENCE_CHANNEL)
    async def count(message: Message) -> None:
        seen["joins"] += len(message["joins"])
        seen["leaves"] += len(message["leaves"])

    app = Chanlite(routes, layer=layer, secret_key=KEY, websocket_connect_timeout=30)
    room = Group("room-flood", layer)
    async with started(app):
        clients = [FakeClient(app, f"/room/flood/user{n % 500}/") for n in range(FLOOD)]
        for client in clients:
            client.connect()
        for client in clients:
            await client.wait_for(lambda client=client: client.status is not None)  # type: ignore[misc]
        assert {client.status for client in clients} == {"open"}
        assert len(await room.apresence()) == FLOOD
        assert await room.apresence_count() == 500
        for client in clients:
            client.close()
        for client in clients:
            await client.finished()
        await until(lambda: seen["leaves"] == FLOOD)
        assert seen["joins"] == FLOOD
        assert await room.apresence() == {}
        assert await room.apresence_count() == 0
        async with asyncio.timeout(TIMEOUT):  # the disconnect consumers discard
            while await room.achannels():  # noqa: ASYNC110 - layer state, no event
                await asyncio.sleep(0.01)


async def test_a_quick_recovered_reconnect_announces_nothing(layer: BaseChannelLayer) -> None:
    """A ``chanlite.v1`` socket that drops and comes back with its client id within
    the grace keeps its presence silently; once it leaves for good, its leave is
    announced when the grace ends."""
    layer.presence_grace = 1.0
    fast = PresenceTiming(heartbeat_interval=0.1, heartbeat_ttl=1.0, sweep_interval=0.1)
    app = Chanlite(presence_app.routes, layer=layer, secret_key=KEY, presence_timing=fast)
    room = Group("room-lobby", layer)

    def client() -> FakeClient:
        query = b"chanlite_client=tab-1"
        return FakeClient(
            app, "/room/lobby/alice/", query_string=query, subprotocols=["chanlite.v1"]
        )

    async with started(app):
        first = client()
        first.connect()
        await first.wait_for(lambda: first.status == "open")
        assert (await announcement(layer))["joins"] == {
            first_channel(await room.apresence()): ALICE
        }
        first.close()
        await first.finished()
        again = client()
        again.connect()
        await again.wait_for(lambda: again.status == "open")
        moved = await room.apresence()
        assert list(moved.values()) == [ALICE]
        # Past the grace and a sweep (time has to pass to show that nothing comes):
        # still present, and nothing was announced.
        await asyncio.sleep(layer.presence_grace + 2 * fast.sweep_interval)
        assert await room.apresence() == moved
        assert await layer.receive([PRESENCE_CHANNEL], timeout=0) == (None, None)
        again.close()
        await again.finished()
        assert (await announcement(layer))["leaves"] == {first_channel(moved): ALICE}
        assert await room.apresence() == {}
        assert (layer.presence_joins, layer.presence_leaves) == (1, 1)


def first_channel(present: dict[str, Any]) -> str:
    (channel,) = present
    return channel
