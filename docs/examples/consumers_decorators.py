"""Decorators stacked on consumers: sessions, users, ordering and one of your own.

Run it with ``chanlite serve consumers_decorators:app``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chanlite import Chanlite, DenyConnection, Message, Routes, enforce_ordering
from chanlite.auth import (
    channel_session_user,
    channel_session_user_from_http,
    http_session_user,
    login,
)
from chanlite.http import response_to_messages
from chanlite.sessions import SessionMiddleware


@dataclass
class Account:
    id: str
    name: str
    is_authenticated: bool = True


async def load_account(user_id: str) -> Account:
    return Account(user_id, user_id.title())  # a database lookup in a real app


async def log_in(request: Request) -> Response:
    login(request.session, request.query_params["user"])
    return PlainTextResponse("logged in")


site = Starlette(routes=[Route("/login", log_in, methods=["POST"])])
site.add_middleware(SessionMiddleware)


def login_required(consumer: Callable[..., None]) -> Callable[..., None]:
    """Refuse anonymous sockets. Goes below an auth decorator, which sets message.user."""

    @functools.wraps(consumer)  # keeps chanlite's marks and the consumer's name
    def wrapper(message: Message, **kwargs: Any) -> None:
        if not message.user.is_authenticated:
            raise DenyConnection
        consumer(message, **kwargs)

    return wrapper


routes = Routes()


@routes.consumer("websocket.connect", path=r"^/notes/$")  # always the top one
@channel_session_user_from_http  # the HTTP login moves into the channel session
@login_required
def connect(message: Message) -> None:
    message.channel_session["notes"] = []
    message.reply_channel.send({"accept": True})


@routes.consumer("websocket.receive", path=r"^/notes/$")
@enforce_ordering  # strict: each socket's frames one at a time, in order
@channel_session_user
async def note(message: Message) -> None:
    message.channel_session["notes"].append(message["text"])
    message.channel_session.modified = True  # a change inside a value is not seen
    count = len(message.channel_session["notes"])
    await message.reply_channel.asend({"text": f"{message.user.name}, note {count}"})


@routes.consumer("http.request", path=r"^/whoami$")
@http_session_user
def whoami(message: Message) -> None:
    name = message.user.name if message.user.is_authenticated else "nobody"
    for reply in response_to_messages(PlainTextResponse(name)):
        message.reply_channel.send(reply)


app = Chanlite(routes, app=site, user_loader=load_account)


if __name__ == "__main__":
    from starlette.websockets import WebSocketDisconnect

    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(app) as client:
        assert client.get("/whoami").text == "nobody"
        try:
            with client.websocket_connect("/notes/"):
                raise AssertionError("an anonymous socket was accepted")
        except WebSocketDisconnect:
            pass  # refused by login_required
        client.post("/login?user=alice")  # the session cookie stays in the client
        assert client.get("/whoami").text == "Alice"
        with client.websocket_connect("/notes/") as ws:
            for text in ("milk", "eggs", "bread"):
                ws.send_text(text)
            replies = [ws.receive_text() for _ in range(3)]
        assert replies == ["Alice, note 1", "Alice, note 2", "Alice, note 3"]
    print("consumers_decorators: anonymous refused, Alice's three notes counted in order")
