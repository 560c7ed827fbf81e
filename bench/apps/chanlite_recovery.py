"""The app of the ``history-cost`` suite's recovery rows.

``/room/NAME/``: the connect consumer adds the socket to ``Group("room-NAME")``, then
accepts it, as an ordinary app does; on a ``chanlite.v1`` socket that presented a
position, that ``add`` is what replays the missed messages. Disconnect leaves the
group. Nothing is routed for frames: the suite sends to the group from outside any
consumer.
"""

from __future__ import annotations

from chanlite import Group, Message, Routes

routes = Routes()


@routes.consumer("websocket.connect", path=r"^/room/(?P<room>[\w-]+)/$")
async def room_join(message: Message, room: str) -> None:
    """Join the room's group, then accept the socket."""
    await Group(f"room-{room}").aadd(message.reply_channel)  # type: ignore[arg-type]
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]


@routes.consumer("websocket.disconnect", path=r"^/room/(?P<room>[\w-]+)/$")
async def room_leave(message: Message, room: str) -> None:
    """Leave the room's group."""
    await Group(f"room-{room}").adiscard(message.reply_channel)  # type: ignore[arg-type]
