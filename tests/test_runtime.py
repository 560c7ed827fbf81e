"""The runtime: apps in one process keep their own settings, found through context,
and the blocking bridge runs each call on the right event loop."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from chanlite import Chanlite, Channel, Group, Message, Routes
from chanlite.auth import USER_ID_KEY, channel_session_user_from_http, http_session_user, login
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.runtime import current_app
from chanlite.sessions import SESSION_COOKIE, SessionMiddleware, get_session_store
from chanlite.sessions.decorators import HTTP_NAMESPACE
from chanlite.sessions.session import HTTP_SESSION_TTL, store_key, unsign_session_key
from chanlite.stores import SessionStore
from chanlite.testing import ChanliteTestClient


def member_app(name: str, store: SessionStore) -> Chanlite:
    """An app named ``name``: a login view, a sync view that tells the ``members``
    group, and a socket that joins the group and answers ``"<name> <user>"``; its
    user loader names the app too."""
    routes = Routes()

    @routes.consumer("websocket.connect", path=r"^/me/$")
    @channel_session_user_from_http
    def me(message: Message) -> None:
        assert message.reply_channel is not None
        Group("members").add(message.reply_channel)
        message.reply_channel.send({"text": f"{name} {message.user}"})

    def log_in(request: Request) -> Response:
        login(request.session, request.query_params["user"])
        return PlainTextResponse("logged in")

    def announce(request: Request) -> Response:
        Group("members").send({"text": f"{name} news"})  # a sync view: in a thread
        return PlainTextResponse("sent")

    site = Starlette(routes=[Route("/login", log_in), Route("/announce", announce)])
    site.add_middleware(SessionMiddleware)
    return Chanlite(
        routes,
        app=site,
        layer="memory://",
        secret_key=f"{name}-secret-key-0123456789",
        session_store=store,
        user_loader=lambda user_id: f"{name}:{user_id}",
    )


def stored_http_session(client: ChanliteTestClient, store: SessionStore, key: str) -> Any:
    """What ``store`` holds for HTTP session ``key``, read on ``client``'s event loop."""
    assert client.portal is not None
    return client.portal.call(store.load, store_key(HTTP_NAMESPACE, key), HTTP_SESSION_TTL)


def test_two_apps_in_one_process_keep_their_own_layer_key_store_and_loader() -> None:
    store_a, store_b = get_session_store("memory://"), get_session_store("memory://")
    app_a, app_b = member_app("a", store_a), member_app("b", store_b)
    with ChanliteTestClient(app_a) as a, ChanliteTestClient(app_b) as b:
        a.get("/login", params={"user": "ada"})
        b.get("/login", params={"user": "bob"})
        with a.websocket_connect("/me/") as ws_a, b.websocket_connect("/me/") as ws_b:
            assert ws_a.receive_text() == "a a:ada"  # a's store, key and loader
            assert ws_b.receive_text() == "b b:bob"
            a.run_until_idle()
            b.run_until_idle()
            members_a, members_b = a.group_channels("members"), b.group_channels("members")
            assert len(members_a) == len(members_b) == 1
            assert not members_a & members_b  # each group lives on its own app's layer
            a.get("/announce")
            assert ws_a.receive_text() == "a news"
            b.get("/announce")
            assert ws_b.receive_text() == "b news"
        cookie_a = a.cookies[SESSION_COOKIE]
        key_a = unsign_session_key(cookie_a, app_a.secret_key)
        assert key_a is not None
        assert stored_http_session(a, store_a, key_a) == {USER_ID_KEY: "ada"}
        assert stored_http_session(b, store_b, key_a) is None  # not in b's store
        assert unsign_session_key(cookie_a, app_b.secret_key) is None  # nor b's key
        # a's cookie is worth nothing to b: b's socket is anonymous.
        b.cookies.clear()
        b.cookies.set(SESSION_COOKIE, cookie_a)
        with b.websocket_connect("/me/") as ws_b:
            assert ws_b.receive_text() == "b <AnonymousUser>"


def test_a_test_client_makes_its_app_current_in_its_block() -> None:
    first, second = Chanlite([], layer="memory://"), Chanlite([], layer="memory://")
    assert current_app() is None
    with ChanliteTestClient(first) as client:
        assert Channel("x").layer is first.layer
        with ChanliteTestClient(second):
            assert Group("g").layer is second.layer
        Group("g").add("p!one")  # a blocking call, from the test's own thread
        assert client.group_channels("g") == {"p!one"}
    assert current_app() is None


def test_the_host_lifespan_runs_as_code_of_its_app() -> None:
    seen: list[Any] = []

    @contextlib.asynccontextmanager
    async def lifespan(site: Starlette) -> AsyncIterator[None]:
        seen.append(Group("g").layer)
        yield

    app = Chanlite([], app=Starlette(lifespan=lifespan), layer="memory://")
    with ChanliteTestClient(app), ChanliteTestClient(Chanlite([], layer="memory://")):
        assert seen == [app.layer]


def test_a_mounting_site_finds_the_app_through_its_middleware() -> None:
    routes = Routes()

    @routes.consumer("websocket.connect", path=r"^/whoami/$")
    @http_session_user
    def whoami(message: Message) -> None:
        assert message.reply_channel is not None
        message.reply_channel.send({"text": str(message.user.id)})

    live = Chanlite(routes, layer="memory://", secret_key="mounted-secret-key-0123456789")

    async def log_in(request: Request) -> Response:
        login(request.session, request.query_params["name"])
        return PlainTextResponse("logged in")

    @contextlib.asynccontextmanager
    async def lifespan(site: Starlette) -> AsyncIterator[None]:
        yield  # the first request starts the app
        await live.shutdown()

    site = Starlette(routes=[Route("/login", log_in), Mount("/live", app=live)], lifespan=lifespan)
    site.add_middleware(SessionMiddleware)
    site.add_middleware(live.middleware)
    with TestClient(site) as client:
        client.get("/login", params={"name": "grace"})  # in the app's store, with its key
        with client.websocket_connect("/live/whoami/") as ws:
            assert ws.receive_text() == "grace"


class LoopRecordingLayer(InMemoryChannelLayer):
    """A memory layer that records the event loop each group_add ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.loops: list[asyncio.AbstractEventLoop] = []

    async def group_add(self, group: str, channel: str) -> None:
        self.loops.append(asyncio.get_running_loop())
        await super().group_add(group, channel)


def test_blocking_calls_in_a_def_consumer_run_on_its_workers_loop() -> None:
    routes = Routes()
    worker_loops: list[asyncio.AbstractEventLoop] = []

    @routes.consumer("work")
    async def note_loop(message: Message) -> None:
        worker_loops.append(asyncio.get_running_loop())

    @routes.consumer("join")
    def join(message: Message) -> None:
        Group("g").add(message["channel"])

    layer = LoopRecordingLayer()
    with ChanliteTestClient(Chanlite(routes, layer=layer)) as client:
        client.channel_send("work", {})
        client.channel_send("join", {"channel": "p!x"})
        client.run_until_idle()
    assert layer.loops == worker_loops


#: A script with no app, whose blocking calls run on the process's portal. Its exit
#: handler, registered before chanlite's and so run after it, lists the threads still
#: alive: the portal's must be gone by then.
SCRIPT = """
import atexit
import threading


def threads_left():
    print(sorted(t.name for t in threading.enumerate() if t is not threading.main_thread()))


atexit.register(threads_left)

from chanlite import Channel, Group

Group("g").add("p!x")
Channel("out").send({"n": 1})
print(sorted(Group("g").channels()))
"""


def test_a_script_needs_no_event_loop_and_exits_cleanly() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["['p!x']", "[]"]
    assert result.stderr == ""
