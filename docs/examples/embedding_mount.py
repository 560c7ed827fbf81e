"""chanlite mounted under a path of a Starlette site, started by the site's lifespan.

Serve it with ``uvicorn embedding_mount:site``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

from chanlite import Chanlite, Message, Routes
from chanlite.auth import http_session_user, login
from chanlite.sessions import SessionMiddleware

routes = Routes()


@routes.consumer("websocket.connect", path=r"^/whoami/$")
@http_session_user
def whoami(message: Message) -> None:
    assert message.reply_channel is not None
    # The path is relative to the mount: /live/whoami/ arrives as /whoami/.
    message.reply_channel.send({"text": f"{message['path']} {message.user.id}"})


live = Chanlite(routes)


@contextlib.asynccontextmanager
async def lifespan(site: Starlette) -> AsyncIterator[None]:
    await live.startup()  # Mount forwards no lifespan events: start it here
    yield
    await live.shutdown()  # drain the workers, close the sockets with 1001


async def log_in(request: Request) -> Response:
    login(request.session, request.query_params["name"])
    return PlainTextResponse("logged in")


site = Starlette(
    routes=[Route("/login", log_in), Mount("/live", app=live)],
    lifespan=lifespan,
)
site.add_middleware(SessionMiddleware)
site.add_middleware(live.middleware)  # last, so it wraps the rest: views find live's store
