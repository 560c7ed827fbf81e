"""``chanlite serve`` as a real process, driven by a real WebSocket client and httpx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .server import Served, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    with serve("tests.apps.basic:app") as served:
        yield served


async def test_echo_text(server: Served) -> None:
    async with connect(f"{server.ws}/echo/") as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"


async def test_echo_bytes(server: Served) -> None:
    async with connect(f"{server.ws}/echo/") as ws:
        await ws.send(b"\x00\xffbinary")
        assert await ws.recv() == b"\x00\xffbinary"


async def test_sync_consumer_echo(server: Served) -> None:
    async with connect(f"{server.ws}/sync-echo/") as ws:
        await ws.send("from a thread")
        assert await ws.recv() == "from a thread"


async def test_default_connect_accepts(server: Served) -> None:
    async with connect(f"{server.ws}/no-connect-route/") as ws:
        await ws.send("anything")
        assert ws.protocol.state.name == "OPEN"


async def test_text_before_accept_auto_accepts(server: Served) -> None:
    async with connect(f"{server.ws}/auto/") as ws:
        assert await ws.recv() == "welcome"


async def test_explicit_accept_with_subprotocol(server: Served) -> None:
    async with connect(f"{server.ws}/accept/", subprotocols=["chat.v2"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v2"


async def test_accept_false_rejects_with_403(server: Served) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"{server.ws}/reject/")
    assert caught.value.response.status_code == 403


async def test_deny_connection_rejects_with_403(server: Served) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"{server.ws}/deny/")
    assert caught.value.response.status_code == 403


async def test_connect_timeout_rejects_with_403(server: Served) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(f"{server.ws}/silent/")
    assert caught.value.response.status_code == 403


async def test_close_with_code_4001(server: Served) -> None:
    async with connect(f"{server.ws}/close/") as ws:
        await ws.send("close me")
        with pytest.raises(ConnectionClosed) as caught:
            await ws.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 4001


async def test_order_numbers_receives_from_one(server: Served) -> None:
    async with connect(f"{server.ws}/order/") as ws:
        replies = []
        for _ in range(3):
            await ws.send("x")
            replies.append(await ws.recv())
    assert replies == ["1", "2", "3"]


async def test_two_rooms_chat_and_disconnect_consumer(server: Served) -> None:
    a1 = await connect(f"{server.ws}/room/red/")
    a2 = await connect(f"{server.ws}/room/red/")
    b1 = await connect(f"{server.ws}/room/blue/")
    await a1.send("hi")
    assert await a1.recv() == "red:hi"
    assert await a2.recv() == "red:hi"
    await b1.send("yo")
    assert await b1.recv() == "blue:yo"  # blue never sees red's message first
    await a1.close()
    assert await a2.recv() == "red:left:1000"  # the disconnect consumer ran
    await a2.close()
    await b1.close()


@pytest.mark.slow
async def test_a_handshake_flood_and_a_broadcast_past_the_default_capacity(
    server: Served,
) -> None:
    # 150 handshakes in flight at the default capacity of 100 per channel: none is
    # refused with 503. Then one broadcast reaches all 150 sockets of this process,
    # and closing them all at once loses no disconnect (each one's consumer tells
    # the room).
    room = f"{server.ws}/room/flood/"
    sockets = await asyncio.gather(*(connect(room) for _ in range(150)))
    try:
        await sockets[0].send("hi")
        for ws in sockets:
            assert await ws.recv() == "flood:hi"
    finally:
        watcher = sockets.pop()
        await asyncio.gather(*(ws.close() for ws in sockets))
    left = [await watcher.recv() for _ in sockets]
    await watcher.close()
    assert left == ["flood:left:1000"] * len(sockets)


async def test_frame_over_limit_closes_1009(server: Served) -> None:
    async with connect(f"{server.ws}/echo/", max_size=None) as ws:
        await ws.send(b"x" * (1024 * 1024 + 1))
        with pytest.raises(ConnectionClosed) as caught:
            await ws.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009


async def test_http_consumer(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.http) as client:
        response = await client.post("/hello/there", content=b"12345")
    assert response.status_code == 200
    assert response.text == "Hello world! You asked for /hello/there (5 bytes)"


async def test_http_streamed_reply(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.http) as client:
        response = await client.get("/stream/")
    assert response.status_code == 200
    assert response.text == "one,two,three"


async def test_http_no_reply_gives_503(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.http) as client:
        response = await client.get("/never/")
    assert response.status_code == 503


async def test_unrouted_http_falls_through_to_host_app(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.http) as client:
        host = await client.get("/host/")
        missing = await client.get("/missing/")
    assert (host.status_code, host.text) == (200, "host app")
    assert missing.status_code == 404


async def test_origin_rejection() -> None:
    with serve("tests.apps.basic:guarded") as served:
        with pytest.raises(InvalidStatus) as caught:
            await connect(f"{served.ws}/echo/", origin="https://evil.example")  # type: ignore[arg-type]
        assert caught.value.response.status_code == 403
        async with connect(f"{served.ws}/echo/", origin="https://good.example") as ws:  # type: ignore[arg-type]
            await ws.send("ok")
            assert await ws.recv() == "ok"


async def test_sigterm_finishes_in_flight_consumer_then_closes_1001() -> None:
    with serve("tests.apps.basic:app") as served:
        async with connect(f"{served.ws}/slow/") as ws:
            await ws.send("1.0")
            assert await ws.recv() == "started"
            served.process.terminate()
            assert await ws.recv() == "finished"
            with pytest.raises(ConnectionClosed) as caught:
                await ws.recv()
        code, output = served.terminate()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1001
    assert code == 0, output


async def test_serve_with_reload_serves() -> None:
    with serve("tests.apps.basic:app", "--reload") as served:
        async with connect(f"{served.ws}/echo/") as ws:
            await ws.send("reloadable")
            assert await ws.recv() == "reloadable"


async def test_serve_a_bare_module_of_marked_consumers() -> None:
    with serve("tests.apps.marked") as served:
        async with connect(f"{served.ws}/marked/") as ws:
            await ws.send("marked")
            assert await ws.recv() == "marked"
