"""A room whose group keeps a history, for the recovery tests: ``/room/<name>/``
joins the group ``room-<name>`` and every frame goes to the whole room. ``/`` is a
page whose ``chanlite.js`` socket joins ``room-lobby`` and records what it gets in
``window.got`` (``[group, text]``) and its opens in ``window.opens``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from chanlite import Chanlite, Group, Message, Routes
from chanlite.static import javascript_route

routes = Routes()
ROOM = r"^/room/(?P<name>[\w-]+)/$"


@routes.consumer("websocket.connect", path=ROOM)
async def join(message: Message, name: str) -> None:
    await Group(f"room-{name}").aadd(message.reply_channel)  # type: ignore[arg-type]
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=ROOM)
async def say(message: Message, name: str) -> None:
    await Group(f"room-{name}").asend({"text": message["text"]})


@routes.consumer("websocket.disconnect", path=ROOM)
async def leave(message: Message, name: str) -> None:
    await Group(f"room-{name}").adiscard(message.reply_channel)  # type: ignore[arg-type]


PAGE = """<!doctype html>
<title>recovery</title>
<script src="/chanlite.js"></script>
<script>
  window.got = [];
  window.opens = [];
  window.socket = new ChanliteSocket("/room/lobby/", {
    minDelay: 50,
    maxDelay: 500,
    onMessage: (data, group) => window.got.push([group, data]),
    onOpen: (info) => window.opens.push(info),
  });
</script>
"""


async def page(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


site = Starlette(routes=[Route("/", page), javascript_route()])
app = Chanlite(routes, app=site, group_history={"room-*": 1000})
