"""Sessions, auth and ordering over a real interface: a login view and socket paths.

* ``POST /login`` (form ``user``) logs in through ``SessionMiddleware``; ``POST
  /logout`` logs out; ``GET /whoami`` answers the view's user id or ``anonymous``.
* ``/me/``: ``channel_session_user_from_http`` on connect (anonymous sockets are
  refused), ``channel_session_user`` on receive, which answers ``"<user>:<text>"``.
* ``/counter/``: a ``channel_session`` counter per socket (``async def``); the frame
  ``name`` answers the socket's reply channel; the disconnect consumer records the
  session it saw.
* ``/sync-counter/``: the same with ``def`` consumers.
* ``/http-session/``: ``http_session`` on connect answers the session's user or
  ``none``.
* ``/ordered/``: ``enforce_ordering`` receive consumer (``def``, sleeps a random
  0-20 ms), records the frame numbers it ran per socket in :data:`RUNS` and
  answers ``"<number>:<worker pid>"``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route as StarletteRoute

from chanlite import (
    Chanlite,
    DenyConnection,
    Message,
    Routes,
    channel_session,
    enforce_ordering,
    http_session,
)
from chanlite.auth import (
    USER_ID_KEY,
    channel_session_user,
    channel_session_user_from_http,
    login,
    logout,
)
from chanlite.sessions import SessionMiddleware
from chanlite.sessions.decorators import channel_session_key, session_store

SECRET_KEY = "accounts-test-secret-key-0123456789"
routes = Routes()
#: user id -> loader calls, to check the loader runs at most once per message.
LOADER_CALLS: dict[str, int] = {}
#: reply channel -> channel session seen by the disconnect consumer.
DISCONNECT_SESSIONS: dict[str, dict[str, Any]] = {}
#: reply channel -> frame numbers in the order the ordered consumer ran them.
RUNS: dict[str, list[int]] = {}
_lock = threading.Lock()


class Account:
    """What the app's user_loader returns."""

    is_authenticated = True

    def __init__(self, name: str) -> None:
        self.id = name
        self.display = name.title()


def load_account(user_id: Any) -> Account | None:
    with _lock:
        LOADER_CALLS[user_id] = LOADER_CALLS.get(user_id, 0) + 1
    return None if user_id == "ghost" else Account(str(user_id))


# -- views ---------------------------------------------------------------------------


async def login_view(request: Request) -> Response:
    # A urlencoded form, read without python-multipart.
    form = parse_qs((await request.body()).decode())
    login(request.session, form["user"][0])
    return PlainTextResponse("logged in")


async def logout_view(request: Request) -> Response:
    logout(request.session)
    return PlainTextResponse("logged out")


async def whoami_view(request: Request) -> Response:
    return PlainTextResponse(str(request.session.get(USER_ID_KEY, "anonymous")))


async def channel_session_view(request: Request) -> Response:
    """Whether the channel session of ``?reply=`` is still stored."""
    key = channel_session_key(request.query_params["reply"])
    data = await session_store().load(key, 60)
    return PlainTextResponse("absent" if data is None else "present")


host = Starlette(
    routes=[
        StarletteRoute("/login", login_view, methods=["POST"]),
        StarletteRoute("/logout", logout_view, methods=["POST"]),
        StarletteRoute("/whoami", whoami_view),
        StarletteRoute("/channel-session", channel_session_view),
    ]
)
host.add_middleware(SessionMiddleware)


# -- consumers -----------------------------------------------------------------------


@routes.consumer("websocket.connect", path=r"^/me/$")
@channel_session_user_from_http
async def me_connect(message: Message) -> None:
    if not message.user.is_authenticated:
        raise DenyConnection
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=r"^/me/$")
@channel_session_user
async def me_receive(message: Message) -> None:
    reply = f"{message.user.display}:{message['text']}"
    await message.reply_channel.asend({"text": reply})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/counter/$")
@channel_session
async def counter_connect(message: Message) -> None:
    message.channel_session["count"] = 0
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=r"^/counter/$")
@channel_session
async def counter_receive(message: Message) -> None:
    if message["text"] == "name":
        await message.reply_channel.asend({"text": message["reply_channel"]})  # type: ignore[union-attr]
        return
    message.channel_session["count"] += 1
    count = message.channel_session["count"]
    await message.reply_channel.asend({"text": str(count)})  # type: ignore[union-attr]


@routes.consumer("websocket.disconnect", path=r"^/(?:sync-)?counter/$")
@channel_session
def counter_disconnect(message: Message) -> None:
    with _lock:
        DISCONNECT_SESSIONS[message["reply_channel"]] = dict(message.channel_session)


@routes.consumer("websocket.connect", path=r"^/sync-counter/$")
@channel_session
def sync_counter_connect(message: Message) -> None:
    message.channel_session["count"] = 100
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=r"^/sync-counter/$")
@channel_session
def sync_counter_receive(message: Message) -> None:
    message.channel_session["count"] += 1
    message.reply_channel.send({"text": str(message.channel_session["count"])})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/http-session/$")
@http_session
async def http_session_connect(message: Message) -> None:
    session = message.http_session
    user = "none" if session is None else str(session.get(USER_ID_KEY, "empty"))
    await message.reply_channel.asend({"text": user})  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=r"^/ordered/$")
@enforce_ordering
def ordered_receive(message: Message) -> None:
    time.sleep(random.uniform(0, 0.02))
    number = int(message["text"])
    with _lock:
        RUNS.setdefault(message["reply_channel"], []).append(number)
    reply = f"{number}:{os.getpid()}"  # which worker process ran it
    message.reply_channel.send({"text": reply})  # type: ignore[union-attr]


def make_app(**options: Any) -> Chanlite:
    """The app, with the test secret key and loader unless overridden."""
    options.setdefault("secret_key", SECRET_KEY)
    options.setdefault("user_loader", load_account)
    return Chanlite(routes, app=host, **options)


app = make_app()
#: The same, with an interface that lets a frame wait up to 120 s for room: for
#: stress tests about order, where every worker thread may be busy for seconds.
patient_app = make_app(receive_full_timeout=120)
