"""The routes chanlite appends last to every served table (DESIGN §3).

A ``websocket.connect`` that no routed consumer takes is accepted; a
``websocket.receive`` or ``websocket.disconnect`` that none takes is dropped. The
interface may answer a connect itself when only :func:`default_connect` would take it.
"""

from __future__ import annotations

from .messages import Message
from .protocol import WEBSOCKET_CONNECT, WEBSOCKET_DISCONNECT, WEBSOCKET_RECEIVE
from .routing import Route, Routes, with_defaults


async def default_connect(message: Message) -> None:
    """Accept a socket that no routed connect consumer took (appended last)."""
    if message.reply_channel is not None:
        await message.reply_channel.asend({"accept": True})


async def drop(message: Message) -> None:
    """Drop unrouted ``websocket.receive`` and ``websocket.disconnect`` messages."""


#: Routes appended last to every served table.
DEFAULT_ROUTES = (
    Route(WEBSOCKET_CONNECT, default_connect),
    Route((WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT), drop),
)


def served_routes(routes: Routes) -> Routes:
    """``routes`` with :data:`DEFAULT_ROUTES` appended: the table a server runs."""
    return with_defaults(routes, DEFAULT_ROUTES)
