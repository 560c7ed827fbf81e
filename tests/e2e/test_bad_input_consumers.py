"""The bad-input matrix, part 3: consumers that raise, hang, or send bad replies, and
channel or group names made from user data (see ``test_bad_input.py``).

A consumer's own error is the app's bug: it is logged once, with its traceback, and
contained (the socket stays open, the server goes on). What chanlite decides for
the app (a timeout, a malformed reply dropped) is one line without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.apps.bad_input import CONSUMER_TIMEOUT

from .test_bad_input import Server, assert_one_line, lines_with, module_server

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from module_server(tmp_path_factory)


async def test_a_consumer_that_raises(server: Server) -> None:
    mark = server.mark()
    async with connect(f"{server.ws}/raise/") as ws:
        await ws.send("raise")
        await ws.send("after")
        assert await ws.recv() == "after"
    log = await server.wait_log("RuntimeError: the test app's consumer failed", mark)
    await server.still_serves()
    line = assert_one_line(log, "consumer tests.apps.bad_input.fail failed", traceback=True)
    assert line.startswith("ERROR:") and "'websocket.receive'" in line


async def test_an_async_consumer_that_hangs_is_cancelled(server: Server) -> None:
    mark = server.mark()
    cancelled = (await server.debug())["cancelled"]
    async with connect(f"{server.ws}/hang/") as ws:
        await ws.send("hang")
        log = await server.wait_log("ran past consumer_timeout", mark)
        await ws.send("after")  # the socket is still served
        assert await ws.recv() == "after"
    assert (await server.debug())["cancelled"] == cancelled + 1
    await server.still_serves()
    line = assert_one_line(log, "ran past consumer_timeout")
    assert line == (
        "ERROR:    consumer tests.apps.bad_input.hang ran past "
        f"consumer_timeout ({CONSUMER_TIMEOUT:g}s) on channel 'websocket.receive'; cancelled"
    )


async def test_a_sync_consumer_that_hangs_is_given_up_on(server: Server) -> None:
    # Its thread cannot be stopped: it runs on until the function returns, and what
    # it sends after the timeout (buffered) is dropped.
    mark = server.mark()
    async with connect(f"{server.ws}/sync-hang/") as ws:
        await ws.send("hang")
        log = await server.wait_log("ran past consumer_timeout", mark)
        await ws.send("during")
        assert await ws.recv() == "during"
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{server.http}/release")).text == "released"
        await server.wait_log("returned after running past consumer_timeout", mark)
        await ws.send("after")
        assert await ws.recv() == "after"  # not "late"
    await server.still_serves()
    line = assert_one_line(log, "ran past consumer_timeout")
    assert "consumer tests.apps.bad_input.sync_hang ran past consumer_timeout (1s)" in line
    assert "a thread cannot be stopped" in line


async def test_a_consumer_that_sends_a_non_dict_reply(server: Server) -> None:
    mark = server.mark()
    async with connect(f"{server.ws}/non-dict/") as ws:
        await ws.send("x")
        log = await server.wait_log("TypeError: message content must be a dict, not str", mark)
        await ws.send("y")  # the socket stays open: this consumer fails again
        await server.wait_log("TypeError", mark, count=2)
    await server.still_serves()
    assert len(lines_with(server.log(mark), "consumer tests.apps.bad_input.non_dict")) == 2
    assert_one_line(log, "consumer tests.apps.bad_input.non_dict failed", traceback=True)


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("both", "both 'text' and 'bytes'"),
        ("unknown-key", "unknown keys ['txt']"),
        ("bad-close", "'close': 99999, which is neither True nor a close code an app may send"),
    ],
)
async def test_malformed_replies_are_dropped_and_the_socket_goes_on(
    server: Server, kind: str, problem: str
) -> None:
    mark = server.mark()
    async with connect(f"{server.ws}/{kind}/") as ws:
        await ws.send("x")
        assert await ws.recv() == "after"
    log = await server.wait_log("dropped a reply", mark)
    await server.still_serves()
    assert assert_one_line(log, "dropped a reply to a socket").endswith(f"it has {problem}")


async def test_names_from_user_data_raise_invalid_channel_name(server: Server) -> None:
    # The consumer gets InvalidChannelName (a ValueError) from Group(...) itself,
    # saying which rule failed; nothing reaches the layer.
    mark = server.mark()
    groups = (await server.debug())["groups"]
    async with connect(f"{server.ws}/group/") as ws:
        await ws.send("my room")
        assert await ws.recv() == (
            "InvalidChannelName: invalid name 'room-my room': a group name may contain only "
            "ASCII letters, digits, '-', '_' and '.'"
        )
        await ws.send("x" * 200)
        assert str(await ws.recv()).endswith("a name must be under 100 characters, this has 205")
    assert (await server.debug())["groups"] == groups
    await server.still_serves()
    assert "Traceback" not in server.log(mark)


async def test_a_connect_consumer_failing_on_a_bad_name_rejects_the_socket(
    server: Server,
) -> None:
    # Uncaught, the error is the app's bug: logged once with its traceback, and the
    # socket it had not accepted is rejected.
    mark = server.mark()
    groups = (await server.debug())["groups"]
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{server.ws}/room/my%20room/")
    assert refused.value.response.status_code == 403
    log = await server.wait_log("InvalidChannelName: invalid name 'room-my room'", mark)
    assert (await server.debug())["groups"] == groups
    await server.still_serves()
    assert_one_line(log, "consumer tests.apps.bad_input.join_room failed", traceback=True)
