"""The bad-input matrix, part 4: clients that stop reading, and a connection flood
(see ``test_bad_input.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from .test_bad_input import (
    APP,
    MIB,
    RawSocket,
    Server,
    assert_one_line,
    lines_with,
    module_server,
    serve_logged,
    wait_until,
)

pytestmark = pytest.mark.anyio

#: Replies the flood consumer sends a client that has stopped reading, and their size:
#: 128 MiB, far more than the 1,000 replies (16 MiB) that may wait for one socket.
FLOOD, REPLY_SIZE = 8000, 16 * 1024
#: A receive buffer small enough that the client's kernel soon stops taking data.
SMALL_BUFFER = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from module_server(tmp_path_factory)


async def flooded_client(server: Server) -> RawSocket:
    """A client that asks for a flood of replies and does not read them; returns once
    the consumer has sent them all."""
    floods = (await server.debug())["floods"]
    client = RawSocket(server.port, "/flood/", receive_buffer=SMALL_BUFFER)
    client.send_frame(0x1, f"{FLOOD} {REPLY_SIZE}".encode())

    async def flooded() -> bool:
        return bool((await server.debug())["floods"] > floods)

    await wait_until(flooded, "the flood consumer to finish")
    return client


async def test_a_client_that_stops_reading_is_closed_with_1013(server: Server) -> None:
    mark = server.mark()
    baseline = server.memory()
    client = await flooded_client(server)
    try:
        log = await server.wait_log("closing a socket with 1013", mark)
        # Replies that found it closing were dropped: what waits stays bounded.
        assert server.memory() - baseline < 48 * MIB
        await server.still_serves()
        # Once it reads again it gets what was already on its way, then the close.
        frames, code = await asyncio.to_thread(client.read_until_close)
    finally:
        client.close()
    assert code == 1013 and frames < FLOOD
    line = assert_one_line(log, "closing a socket with 1013")
    assert line.endswith("1000 replies are waiting, it is not reading")

    async def gone() -> bool:
        return bool((await server.debug())["connections"] == 0)

    await wait_until(gone, "the closed socket to be forgotten")
    assert len(lines_with(server.log(mark), "1013")) == 1


@pytest.mark.slow
async def test_sigterm_with_a_client_that_never_reads_still_exits(tmp_path: Path) -> None:
    # Graceful shutdown waits for in-flight replies and close frames; a client that
    # never reads would have held it forever. Now the wait is bounded (5 s for the
    # replies, 10 s for uvicorn's connections) and the server exits 0.
    with serve_logged(APP, tmp_path / "server.log") as running:
        client = await flooded_client(running)
        try:
            await running.wait_log("closing a socket with 1013", 0)
            code = await asyncio.to_thread(running.stop, 25)
        finally:
            client.close()
        log = running.log()
    assert code == 0, log
    assert_one_line(log, "gave up writing their last replies to 1 sockets")


async def flood_connections(server: Server, count: int) -> None:
    """Open and close ``count`` sockets to ``/member/``, 100 at a time."""
    for _ in range(count // 100):
        sockets = await asyncio.gather(*(connect(f"{server.ws}/member/") for _ws in range(100)))
        await asyncio.gather(*(ws.close() for ws in sockets))


async def test_a_flood_of_2000_connections_leaves_nothing_behind(server: Server) -> None:
    # Each socket joins a group and gets a channel session on connect, and leaves
    # both on disconnect. A first 2,000 warm the allocator up (while a socket is
    # open its compression state alone takes a few hundred KiB, and how much of
    # that the allocator keeps varies with the Python version); a leak would then
    # grow the process again with the next 2,000.
    await flood_connections(server, 2000)
    mark = server.mark()
    before = await server.debug()
    baseline = server.memory()
    await flood_connections(server, 2000)
    report: dict[str, Any] = {}

    async def settled() -> bool:
        report.update(await server.debug())
        return bool(report["connections"] == 0 and "members" not in report["groups"])

    await wait_until(settled, "every disconnect to be handled")
    assert report["groups"] == before["groups"]
    assert (report["memberships"], report["sessions"], report["cursors"]) == (
        before["memberships"],
        before["sessions"],
        before["cursors"],
    )
    assert report["tasks"] <= before["tasks"]
    # 2,000 sockets came and went. What the allocator keeps varies: up to about
    # 15 MiB on Python 3.13 with nothing leaked (the counts above are exact). A leak
    # of 12 KiB or more a socket would go over this bound.
    assert server.memory() - baseline < 24 * MIB
    await server.still_serves()
    log = server.log(mark)
    assert not lines_with(log, "ERROR") and not lines_with(log, "WARNING"), log
