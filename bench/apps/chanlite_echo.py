"""The chanlite side of the WebSocket benchmarks, served by ``chanlite serve``.

* ``/echo/``: an ``async def`` consumer replying on the reply channel.
* ``/sync-echo/``: the same as a ``def`` consumer (runs in the worker's thread pool).
* ``/room/NAME/``: connect joins ``Group("room-NAME")`` (before the accept is flushed,
  so an open socket is already a member), every frame is sent to the group, and
  disconnect leaves it.

Connects to the echo paths are accepted by the worker's default connect consumer (the
interface answers them itself when nothing else would take them).
``accepting_routes`` is the same table with a routed ``websocket.connect`` consumer
for ``/echo/``, as real apps have one: an ``async def`` that accepts with
``message.reply_channel.send({"accept": True})``, so every connect goes through the
worker.
"""

from __future__ import annotations

from chanlite import Group, Message, Routes, route

routes = Routes()


@routes.consumer("websocket.receive", path=r"^/echo/$")
async def echo(message: Message) -> None:
    """Send the frame back (``async def``: runs on the event loop)."""
    await message.reply_channel.asend({"text": message["text"]})  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=r"^/sync-echo/$")
def sync_echo(message: Message) -> None:
    """Send the frame back (``def``: runs in the worker's thread pool)."""
    message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/room/(?P<room>[\w-]+)/$")
async def room_join(message: Message, room: str) -> None:
    """Accept the socket and add it to the room's group."""
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]
    await Group(f"room-{room}").aadd(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer("websocket.receive", path=r"^/room/(?P<room>[\w-]+)/$")
async def room_say(message: Message, room: str) -> None:
    """Broadcast the frame to every member of the room."""
    await Group(f"room-{room}").asend({"text": message["text"]})


@routes.consumer("websocket.disconnect", path=r"^/room/(?P<room>[\w-]+)/$")
async def room_leave(message: Message, room: str) -> None:
    """Remove the socket from the room's group."""
    await Group(f"room-{room}").adiscard(message.reply_channel)  # type: ignore[arg-type]


async def accept(message: Message) -> None:
    """Accept the socket, as an app's own connect consumer does."""
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]


#: ``routes`` with :func:`accept` as ``/echo/``'s connect consumer.
accepting_routes = Routes([route("websocket.connect", accept, path=r"^/echo/$"), routes])
