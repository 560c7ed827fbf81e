"""The same interface behaviours, in-process, through ``chanlite.testing``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from chanlite import Chanlite, ChanliteError, Group, Message, Routes
from chanlite.auth import USER_ID_KEY, channel_session_user_from_http, http_session_user
from chanlite.sessions import channel_session
from chanlite.testing import ChanliteTestClient
from tests.apps import basic


@pytest.fixture
def client() -> Iterator[ChanliteTestClient]:
    app = Chanlite(basic.routes, app=basic.host, websocket_connect_timeout=0.5, http_timeout=0.5)
    with ChanliteTestClient(app) as test_client:
        yield test_client


def test_echo_text_and_bytes(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/echo/") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "hello"
        ws.send_bytes(b"\x00\x01")
        assert ws.receive_bytes() == b"\x00\x01"


def test_auto_accept(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/auto/") as ws:
        assert ws.receive_text() == "welcome"


def test_explicit_accept_with_subprotocol(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/accept/", subprotocols=["chat.v2"]) as ws:
        assert ws.accepted_subprotocol == "chat.v2"


@pytest.mark.parametrize("path", ["/reject/", "/deny/", "/silent/"])
def test_rejected_sockets(client: ChanliteTestClient, path: str) -> None:
    with (
        pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)),
        client.websocket_connect(path),
    ):
        pass


def test_close_with_code(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/close/") as ws:
        ws.send_text("bye")
        with pytest.raises(WebSocketDisconnect) as caught:
            ws.receive_text()
    assert caught.value.code == 4001


def test_order_numbering_and_disconnect(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/order/") as ws:
        for expected in ("1", "2", "3"):
            ws.send_text("x")
            assert ws.receive_text() == expected
    done = client.channel_receive("orders-done")
    assert done == {"orders": [0, 1, 2, 3, 4]}


def test_groups_visible_to_the_harness(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/room/green/") as one, client.websocket_connect("/room/green/"):
        one.send_text("hi")
        assert one.receive_text() == "green:hi"
        assert len(client.group_channels("room-green")) == 2
    client.run_until_idle()
    assert client.group_channels("room-green") == set()


def test_http_consumer_and_fallthrough(client: ChanliteTestClient) -> None:
    assert client.get("/hello/x").text == "Hello world! You asked for /hello/x (0 bytes)"
    assert client.get("/stream/").text == "one,two,three"
    assert client.get("/host/").text == "host app"
    assert client.get("/never/").status_code == 503


def test_send_to_channel_and_run_until_idle() -> None:
    routes = Routes()
    seen: list[str] = []

    @routes.consumer("jobs")
    def job(message: Message) -> None:
        seen.append(message["name"])
        Group("results").send({"done": message["name"]})

    with ChanliteTestClient(Chanlite(routes)) as client:
        listener = client.new_channel("listener!")
        client.portal.call(client.layer.group_add, "results", listener)
        for name in ("a", "b", "c"):
            client.channel_send("jobs", {"name": name})
        client.run_until_idle()
        assert sorted(seen) == ["a", "b", "c"]
        results = [client.channel_receive("listener!") for _ in range(3)]
    assert sorted(r["done"] for r in results if r) == ["a", "b", "c"]


def test_harness_requires_with_block() -> None:
    client = ChanliteTestClient(Chanlite(Routes()))
    from chanlite import ChanliteError

    with pytest.raises(ChanliteError, match="with"):
        client.channel_send("jobs", {})


# -- sessions and login -------------------------------------------------------------

session_routes = Routes()


@session_routes.consumer("websocket.connect", path=r"^/whoami/$")
@channel_session_user_from_http
async def whoami(message: Message) -> None:
    """Accept, and say who the HTTP session's user is."""
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]
    await Group("whoami").aadd(message.reply_channel)  # type: ignore[arg-type]
    await message.reply_channel.asend({"text": str(message.user.id)})  # type: ignore[union-attr]


@session_routes.consumer("websocket.receive", path=r"^/whoami/$")
@channel_session
async def remember(message: Message) -> None:
    """Keep the last frame in the socket's channel session."""
    message.channel_session["last"] = message["text"]
    await message.reply_channel.asend({"text": "kept"})  # type: ignore[union-attr]


@session_routes.consumer("http.request", path=r"^/visits/$")
@http_session_user
async def visits(message: Message) -> None:
    """Count the user's visits in the HTTP session."""
    session = message.http_session
    assert session is not None
    session["visits"] = session.get("visits", 0) + 1
    body = f"{message.user.id}: {session['visits']}".encode()
    await message.reply_channel.asend({"status": 200, "content": body})  # type: ignore[union-attr]


@pytest.fixture
def session_client() -> Iterator[ChanliteTestClient]:
    app = Chanlite(session_routes, layer="memory://", secret_key="testing-secret-key-0123456789")
    with ChanliteTestClient(app) as test_client:
        yield test_client


def test_login_gives_requests_and_sockets_the_user(session_client: ChanliteTestClient) -> None:
    assert session_client.http_session() is None
    session_client.login("ada")
    assert session_client.get("/visits/").text == "ada: 1"
    assert session_client.get("/visits/").text == "ada: 2"
    assert session_client.http_session() == {USER_ID_KEY: "ada", "visits": 2}
    with session_client.websocket_connect("/whoami/") as ws:
        assert ws.receive_text() == "ada"


def test_login_replaces_the_session_and_logout_ends_it(session_client: ChanliteTestClient) -> None:
    session_client.login("ada")
    session_client.get("/visits/")
    session_client.login("grace")
    assert session_client.http_session() == {USER_ID_KEY: "grace"}
    session_client.logout()
    assert session_client.http_session() is None
    with session_client.websocket_connect("/whoami/") as ws:
        assert ws.receive_text() == "None"  # the anonymous user has no id


def test_a_sockets_channel_session_can_be_read(session_client: ChanliteTestClient) -> None:
    with session_client.websocket_connect("/whoami/") as ws:
        ws.receive_text()
        (reply_channel,) = session_client.group_channels("whoami")
        assert session_client.channel_session(reply_channel) is None
        ws.send_text("hello")
        assert ws.receive_text() == "kept"
        assert session_client.channel_session(reply_channel) == {"last": "hello"}


def test_session_helpers_need_the_running_app() -> None:
    client = ChanliteTestClient(Chanlite(session_routes, layer="memory://"))
    with pytest.raises(ChanliteError, match="'with' block"):
        client.login("ada")
