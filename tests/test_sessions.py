"""Sessions: the Session dict, signed keys, the decorators and SessionMiddleware."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from itsdangerous import TimestampSigner
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from chanlite import Message, channel_session, get_layer, http_session
from chanlite.layers.base import BaseChannelLayer
from chanlite.runtime import AppServices, set_app_services
from chanlite.sessions import SESSION_COOKIE, Session, get_session_store, sign_session_key
from chanlite.sessions.decorators import channel_session_key, signed_session_value
from chanlite.sessions.session import HTTP_SESSION_TTL, unsign_session_key
from chanlite.stores import SessionStore
from chanlite.testing import ChanliteTestClient
from chanlite.worker import Worker
from tests.apps import accounts

KEY = accounts.SECRET_KEY


@pytest.fixture
def client() -> Iterator[ChanliteTestClient]:
    accounts.DISCONNECT_SESSIONS.clear()
    with ChanliteTestClient(accounts.make_app()) as test_client:
        yield test_client


@pytest.fixture
def layer() -> Iterator[BaseChannelLayer]:
    set_app_services(AppServices(secret_key=KEY))
    try:
        yield get_layer("memory://")
    finally:
        set_app_services(None)


# -- Session ------------------------------------------------------------------------


def test_session_notes_every_kind_of_change() -> None:
    changes = [
        lambda s: s.__setitem__("a", 2),
        lambda s: s.__delitem__("a"),
        lambda s: s.pop("a"),
        lambda s: s.popitem(),
        lambda s: s.setdefault("b", 1),
        lambda s: s.update(b=1),
        lambda s: s.clear(),
    ]
    for change in changes:
        session = Session({"a": 1})
        assert session.modified is False
        change(session)
        assert session.modified is True


def test_reading_and_absent_pops_do_not_modify() -> None:
    session = Session({"a": 1})
    assert session.get("a") == 1 and session.pop("missing", None) is None
    assert session.setdefault("a", 5) == 1
    assert session.modified is False


def test_cycle_key_keeps_data_and_remembers_the_old_key() -> None:
    session = Session({"a": 1}, key="old")
    session.cycle_key()
    assert session.key != "old" and session.previous_key == "old" and session["a"] == 1
    channel = Session({"a": 1}, key="p!x", namespace="channel", rotatable=False)
    channel.cycle_key()
    assert channel.key == "p!x" and channel.modified is False


def test_repr_hides_values() -> None:
    assert "hunter2" not in repr(Session({"password": "hunter2"}))


# -- signed keys --------------------------------------------------------------------


def test_signed_key_round_trips() -> None:
    assert unsign_session_key(sign_session_key("abc", KEY), KEY) == "abc"


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "",
        "a.b.c",
        "\u00e9\u00e9.\u00e9",
        sign_session_key("abc", "another-secret-key-0123456789"),
        sign_session_key("abc", KEY)[:-2] + "xx",
        sign_session_key("abc", KEY).replace("abc", "abd"),
    ],
)
def test_invalid_signed_values_count_as_no_session(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chanlite.sessions"):
        assert unsign_session_key(value, KEY) is None
    assert all(record.levelno <= logging.INFO for record in caplog.records)
    if value:
        assert all(value not in record.getMessage() for record in caplog.records)


def test_expired_signed_value_counts_as_no_session() -> None:
    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return super().get_timestamp() - HTTP_SESSION_TTL - 10

    old = OldSigner(KEY, salt="chanlite.session").sign("abc").decode()
    assert unsign_session_key(old, KEY) is None


def test_no_secret_key_means_no_session() -> None:
    assert unsign_session_key(sign_session_key("abc", KEY), None) is None


def test_query_parameter_wins_over_cookie() -> None:
    content: dict[str, Any] = {
        "query_string": "room=1&session_key=from-query",
        "headers": [["cookie", f"{SESSION_COOKIE}=from-cookie; other=1"]],
    }
    assert signed_session_value(content) == "from-query"
    content["query_string"] = "room=1"
    assert signed_session_value(content) == "from-cookie"
    assert signed_session_value({"headers": [["cookie", "other=1"]]}) is None
    assert signed_session_value({}) is None


# -- channel_session ------------------------------------------------------------------


def test_channel_session_per_socket_and_gone_after_disconnect(
    client: ChanliteTestClient,
) -> None:
    with (
        client.websocket_connect("/counter/") as first,
        client.websocket_connect("/sync-counter/") as second,
    ):
        for expected in ("1", "2", "3"):
            first.send_text("x")
            assert first.receive_text() == expected
        second.send_text("x")
        assert second.receive_text() == "101"
        first.send_text("x")
        assert first.receive_text() == "4"
    client.run_until_idle()
    seen = accounts.DISCONNECT_SESSIONS
    assert sorted(session["count"] for session in seen.values()) == [4, 101]
    store = get_session_store(None, client.layer)
    for reply_channel in seen:
        loaded = client.portal.call(store.load, channel_session_key(reply_channel), 60)  # type: ignore[union-attr]
        assert loaded is None


async def _dispatch(
    layer: BaseChannelLayer, consumer: Any, channel: str, content: dict[str, Any]
) -> None:
    from chanlite import Routes

    routes = Routes()
    routes.consumer(channel)(consumer)
    await Worker(routes, layer).dispatch(channel, content)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_channel_session_saved_when_consumer_raises(
    layer: BaseChannelLayer, kind: str
) -> None:
    def body(message: Message) -> None:
        message.channel_session["seen"] = message["n"]
        raise RuntimeError("boom")

    async def async_body(message: Message) -> None:
        body(message)

    consumer = channel_session(async_body if kind == "async" else body)
    await _dispatch(layer, consumer, "work", {"reply_channel": "p!a", "n": 7})
    store = get_session_store(None, layer)
    assert await store.load(channel_session_key("p!a"), 60) == {"seen": 7}


@pytest.mark.anyio
async def test_unmodified_channel_session_is_not_saved(layer: BaseChannelLayer) -> None:
    @channel_session
    async def reader(message: Message) -> None:
        assert message.channel_session.get("x") is None

    await _dispatch(layer, reader, "work", {"reply_channel": "p!b"})
    assert await get_session_store(None, layer).load(channel_session_key("p!b"), 60) is None


@pytest.mark.anyio
async def test_channel_session_needs_a_reply_channel(layer: BaseChannelLayer) -> None:
    @channel_session
    async def consumer(message: Message) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="reply_channel"):
        await consumer(Message({"text": "x"}, "work", layer))


def test_sync_channel_session_needs_a_reply_channel() -> None:
    @channel_session
    def consumer(message: Message) -> None:
        raise AssertionError("not reached")

    with pytest.raises(ValueError, match="reply_channel"):
        consumer(Message({"text": "x"}, "work", get_layer("memory://")))


class CountingStore(SessionStore):
    """A memory store that counts loads and saves."""

    def __init__(self) -> None:
        self.inner = get_session_store("memory://")
        self.loads = self.saves = 0

    async def load(self, key: str, ttl: float) -> dict[str, Any] | None:
        self.loads += 1
        return await self.inner.load(key, ttl)

    async def save(self, key: str, data: dict[str, Any], ttl: float) -> None:
        self.saves += 1
        await self.inner.save(key, data, ttl)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def order_start(self, *args: Any) -> bool:
        return await self.inner.order_start(*args)

    async def order_finish(self, *args: Any) -> list[bytes]:
        return await self.inner.order_finish(*args)


@pytest.mark.anyio
async def test_stacked_twice_loads_and_saves_once() -> None:
    store = CountingStore()
    set_app_services(AppServices(secret_key=KEY, session_store=store))
    try:

        @channel_session
        @channel_session
        async def consumer(message: Message) -> None:
            message.channel_session["n"] = 1

        await _dispatch(get_layer("memory://"), consumer, "work", {"reply_channel": "p!c"})
    finally:
        set_app_services(None)
    assert (store.loads, store.saves) == (1, 1)


# -- http_session ---------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_http_session_from_cookie_or_query(layer: BaseChannelLayer, kind: str) -> None:
    store = get_session_store(None, layer)
    await store.save("http:k1", {"who": "cookie"}, 60)
    await store.save("http:k2", {"who": "query"}, 60)
    seen: list[Any] = []

    def body(message: Message) -> None:
        session = message.http_session
        seen.append(None if session is None else session["who"])

    async def async_body(message: Message) -> None:
        body(message)

    consumer = http_session(async_body if kind == "async" else body)
    cookie = [["cookie", f"{SESSION_COOKIE}={sign_session_key('k1', KEY)}"]]
    query = f"session_key={sign_session_key('k2', KEY)}"
    tampered = [["cookie", f"{SESSION_COOKIE}={sign_session_key('k1', KEY)}x"]]
    for content in (
        {"headers": cookie, "query_string": ""},
        {"headers": cookie, "query_string": query},
        {"headers": [], "query_string": ""},
        {"headers": tampered, "query_string": ""},
        {"headers": [], "query_string": f"session_key={sign_session_key('gone', KEY)}"},
    ):
        await _dispatch(layer, consumer, "http.request", {"reply_channel": "p!h", **content})
    assert seen == ["cookie", "query", None, None, None]


# -- SessionMiddleware ----------------------------------------------------------------


def test_login_sets_a_signed_http_only_lax_cookie(client: ChanliteTestClient) -> None:
    response = client.post("/login", data={"user": "alice"})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie
    assert client.get("/whoami").text == "alice"


def test_cookie_is_secure_over_https() -> None:
    with ChanliteTestClient(accounts.make_app(), base_url="https://testserver") as client:
        cookie = client.post("/login", data={"user": "alice"}).headers["set-cookie"]
    assert "Secure" in cookie


def test_login_rotates_the_key_and_logout_clears(client: ChanliteTestClient) -> None:
    client.post("/login", data={"user": "alice"})
    first = client.cookies[SESSION_COOKIE]
    client.post("/login", data={"user": "bob"})
    second = client.cookies[SESSION_COOKIE]
    assert unsign_session_key(first, KEY) != unsign_session_key(second, KEY)
    # The key known before the second login is worthless now.
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, first)
    assert client.get("/whoami").text == "anonymous"
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, second)
    assert client.get("/whoami").text == "bob"
    response = client.post("/logout")
    assert "Max-Age=0" in response.headers["set-cookie"]
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, second)
    assert client.get("/whoami").text == "anonymous"


@pytest.mark.parametrize("value", ["garbage", "x" * 5000, "a.b.c", "%E2%98%83", '"quoted"'])
def test_bad_cookies_give_an_anonymous_view(client: ChanliteTestClient, value: str) -> None:
    client.cookies.set(SESSION_COOKIE, value)
    response = client.get("/whoami")
    assert (response.status_code, response.text) == (200, "anonymous")


def test_login_is_seen_over_websocket_by_http_session(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/http-session/") as ws:
        assert ws.receive_text() == "none"
    client.post("/login", data={"user": "carol"})
    with client.websocket_connect("/http-session/") as ws:
        assert ws.receive_text() == "carol"
    signed = client.cookies[SESSION_COOKIE]
    client.cookies.clear()
    with client.websocket_connect(f"/http-session/?session_key={signed}") as ws:
        assert ws.receive_text() == "carol"


def test_anonymous_socket_is_refused(client: ChanliteTestClient) -> None:
    with (
        pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)),
        client.websocket_connect("/me/"),
    ):
        pass
