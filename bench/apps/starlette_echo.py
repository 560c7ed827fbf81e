"""Raw Starlette WebSocket endpoints on uvicorn: ``uvicorn bench.apps.starlette_echo:app``.

The baseline with no channel layer at all: ``/echo/`` sends each frame straight back,
and ``/room/NAME/`` keeps the room's members in an in-process set and sends each frame
to every member in turn.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

#: Room name -> its open sockets.
ROOMS: dict[str, set[WebSocket]] = {}


async def echo(websocket: WebSocket) -> None:
    """Send every text frame back until the client leaves."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


async def room(websocket: WebSocket) -> None:
    """Join the room, broadcast every frame to its members, leave on disconnect."""
    members = ROOMS.setdefault(websocket.path_params["name"], set())
    members.add(websocket)
    await websocket.accept()
    try:
        while True:
            await broadcast(members, await websocket.receive_text())
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(websocket)


async def broadcast(members: set[WebSocket], text: str) -> None:
    """Send ``text`` to every member; one that is gone is skipped."""
    for member in list(members):
        try:
            await member.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            members.discard(member)


app = Starlette(
    routes=[
        WebSocketRoute("/echo/", echo),
        WebSocketRoute("/room/{name}/", room),
    ]
)
