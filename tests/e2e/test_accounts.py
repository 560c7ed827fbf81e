"""Sessions and auth through a real ``chanlite serve`` and real HTTP/WebSocket clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chanlite.sessions import SESSION_COOKIE

from .server import Served, serve

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve("tests.apps.accounts:app") as running:
        yield running


async def _login(served: Served, user: str) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{served.http}/login", data={"user": user})
    assert response.status_code == 200
    return response.cookies[SESSION_COOKIE]


async def test_http_login_then_websocket_user(served: Served) -> None:
    cookie = await _login(served, "alice")
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    async with connect(f"{served.ws}/me/", additional_headers=headers) as ws:
        await ws.send("hello")
        assert await ws.recv() == "Alice:hello"
    async with connect(f"{served.ws}/me/?session_key={cookie}") as ws:
        await ws.send("by query")
        assert await ws.recv() == "Alice:by query"


@pytest.mark.parametrize("cookie", ["tampered", "garbage", ""])
async def test_bad_cookie_gives_an_anonymous_user(served: Served, cookie: str) -> None:
    if cookie == "tampered":
        good = await _login(served, "bob")
        cookie = ("A" if good[0] != "A" else "B") + good[1:]
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{served.ws}/me/", additional_headers=headers):
            pass
    assert refused.value.response.status_code == 403
    # The server keeps serving.
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{served.http}/whoami")).text == "anonymous"


async def test_channel_session_per_socket_and_gone_after_disconnect(served: Served) -> None:
    async with (
        connect(f"{served.ws}/counter/") as first,
        connect(f"{served.ws}/counter/") as second,
    ):
        for expected in ("1", "2", "3"):
            await first.send("x")
            assert await first.recv() == expected
        await second.send("x")
        assert await second.recv() == "1"
        await first.send("name")
        name = str(await first.recv())
        assert await _channel_session(served, name) == "present"
    # The disconnect consumer runs after the close: poll the server, with a deadline.
    for _ in range(200):
        if await _channel_session(served, name) == "absent":
            break
        await asyncio.sleep(0.05)
    assert await _channel_session(served, name) == "absent"


async def _channel_session(served: Served, reply_channel: str) -> str:
    async with httpx.AsyncClient() as client:
        url = f"{served.http}/channel-session"
        response = await client.get(url, params={"reply": reply_channel})
    return response.text
