"""chanlite.auth: login, logout, transfer_user, the user decorators and user_loader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from chanlite import Message, Routes, get_layer
from chanlite.auth import (
    USER_ID_KEY,
    AnonymousUser,
    User,
    channel_session_user,
    http_session_user,
    login,
    logout,
    transfer_user,
)
from chanlite.runtime import AppServices, set_app_services
from chanlite.sessions import SESSION_COOKIE, Session, get_session_store, sign_session_key
from chanlite.testing import ChanliteTestClient
from chanlite.worker import Worker
from tests.apps import accounts

KEY = accounts.SECRET_KEY


@pytest.fixture
def client() -> Iterator[ChanliteTestClient]:
    accounts.LOADER_CALLS.clear()
    with ChanliteTestClient(accounts.make_app()) as test_client:
        yield test_client


def test_login_logout_on_plain_dicts_and_sessions() -> None:
    plain: dict[str, Any] = {"other": 1}
    login(plain, "alice")
    assert plain == {"other": 1, USER_ID_KEY: "alice"}
    logout(plain)
    assert plain == {}
    session = Session({"other": 1}, key="before")
    login(session, 7)
    assert session[USER_ID_KEY] == 7 and session.key != "before"
    logout(session)
    assert dict(session) == {} and session.modified


def test_transfer_user_copies_only_a_logged_in_user() -> None:
    target: dict[str, Any] = {}
    transfer_user({}, target)
    transfer_user(None, target)
    assert target == {}
    transfer_user({USER_ID_KEY: "bob", "cart": [1]}, target)
    assert target == {USER_ID_KEY: "bob"}


def test_anonymous_and_id_only_users() -> None:
    anonymous = AnonymousUser()
    assert not anonymous.is_authenticated and anonymous.is_anonymous and anonymous.id is None
    assert anonymous == AnonymousUser()
    user = User(3)
    assert user.is_authenticated and user.id == 3 and user == User(3) and user != User(4)


def test_http_login_then_websocket_user(client: ChanliteTestClient) -> None:
    client.post("/login", data={"user": "alice"})
    with client.websocket_connect("/me/") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "Alice:hi"
        ws.send_text("again")
        assert ws.receive_text() == "Alice:again"
    client.run_until_idle()
    # connect + two receives: the loader ran once per message, not once per decorator.
    assert accounts.LOADER_CALLS == {"alice": 3}


@pytest.mark.parametrize("user", ["ghost", None])
def test_unknown_or_missing_user_is_refused(client: ChanliteTestClient, user: str | None) -> None:
    if user is not None:
        client.post("/login", data={"user": user})
    with (
        pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)),
        client.websocket_connect("/me/"),
    ):
        pass


def test_tampered_cookie_is_anonymous(client: ChanliteTestClient) -> None:
    client.post("/login", data={"user": "alice"})
    value = client.cookies[SESSION_COOKIE]
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, ("A" if value[0] != "A" else "B") + value[1:])
    with (
        pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)),
        client.websocket_connect("/me/"),
    ):
        pass


@pytest.mark.anyio
@pytest.mark.parametrize("loader_kind", ["sync", "async", "none"])
@pytest.mark.parametrize("consumer_kind", ["sync", "async"])
async def test_user_decorators(loader_kind: str, consumer_kind: str) -> None:
    def sync_loader(user_id: Any) -> dict[str, Any]:
        return {"name": user_id}

    async def async_loader(user_id: Any) -> dict[str, Any]:
        return {"name": user_id}

    loaders = {"sync": sync_loader, "async": async_loader, "none": None}
    layer = get_layer("memory://")
    store = get_session_store(None, layer)
    set_app_services(AppServices(KEY, store, loaders[loader_kind]))
    try:
        await store.save("http:k", {USER_ID_KEY: "dora"}, 60)
        await store.save("channel:p!s", {USER_ID_KEY: "eve"}, 60)
        users = await _users_seen(layer, consumer_kind)
    finally:
        set_app_services(None)
    if loader_kind == "none":
        assert users == [User("dora"), User("eve"), AnonymousUser()]
    else:
        assert users == [{"name": "dora"}, {"name": "eve"}, AnonymousUser()]


async def _users_seen(layer: Any, consumer_kind: str) -> list[Any]:
    seen: list[Any] = []

    def record(message: Message) -> None:
        seen.append(message.user)

    async def arecord(message: Message) -> None:
        seen.append(message.user)

    body = arecord if consumer_kind == "async" else record
    routes = Routes()
    routes.consumer("http.request")(http_session_user(body))
    routes.consumer("websocket.receive")(channel_session_user(body))
    worker = Worker(routes, layer)
    cookie = [["cookie", f"{SESSION_COOKIE}={sign_session_key('k', KEY)}"]]
    await worker.dispatch("http.request", {"reply_channel": "p!h", "headers": cookie})
    await worker.dispatch("websocket.receive", {"reply_channel": "p!s", "order": 1, "text": ""})
    await worker.dispatch("websocket.receive", {"reply_channel": "p!t", "order": 1, "text": ""})
    return seen
