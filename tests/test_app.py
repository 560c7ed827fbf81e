"""The Chanlite app: settings, secret keys, embedding, mounting and backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from chanlite import Chanlite, Message, Routes
from chanlite.config import resolve_secret_key
from chanlite.exceptions import ConfigurationError
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.testing import ChanliteTestClient
from tests.conftest import TrackedConnection

GOOD_KEY = "a-long-enough-random-secret-key-for-tests"


def echo_routes() -> Routes:
    routes = Routes()

    @routes.consumer("websocket.receive")
    async def echo(message: Message) -> None:
        await message.reply_channel.asend({"text": f"{message['path']}:{message['text']}"})  # type: ignore[union-attr]

    return routes


# -- secret keys ----------------------------------------------------------------


def test_single_process_without_key_gets_random_key_and_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHANLITE_SECRET_KEY", raising=False)
    app = Chanlite(Routes())
    with caplog.at_level(logging.WARNING, logger="chanlite"):
        app.check()
    assert app.secret_key is not None and len(app.secret_key) >= 32
    assert "CHANLITE_SECRET_KEY" in caplog.text


def test_random_keys_differ_per_process_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHANLITE_SECRET_KEY", raising=False)
    first, _ = resolve_secret_key(None, spans_processes=False, debug=False)
    second, _ = resolve_secret_key(None, spans_processes=False, debug=False)
    assert first != second


def test_no_worker_without_key_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHANLITE_SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="CHANLITE_SECRET_KEY"):
        Chanlite(Routes(), workers=False).check()


def test_cross_process_layer_without_key_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    class SharedLayer(InMemoryChannelLayer):
        """A layer other processes can reach (as far as the app can tell)."""

        schemes = ("shared",)
        process_local = False

    monkeypatch.delenv("CHANLITE_SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="spans processes"):
        Chanlite(Routes(), layer=SharedLayer()).check()


@pytest.mark.parametrize("key", ["secret", "changeme", "short-key"])
def test_placeholder_keys_refused(key: str) -> None:
    with pytest.raises(ConfigurationError, match="placeholder"):
        Chanlite(Routes(), secret_key=key).check()


def test_placeholder_key_allowed_in_debug() -> None:
    app = Chanlite(Routes(), secret_key="changeme", debug=True)
    app.check()
    assert app.secret_key == "changeme"


def test_secret_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANLITE_SECRET_KEY", GOOD_KEY)
    app = Chanlite(Routes(), workers=False)
    app.check()
    assert app.secret_key == GOOD_KEY


def test_layer_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANLITE_LAYER", "memory://?capacity=7")
    with ChanliteTestClient(Chanlite(Routes())) as client:
        assert client.layer.capacity == 7


def test_bad_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="http_timeout"):
        Chanlite(Routes(), http_timeout=0)
    with pytest.raises(ConfigurationError, match="allowed_origins"):
        Chanlite(Routes(), allowed_origins=["example.com"])
    with pytest.raises(ConfigurationError, match="threads"):
        Chanlite(Routes(), threads=0).check()
    with pytest.raises(ConfigurationError, match="consumer_timeout"):
        Chanlite(Routes(), consumer_timeout=0)


def test_consumer_timeout_reaches_the_workers(caplog: pytest.LogCaptureFixture) -> None:
    routes = Routes()

    started = threading.Event()

    @routes.consumer("websocket.receive")
    async def hang(message: Message) -> None:
        started.set()
        await asyncio.Event().wait()

    app = Chanlite(routes, secret_key=GOOD_KEY, consumer_timeout=0.5)
    assert Chanlite(Routes()).consumer_timeout == 60
    with (
        caplog.at_level(logging.ERROR, logger="chanlite.worker"),
        ChanliteTestClient(app) as client,
    ):
        assert app.worker is not None and app.worker.consumer_timeout == 0.5
        with client.websocket_connect("/") as ws:
            ws.send_text("hang")
            assert started.wait(5)
            client.run_until_idle()  # the consumer was cancelled: nothing is in flight
    assert "hang ran past consumer_timeout (0.5s) on channel 'websocket.receive'" in caplog.text


# -- embedding ------------------------------------------------------------------


def make_host(events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("host startup")
        yield
        events.append("host shutdown")

    class Stamp(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):  # type: ignore[no-untyped-def]
            response = await call_next(request)
            response.headers["x-host"] = "yes"
            return response

    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("host home")

    return Starlette(
        routes=[StarletteRoute("/", home)], lifespan=lifespan, middleware=[Middleware(Stamp)]
    )


def test_host_app_routes_lifespan_and_middleware_keep_working() -> None:
    events: list[str] = []
    app = Chanlite(echo_routes(), app=make_host(events))
    with ChanliteTestClient(app) as client:
        assert events == ["host startup"]
        response = client.get("/")
        assert (response.text, response.headers["x-host"]) == ("host home", "yes")
        with client.websocket_connect("/ws/") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "/ws/:hi"
    assert events == ["host startup", "host shutdown"]


def test_standalone_unrouted_http_is_404() -> None:
    with ChanliteTestClient(Chanlite(echo_routes())) as client:
        assert client.get("/anything").status_code == 404


def test_mounted_app_starts_on_first_request_with_relative_paths() -> None:
    chan = Chanlite(echo_routes())
    outer = Starlette(routes=[Mount("/live", app=chan)])
    with TestClient(outer) as client, client.websocket_connect("/live/room/") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "/room/:hello"


# -- backpressure and limits ------------------------------------------------------


def test_burst_of_frames_waits_for_busy_workers_instead_of_closing() -> None:
    routes = Routes()

    @routes.consumer("websocket.receive")
    def slow_echo(message: Message) -> None:
        threading.Event().wait(0.002)  # a busy consumer
        message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]

    app = Chanlite(routes, layer="memory://?capacity=2", threads=1)
    with ChanliteTestClient(app) as client, client.websocket_connect("/") as ws:
        for number in range(60):
            ws.send_text(str(number))
        received = [ws.receive_text() for _ in range(60)]
    assert sorted(received, key=int) == [str(n) for n in range(60)]


def test_frames_that_never_fit_close_with_1013() -> None:
    release = threading.Event()
    routes = Routes()

    @routes.consumer("websocket.receive")
    def stuck(message: Message) -> None:
        release.wait(10)

    app = Chanlite(routes, layer="memory://?capacity=1", threads=1, receive_full_timeout=0.2)
    try:
        with ChanliteTestClient(app) as client, client.websocket_connect("/") as ws:
            for number in range(5):
                ws.send_text(str(number))
            with pytest.raises(WebSocketDisconnect) as caught:
                ws.receive_text()
            assert caught.value.code == 1013
            release.set()
    finally:
        release.set()


def test_full_connect_channel_gives_503() -> None:
    app = Chanlite(
        Routes(),
        layer="memory://?capacity=1",
        workers=False,
        secret_key=GOOD_KEY,
        websocket_connect_timeout=0.2,
    )
    with ChanliteTestClient(app) as client:
        client.channel_send("websocket.connect", {"filler": True})
        with pytest.raises(WebSocketDenialResponse) as caught, client.websocket_connect("/"):
            pass
    assert caught.value.status_code == 503


def test_full_http_channel_gives_503(caplog: pytest.LogCaptureFixture) -> None:
    routes = Routes()

    @routes.consumer("http.request")
    def never(message: Message) -> None:
        """Never runs: there are no workers."""

    app = Chanlite(routes, layer="memory://?capacity=1", workers=False, secret_key=GOOD_KEY)
    with ChanliteTestClient(app) as client:
        client.channel_send("http.request", {"filler": True})
        with caplog.at_level(logging.WARNING, logger="chanlite.server"):
            response = client.get("/")
    assert response.status_code == 503
    assert "http.request is full" in caplog.text


def test_replies_for_gone_reply_channels_are_dropped() -> None:
    with ChanliteTestClient(Chanlite(echo_routes())) as client:
        interface = client.chanlite.interface
        assert interface is not None
        client.channel_send(f"{interface.prefix}gone", {"text": "nobody"})
        with client.websocket_connect("/still/") as ws:
            ws.send_text("serving")
            assert ws.receive_text() == "/still/:serving"


def test_a_failed_startup_raises_in_the_test_client() -> None:
    """The lifespan reports the failure and raises it, as Starlette's router does, so
    a test client fails at once instead of serving requests to an app never started."""
    app = Chanlite([], layer="redis://127.0.0.1:6379/13", workers=False)  # no secret key
    with pytest.raises(ConfigurationError, match="secret key is required"), ChanliteTestClient(app):
        pass


# -- shutdown ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_failed_shutdown_still_stops_the_reader_and_closes_the_store_and_layer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_connections: list[TrackedConnection],
) -> None:
    app = Chanlite(Routes(), layer=f"sqlite:///{tmp_path / 'app.db'}", secret_key=GOOD_KEY)
    tasks_before = asyncio.all_tasks()
    await app.startup()
    assert app.interface is not None

    async def disk_error() -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(app.interface, "drain_replies", disk_error)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        await app.shutdown()
    assert asyncio.all_tasks() == tasks_before  # the reply reader and the worker ended
    assert len(sqlite_connections) == 2  # the layer's and the session store's
    assert all(conn.was_closed for conn in sqlite_connections)


@pytest.mark.parametrize("layer", ["memory://", "sqlite"])
def test_an_app_stopped_and_started_again_serves_on_a_fresh_layer(
    layer: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'layer.db'}" if layer == "sqlite" else layer
    routes = Routes()

    @routes.consumer("websocket.receive")
    async def echo(message: Message) -> None:
        assert message.reply_channel is not None
        await message.reply_channel.asend({"text": message["text"]})

    app = Chanlite(routes, layer=url, secret_key="restarted-app-secret-key-0123456789")
    for attempt in ("first", "second"):
        with TestClient(app) as client, client.websocket_connect("/") as ws:
            ws.send_text(attempt)
            assert ws.receive_text() == attempt
    assert app.layer is None  # the closed one is not kept for a third start


def test_the_apps_history_options_reach_the_layer_it_builds() -> None:
    app = Chanlite(Routes([]), layer="memory://", group_history={"chat-*": 10}, history_ttl=30)
    app.check()
    assert app.layer is not None
    assert app.layer.history_size("chat-lobby") == 10 and app.layer.history_size("news") == 0
    assert app.layer.history_ttl == 30
    app.configure(layer="memory://?capacity=5")  # as `chanlite serve --layer URL` does
    app.check()
    assert app.layer.history_size("chat-lobby") == 10


def test_history_options_with_a_layer_instance_are_refused() -> None:
    from chanlite.layers import get_layer

    app = Chanlite(Routes([]), layer=get_layer("memory://"), group_history={"chat-*": 10})
    with pytest.raises(ConfigurationError, match="layer options cannot be given"):
        app.check()
