"""An app whose sockets join a room with presence, for the presence tests.

``/room/<name>/<user>/`` joins ``room-<name>`` as ``{"user": user}`` on connect and
leaves it on disconnect. Heartbeats and sweeps are fast, so that a dead interface's
members leave within :data:`BOUND` seconds.
"""

from __future__ import annotations

from chanlite import Chanlite, Group, Message, Routes
from chanlite.presence import PresenceTiming

routes = Routes()
#: Beats every 0.2 s, each living 1 s; sweeps every 0.2 s.
TIMING = PresenceTiming(heartbeat_interval=0.2, heartbeat_ttl=1.0, sweep_interval=0.2)
#: Within this many seconds a dead interface's members leave.
BOUND = TIMING.bound


@routes.consumer("websocket.connect", path=r"^/room/(?P<room>[\w-]+)/(?P<user>[\w-]+)/$")
async def join(message: Message, room: str, user: str) -> None:
    channel = message.reply_channel
    assert channel is not None
    await Group(f"room-{room}").aadd(channel, presence={"user": user})
    await channel.asend({"accept": True})


@routes.consumer("websocket.disconnect", path=r"^/room/(?P<room>[\w-]+)/(?P<user>[\w-]+)/$")
async def leave(message: Message, room: str, user: str) -> None:
    assert message.reply_channel is not None
    await Group(f"room-{room}").adiscard(message.reply_channel)


app = Chanlite(routes, group_presence=["room-*"], presence_grace=0.5, presence_timing=TIMING)
