"""Security promises, one test each (docs/security.md maps each threat to its tests).

Where an existing test already proves a promise it is named here and not repeated;
the tests below add what was missing:

* secret key: ``tests/test_app.py`` — ``test_no_worker_without_key_refuses``,
  ``test_cross_process_layer_without_key_refuses``, ``test_placeholder_keys_refused``,
  ``test_placeholder_key_allowed_in_debug``,
  ``test_single_process_without_key_gets_random_key_and_warning``;
* signed cookies: ``tests/test_sessions.py`` — ``test_login_sets_a_signed_http_only_lax_cookie``,
  ``test_cookie_is_secure_over_https``, ``test_invalid_signed_values_count_as_no_session``,
  ``test_expired_signed_value_counts_as_no_session``,
  ``test_bad_cookies_give_an_anonymous_view``; ``tests/test_auth.py`` —
  ``test_tampered_cookie_is_anonymous``; ``tests/e2e/test_accounts.py`` —
  ``test_bad_cookie_gives_an_anonymous_user``;
* key rotation: ``tests/test_sessions.py`` — ``test_login_rotates_the_key_and_logout_clears``;
* origins: ``tests/e2e/test_serve.py`` — ``test_origin_rejection``;
* names: ``tests/test_names.py``, ``tests/property/test_names.py``.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from chanlite import Chanlite, Channel, Group, InvalidChannelName, Message, Routes
from chanlite.auth import USER_ID_KEY, login
from chanlite.config import MIN_SECRET_KEY_LENGTH, resolve_secret_key
from chanlite.exceptions import ConfigurationError
from chanlite.layers.base import BaseChannelLayer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.layers.redis import RedisChannelLayer
from chanlite.layers.sqlite import SQLiteChannelLayer
from chanlite.sessions import SESSION_COOKIE, SessionMiddleware
from chanlite.sessions.session import unsign_session_key
from chanlite.testing import ChanliteTestClient
from tests.apps import accounts
from tests.e2e.server import serve

KEY = accounts.SECRET_KEY
REFUSED = (WebSocketDisconnect, WebSocketDenialResponse)
# The random part of a new channel name: 16 bytes as unpadded URL-safe base64.
RANDOM_PART = re.compile(r"[A-Za-z0-9_-]{22}")


@pytest.fixture
def client() -> Iterator[ChanliteTestClient]:
    with ChanliteTestClient(accounts.make_app()) as test_client:
        yield test_client


# -- secret key -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        ("x" * (MIN_SECRET_KEY_LENGTH - 1), False),
        ("x" * MIN_SECRET_KEY_LENGTH, True),
        ("changeme", False),
        ("SECRET", False),
    ],
)
def test_a_short_or_placeholder_key_is_refused_from_the_environment_too(
    key: str, accepted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANLITE_SECRET_KEY", key)
    app = Chanlite(Routes(), workers=False)
    if accepted:
        app.check()
        assert app.secret_key == key
    else:
        with pytest.raises(ConfigurationError, match="placeholder or shorter"):
            app.check()


def test_debug_does_not_waive_the_key_across_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHANLITE_SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="secret key is required"):
        Chanlite(Routes(), workers=False, debug=True).check()
    with pytest.raises(ConfigurationError, match="secret key is required"):
        resolve_secret_key(None, spans_processes=True, debug=True)


# -- cookies ------------------------------------------------------------------------


def test_the_cookie_carries_only_a_signed_random_key(client: ChanliteTestClient) -> None:
    user = "user-cookie-5d2c"
    client.post("/login", data={"user": user})
    value = client.cookies[SESSION_COOKIE]
    assert user not in value  # the session data stays on the server
    key = unsign_session_key(value, KEY)
    assert key is not None and len(base64.urlsafe_b64decode(key + "=")) == 32
    assert unsign_session_key(value, "another-secret-key-0123456789") is None


# -- session keys -------------------------------------------------------------------


def _fixation_app() -> Chanlite:
    async def visit(request: Request) -> Response:
        request.session["cart"] = ["book"]
        return PlainTextResponse("visited")

    async def sign_in(request: Request) -> Response:
        login(request.session, "alice")
        return PlainTextResponse("logged in")

    async def whoami(request: Request) -> Response:
        session = request.session
        return PlainTextResponse(f"{session.get(USER_ID_KEY)} {session.get('cart')}")

    host = Starlette(
        routes=[
            StarletteRoute("/visit", visit),
            StarletteRoute("/login", sign_in, methods=["POST"]),
            StarletteRoute("/whoami", whoami),
        ]
    )
    host.add_middleware(SessionMiddleware)
    return Chanlite(Routes(), app=host, secret_key=KEY)


def test_a_session_key_planted_before_login_is_worthless_after() -> None:
    with ChanliteTestClient(_fixation_app()) as client:
        client.get("/visit")
        planted = client.cookies[SESSION_COOKIE]  # what an attacker would plant
        client.post("/login")
        assert unsign_session_key(client.cookies[SESSION_COOKIE], KEY) != unsign_session_key(
            planted, KEY
        )
        assert client.get("/whoami").text == "alice ['book']"  # the data moved along
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, planted)
        assert client.get("/whoami").text == "None None"


# -- origins ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_only_an_exactly_listed_origin_may_open_a_socket() -> None:
    # tests.apps.basic:guarded allows https://good.example only.
    with serve("tests.apps.basic:guarded") as served:
        for origin in (None, "http://good.example", "https://good.example.evil.example"):
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"{served.ws}/echo/", origin=origin)  # type: ignore[arg-type]
            assert refused.value.response.status_code == 403, origin
        async with connect(f"{served.ws}/echo/", origin="https://good.example") as ws:  # type: ignore[arg-type]
            await ws.send("listed")
            assert await ws.recv() == "listed"


def test_a_refused_origin_runs_no_consumer() -> None:
    connects: list[str] = []
    routes = Routes()

    @routes.consumer("websocket.connect")
    async def record(message: Message) -> None:
        connects.append(message["path"])
        await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]

    app = Chanlite(routes, secret_key=KEY, allowed_origins=["https://good.example"])
    with ChanliteTestClient(app) as client:
        with (
            pytest.raises(REFUSED),
            client.websocket_connect("/evil/", headers={"origin": "https://evil.example"}),
        ):
            pass
        with client.websocket_connect("/good/", headers={"origin": "https://good.example"}):
            pass
        client.run_until_idle()
    assert connects == ["/good/"]


# -- reply channels -----------------------------------------------------------------


@pytest.mark.anyio
async def test_new_channel_names_carry_128_random_bits() -> None:
    layer = InMemoryChannelLayer()
    names = [await layer.new_channel("p!") for _ in range(10_000)]
    assert len(set(names)) == len(names)
    for name in names:
        prefix, _, local = name.partition("!")
        assert prefix == "p" and RANDOM_PART.fullmatch(local), name
        assert len(base64.urlsafe_b64decode(local + "==")) == 16
    # Every built-in layer makes names this way.
    for layer_class in (InMemoryChannelLayer, RedisChannelLayer, SQLiteChannelLayer):
        assert layer_class.new_channel is BaseChannelLayer.new_channel


def test_a_socket_reply_channel_carries_the_random_part(client: ChanliteTestClient) -> None:
    names = set()
    for _ in range(3):
        with client.websocket_connect("/counter/") as ws:
            ws.send_text("name")
            names.add(ws.receive_text())
    assert len(names) == 3
    for name in names:
        assert re.fullmatch(r"interface\.[0-9a-f]{12}!" + RANDOM_PART.pattern, name), name


# -- names from user input ------------------------------------------------------------


class SpyLayer(InMemoryChannelLayer):
    """A memory layer that notes every call that would reach the backend."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        self.calls.append(("send", channel))
        await super().send_encoded(channel, payload)

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        self.calls.append(("group_send", group))
        await super().group_send_encoded(group, payload)

    async def group_add(self, group: str, channel: str) -> None:
        self.calls.append(("group_add", group))
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        self.calls.append(("group_discard", group))
        await super().group_discard(group, channel)


BAD_NAMES = ["bad name", "", "chat-é", "a" * 100, "room\n", "../etc", "a?b?c", "x" + "\x00"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_name_is_refused_before_the_layer_is_called(name: str) -> None:
    spy = SpyLayer()
    with pytest.raises(InvalidChannelName, match="invalid name"):
        Group(name, layer=spy)
    with pytest.raises(InvalidChannelName, match="invalid name"):
        Channel(name, layer=spy)
    group = Group("room", layer=spy)
    with pytest.raises(InvalidChannelName, match="invalid name"):
        group.add(name)
    with pytest.raises(InvalidChannelName, match="invalid name"):
        group.discard(name)
    assert spy.calls == []


@pytest.mark.anyio
@pytest.mark.parametrize("name", BAD_NAMES)
async def test_the_layer_api_checks_names_before_its_backend(name: str) -> None:
    spy = SpyLayer()
    with pytest.raises(InvalidChannelName):
        await spy.send(name, {"text": "hi"})
    with pytest.raises(InvalidChannelName):
        await spy.group_send(name, {"text": "hi"})
    assert spy.calls == []


def test_a_name_built_from_the_path_is_checked_before_the_layer() -> None:
    # The chat example of the docs: [\w-] also matches non-ASCII letters, which names refuse.
    routes = Routes()

    @routes.consumer("websocket.connect", path=r"^/chat/(?P<room>[\w-]+)/$")
    async def join(message: Message, room: str) -> None:
        await Group(f"chat-{room}").aadd(message.reply_channel)  # type: ignore[arg-type]
        await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]

    spy = SpyLayer()
    with ChanliteTestClient(Chanlite(routes, layer=spy, secret_key=KEY)) as client:
        with pytest.raises(REFUSED), client.websocket_connect("/chat/café/"):
            pass
        with client.websocket_connect("/chat/lobby/"):
            pass
        client.run_until_idle()
    assert [call for call in spy.calls if call[0] == "group_add"] == [("group_add", "chat-lobby")]


# -- logs -----------------------------------------------------------------------------


def test_no_content_or_session_data_in_logs_at_info_or_above(
    client: ChanliteTestClient, caplog: pytest.LogCaptureFixture
) -> None:
    user, text = "user-logs-9e4b", "chat-text-that-must-not-be-logged-71c3"
    garbage = "garbage-cookie-value-4a8f"
    with caplog.at_level(logging.DEBUG):
        client.post("/login", data={"user": user})
        signed = client.cookies[SESSION_COOKIE]
        with client.websocket_connect("/me/") as ws:
            ws.send_text(text)
            assert ws.receive_text().endswith(f":{text}")
        with client.websocket_connect("/counter/") as ws:
            ws.send_text(text)
            assert ws.receive_text() == "1"
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, signed[:-3] + "xyz")
        with pytest.raises(REFUSED), client.websocket_connect("/me/"):
            pass
        client.cookies.set(SESSION_COOKIE, garbage)
        assert client.get("/whoami").text == "anonymous"
        client.run_until_idle()
    secrets = [user, text, signed, signed.split(".")[0], garbage]
    shown = [record for record in caplog.records if record.levelno >= logging.INFO]
    # The bad cookies were noticed at INFO, so the check below has lines to look at.
    assert any("ignored a session value" in record.getMessage() for record in shown)
    for record in shown:
        line = logging.Formatter().format(record)
        assert not [secret for secret in secrets if secret in line], line


@pytest.mark.anyio
async def test_serve_output_never_shows_a_session_key_parameter() -> None:
    with serve("tests.apps.accounts:app") as served:
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{served.http}/login", data={"user": "alice"})
        signed = response.cookies[SESSION_COOKIE]
        async with connect(f"{served.ws}/me/?session_key={signed}") as ws:
            await ws.send("hello")
            assert await ws.recv() == "Alice:hello"
        _, output = served.terminate()
    assert signed not in output
    assert "session_key=[hidden]" in output  # the request line was logged, without it
