"""A routing table that exercises every interface behaviour, for end-to-end tests."""

from __future__ import annotations

import asyncio
import threading
import time

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route as StarletteRoute

from chanlite import Chanlite, Channel, DenyConnection, Group, Message, Routes
from chanlite.http import request_from_message, response_to_messages

routes = Routes()
#: Per-socket log of the ``order`` values each consumer saw, for order tests.
ORDERS: dict[str, list[int]] = {}
_orders_lock = threading.Lock()


@routes.consumer("websocket.receive", path=r"^/echo/$")
async def echo(message: Message) -> None:
    if "text" in message:
        await message.reply_channel.asend({"text": message["text"]})  # type: ignore[union-attr]
    else:
        await message.reply_channel.asend({"bytes": message["bytes"]})  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=r"^/sync-echo/$")
def sync_echo(message: Message) -> None:
    message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/accept/$")
def explicit_accept(message: Message) -> None:
    subprotocols = message.get("subprotocols") or []
    reply: dict[str, object] = {"accept": True}
    if subprotocols:
        reply["subprotocol"] = subprotocols[0]
    message.reply_channel.send(reply)  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/auto/$")
def auto_accept(message: Message) -> None:
    message.reply_channel.send({"text": "welcome"})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/reject/$")
def reject(message: Message) -> None:
    message.reply_channel.send({"accept": False})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/deny/$")
def deny(message: Message) -> None:
    raise DenyConnection


@routes.consumer("websocket.connect", path=r"^/silent/$")
def silent(message: Message) -> None:
    """Never answers: the connect timeout rejects the socket."""


@routes.consumer("websocket.receive", path=r"^/close/$")
def close_4001(message: Message) -> None:
    message.reply_channel.send({"close": 4001})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/order/$")
@routes.consumer("websocket.receive", path=r"^/order/$")
@routes.consumer("websocket.disconnect", path=r"^/order/$")
def record_order(message: Message) -> None:
    with _orders_lock:
        ORDERS.setdefault(message.content["reply_channel"], []).append(message["order"])
    if message.channel.name == "websocket.connect":
        message.reply_channel.send({"accept": True})  # type: ignore[union-attr]
    elif message.channel.name == "websocket.receive":
        message.reply_channel.send({"text": str(message["order"])})  # type: ignore[union-attr]
    else:
        Channel("orders-done").send({"orders": ORDERS[message.content["reply_channel"]]})


@routes.consumer("websocket.connect", path=r"^/room/(?P<room>\w+)/$")
async def room_join(message: Message, room: str) -> None:
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]
    await Group(f"room-{room}").aadd(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer("websocket.receive", path=r"^/room/(?P<room>\w+)/$")
async def room_say(message: Message, room: str) -> None:
    await Group(f"room-{room}").asend({"text": f"{room}:{message['text']}"})


@routes.consumer("websocket.disconnect", path=r"^/room/(?P<room>\w+)/$")
async def room_leave(message: Message, room: str) -> None:
    await Group(f"room-{room}").adiscard(message.reply_channel)  # type: ignore[arg-type]
    await Group(f"room-{room}").asend({"text": f"{room}:left:{message['code']}"})


@routes.consumer("websocket.receive", path=r"^/slow/$")
def slow(message: Message) -> None:
    """Says it started, sleeps, then replies: for graceful-shutdown tests."""
    message.reply_channel.send({"text": "started"}, immediately=True)  # type: ignore[union-attr]
    time.sleep(float(message["text"]))
    message.reply_channel.send({"text": "finished"})  # type: ignore[union-attr]


@routes.consumer("http.request", path=r"^/hello/")
def hello(message: Message) -> None:
    request = request_from_message(message)
    text = f"Hello world! You asked for {request.url.path} ({len(message['body'])} bytes)"
    for reply in response_to_messages(PlainTextResponse(text)):
        message.reply_channel.send(reply)  # type: ignore[union-attr]


@routes.consumer("http.request", path=r"^/stream/$")
async def stream(message: Message) -> None:
    reply = message.reply_channel
    assert reply is not None
    await reply.asend(
        {
            "status": 200,
            "headers": [["content-type", "text/plain"]],
            "content": b"one,",
            "more_content": True,
        },
        immediately=True,
    )
    await asyncio.sleep(0.01)
    await reply.asend({"content": b"two,", "more_content": True}, immediately=True)
    await reply.asend({"content": b"three", "more_content": False}, immediately=True)


@routes.consumer("http.request", path=r"^/never/$")
def never(message: Message) -> None:
    """Never replies: http_timeout gives 503."""


async def host_home(request: object) -> PlainTextResponse:
    return PlainTextResponse("host app")


host = Starlette(routes=[StarletteRoute("/host/", host_home)])

#: The table embedded in a host Starlette app, with short timeouts for tests.
app = Chanlite(routes, app=host, websocket_connect_timeout=0.5, http_timeout=0.5)
#: The same, only allowing one origin.
guarded = Chanlite(routes, allowed_origins=["https://good.example"])


@routes.consumer("websocket.connect", path=r"^/watch/$")
async def watch(message: Message) -> None:
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]
    await Group("watchers").aadd(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer("jobs")
async def job(message: Message) -> None:
    """A background channel: tells every watcher what arrived."""
    await Group("watchers").asend({"text": f"job:{message['text']}"})
