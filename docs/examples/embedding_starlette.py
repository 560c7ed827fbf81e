"""An existing Starlette site gets a live news feed: one line wraps it in chanlite.

Serve it with ``chanlite serve embedding_starlette:app`` (or ``uvicorn``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chanlite import Chanlite, DenyConnection, Group, Message, Routes
from chanlite.auth import channel_session_user_from_http, login
from chanlite.sessions import SessionMiddleware

events: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(site: Starlette) -> AsyncIterator[None]:
    events.append("site started")  # open database pools here, as before
    yield
    events.append("site stopped")


async def home(request: Request) -> Response:
    return PlainTextResponse("the site's own home page")


async def log_in(request: Request) -> Response:
    login(request.session, request.query_params["name"])
    return PlainTextResponse("logged in")


def publish(request: Request) -> Response:
    # A sync view runs in a thread: the blocking Group.send works there.
    Group("news").send({"text": request.query_params["headline"]})
    return PlainTextResponse("published")


async def publish_async(request: Request) -> Response:
    # On the event loop, use the async twin.
    await Group("news").asend({"text": request.query_params["headline"]})
    return PlainTextResponse("published")


site = Starlette(
    routes=[
        Route("/", home),
        Route("/login", log_in),
        Route("/publish", publish, methods=["POST"]),
        Route("/publish-async", publish_async, methods=["POST"]),
    ],
    lifespan=lifespan,
)
site.add_middleware(SessionMiddleware)  # key and store: the Chanlite app's

routes = Routes()


@routes.consumer("websocket.connect", path=r"^/news/$")
@channel_session_user_from_http
def follow(message: Message) -> None:
    if not message.user.is_authenticated:
        raise DenyConnection
    assert message.reply_channel is not None
    message.reply_channel.send({"accept": True})
    message.reply_channel.send({"text": f"hello {message.user.id}"})
    Group("news").add(message.reply_channel)


@routes.consumer("websocket.disconnect", path=r"^/news/$")
def unfollow(message: Message) -> None:
    assert message.reply_channel is not None
    Group("news").discard(message.reply_channel)


app = Chanlite(routes, app=site)  # the one line
