"""Recovery (DESIGN §11) against real ``chanlite serve`` processes, with the
``websockets`` client speaking ``chanlite.v1`` as ``docs/protocol.md`` describes it:
a dropped connection, and a rolling restart of two interface processes over Redis
while a sender floods the room.

The same client in Chromium, with ``chanlite.js``, is in ``tests/browser``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import require_redis

from .test_faults import PATIENCE, Process, start_server

pytestmark = pytest.mark.anyio

TARGET = "tests.apps.recovery:app"
ROOM = "room-lobby"
PATH = "/room/lobby/"


class V1Client:
    """A ``chanlite.v1`` client: it keeps the last position it got of each group and
    presents them when it connects again, and records every group frame it got."""

    def __init__(self) -> None:
        self.positions: dict[str, str] = {}
        self.offsets: list[int] = []
        self.texts: list[str] = []
        self.ws: ClientConnection | None = None

    async def connect(self, url: str) -> dict[str, Any]:
        """Connect, read frames up to the recovery frame, and return that frame."""
        query = f"?chanlite_positions={quote(json.dumps(self.positions))}"
        self.ws = await connect(url + PATH + query, subprotocols=["chanlite.v1"])  # type: ignore[list-item]
        assert self.ws.subprotocol == "chanlite.v1"
        while True:
            frame = await self.read()
            if "recovery" in frame:
                recovery: dict[str, Any] = frame["recovery"]
                for group, position in recovery["positions"].items():
                    self.positions.setdefault(group, position)
                return recovery

    async def read(self) -> dict[str, Any]:
        assert self.ws is not None
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), PATIENCE))
        if "p" in frame:
            self.positions[frame["g"]] = frame["p"]
            self.offsets.append(int(frame["p"].rpartition(":")[2]))
            self.texts.append(frame["text"])
        return frame

    async def read_until(self, offset: int) -> None:
        """Read group frames until one at ``offset`` or later has come."""
        while not self.offsets or self.offsets[-1] < offset:
            await self.read()

    async def drop(self) -> None:
        assert self.ws is not None
        await self.ws.close()


@asynccontextmanager
async def servers(tmp_path: Path, count: int, *args: str) -> AsyncIterator[list[Process]]:
    """``count`` ``chanlite serve`` processes of the recovery app, listening."""
    started: list[Process] = []
    try:
        for _ in range(count):
            started.append(await start_server(tmp_path, *args, target=TARGET))
        yield started
    finally:
        for process in started:
            process.stop()


async def send_frames(url: str, texts: list[str]) -> None:
    """Send ``texts`` to the room through a plain socket, each once it came back."""
    async with connect(url + PATH) as ws:
        for text in texts:
            await ws.send(text)
            while await asyncio.wait_for(ws.recv(), PATIENCE) != text:
                pass


@pytest.mark.parametrize("layer", ["memory", "redis"])
async def test_a_dropped_connection_gets_the_100_messages_it_missed(
    layer: str, tmp_path: Path
) -> None:
    args = []
    if layer == "redis":
        require_redis()
        args = ["--layer", f"redis://127.0.0.1:6379/13?prefix=rec{secrets.token_hex(4)}"]
    async with servers(tmp_path, 1, *args) as [server]:
        client = V1Client()
        first = await client.connect(server.ws)
        assert first["recovered"] == {}
        assert first["positions"][ROOM].endswith(":0")
        await send_frames(server.ws, ["before"])
        await client.read_until(1)
        await client.drop()
        await send_frames(server.ws, [f"missed {n}" for n in range(100)])
        recovery = await client.connect(server.ws)
        assert recovery["recovered"] == {ROOM: True}
        assert client.offsets == list(range(1, 102))
        assert client.texts == ["before"] + [f"missed {n}" for n in range(100)]
        await send_frames(server.ws, ["after"])
        await client.read_until(102)
        assert client.offsets == list(range(1, 103))
        await client.drop()


async def test_a_rolling_restart_loses_nothing_while_a_sender_floods(tmp_path: Path) -> None:
    """Two interfaces over Redis. SIGTERM the one the client is on; it comes back on
    the other while a sender keeps sending there: it gets every message once, in
    order, before, during and after the restart."""
    require_redis()
    layer = f"redis://127.0.0.1:6379/13?prefix=roll{secrets.token_hex(4)}"
    async with servers(tmp_path, 2, "--layer", layer) as [doomed, survivor]:
        client = V1Client()
        await client.connect(doomed.ws)
        texts = [f"m{n}" for n in range(300)]
        sending = asyncio.get_running_loop().create_task(send_frames(survivor.ws, texts))
        await client.read_until(50)
        assert await doomed.terminate() == 0
        with pytest.raises(ConnectionClosed):
            while True:
                await client.read()
        assert client.ws is not None and client.ws.close_code == 1001
        recovery = await client.connect(survivor.ws)
        assert recovery["recovered"] == {ROOM: True}
        await sending
        await client.read_until(300)
        assert client.offsets == list(range(1, 301))
        assert client.texts == texts
        await client.drop()
