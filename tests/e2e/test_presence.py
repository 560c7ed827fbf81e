"""Presence across real processes (DESIGN §12): an interface SIGKILLed with a member
present; a sweep in the surviving interface announces the member's leave, once,
within the bound that the app's heartbeat timing sets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from chanlite.layers.redis import RedisChannelLayer
from chanlite.presence import PRESENCE_CHANNEL
from tests.apps.presence import BOUND
from tests.conftest import private_redis_servers
from tests.layers.redis_helpers import RedisServer

from .test_faults import PATIENCE, start_server, wait_until

pytestmark = pytest.mark.anyio

TARGET = "tests.apps.presence:app"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with private_redis_servers() as [server]:
        yield server


@pytest.fixture
async def observer(redis_server: RedisServer) -> AsyncIterator[RedisChannelLayer]:
    """A layer of the test's own, reading ``chanlite.presence`` (no app routes it)."""
    layer = RedisChannelLayer(redis_server.url, group_presence=["room-*"])
    try:
        yield layer
    finally:
        await layer.aclose()


async def announcement(layer: RedisChannelLayer, within: float = PATIENCE) -> dict[str, Any]:
    channel, message = await layer.receive([PRESENCE_CHANNEL], timeout=within)
    assert channel == PRESENCE_CHANNEL, f"no presence announcement within {within} s"
    assert message is not None
    return message


@pytest.mark.slow
async def test_a_killed_interface_s_member_leaves_within_the_bound(
    redis_server: RedisServer, observer: RedisChannelLayer, tmp_path: Path
) -> None:
    doomed = await start_server(tmp_path, "--layer", redis_server.url, target=TARGET)
    survivor = await start_server(tmp_path, "--layer", redis_server.url, target=TARGET)
    try:
        async with connect(f"{survivor.ws}/room/lobby/bob/"):
            [bob_channel] = (await announcement(observer))["joins"]
            alice = await connect(f"{doomed.ws}/room/lobby/alice/")
            joined = await announcement(observer)
            [alice_channel] = joined["joins"]
            assert joined == {
                "group": "room-lobby",
                "joins": {alice_channel: {"user": "alice"}},
                "leaves": {},
            }
            assert await observer.group_presence_count("room-lobby") == 2

            killed = time.monotonic()
            await doomed.kill()
            left = await announcement(observer, within=BOUND + PATIENCE)
            took = time.monotonic() - killed
            assert left == {
                "group": "room-lobby",
                "joins": {},
                "leaves": {alice_channel: {"user": "alice"}},
            }
            assert took <= BOUND + 1.0, f"the leave took {took:.1f} s, over the bound"
            assert await observer.group_presence("room-lobby") == {bob_channel: {"user": "bob"}}

            # Sweeps go on; the next announcement is a new join, not a second leave.
            await wait_until(lambda: time.monotonic() - killed > BOUND * 2, "more sweeps")
            async with connect(f"{survivor.ws}/room/lobby/carol/"):
                after = await announcement(observer)
                assert after["leaves"] == {} and list(after["joins"].values()) == [
                    {"user": "carol"}
                ]
            alice.transport.abort()
        assert await survivor.terminate() == 0
    finally:
        for process in (doomed, survivor):
            process.stop()
