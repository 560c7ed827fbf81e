"""An app for the bad-input matrix (``tests/e2e/test_bad_input*.py``).

Every WebSocket path accepts by default and answers frames as below; each consumer
is the kind of user code that a bad input reaches.

* ``/echo/``: echoes text and bytes (the good client's path).
* ``/upper/``: expects text: ``message["text"].upper()`` (a binary frame makes it
  raise ``KeyError``).
* ``/json/``: parses the frame with :func:`json.loads` and answers how many items
  the top level holds.
* ``/nest/``: the frame is a depth N; sends a list nested N deep to a channel and
  answers ``sent``, or the name and text of the exception the send raised.
* ``/group/``: the frame names a room; joins group ``room-<name>`` and answers
  ``joined``, or the name and text of the exception raised.
* ``/room/<name>/``: the connect consumer joins ``room-<name>`` without catching
  anything (a bad name makes it raise before accepting).
* ``/raise/``: raises ``RuntimeError`` for the frame ``raise``, else echoes.
* ``/hang/``: ``async def``: for the frame ``hang`` it waits forever (until
  ``consumer_timeout`` cancels it), else echoes.
* ``/sync-hang/``: ``def``: for the frame ``hang`` it blocks its thread until
  ``GET /release`` (or :data:`HANG_LIMIT`), else echoes.
* ``/non-dict/``: sends a str as the reply.
* ``/both/``, ``/unknown-key/``, ``/bad-close/``: send a reply with both ``text``
  and ``bytes``, with a misspelt key, or with a close code that is not one; each
  then answers ``after`` in a proper reply.
* ``/flood/``: the frame ``N SIZE`` makes it send N text replies of SIZE characters
  at once, then ``done``.
* ``/member/``: ``channel_session`` consumers that join group ``members`` on connect
  and leave it on disconnect (the connection-flood row).

HTTP: ``/twice/`` replies twice; ``/never/`` never replies (503 after
:data:`HTTP_TIMEOUT`); ``/hello/`` answers the path's length and the query string.
``GET /debug`` (the host app) reports what could leak: group sizes, channel depths,
stored sessions and ordering cursors, connections and asyncio tasks; and
:data:`COUNTS`.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route as StarletteRoute

from chanlite import Chanlite, Channel, Group, Message, Routes, channel_session
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.sessions.decorators import session_store
from chanlite.stores.memory import MemorySessionStore

SECRET_KEY = "bad-input-test-secret-key-0123456789"
#: Seconds an HTTP consumer has to answer (short, so the 503 row is quick).
HTTP_TIMEOUT = 0.5
#: Seconds a consumer may run (short, so the hanging rows are quick).
CONSUMER_TIMEOUT = 1.0
#: Longest a ``/sync-hang/`` thread blocks if the test never releases it.
HANG_LIMIT = 30.0
#: The channel ``/nest/`` sends to (nothing consumes it).
SINK = "bad-input.sink"

routes = Routes()
#: What the consumers did that a client cannot see: ``/hang/`` consumers cancelled,
#: ``/flood/`` floods finished.
COUNTS = {"cancelled": 0, "floods": 0}
_release = threading.Event()


def _reply(message: Message, content: dict[str, Any]) -> None:
    assert message.reply_channel is not None
    message.reply_channel.send(content)


async def _areply(message: Message, content: dict[str, Any]) -> None:
    assert message.reply_channel is not None
    await message.reply_channel.asend(content)


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- frames ----------------------------------------------------------------------------


@routes.consumer("websocket.receive", path=r"^/echo/$")
async def echo(message: Message) -> None:
    if "text" in message:
        await _areply(message, {"text": message["text"]})
    else:
        await _areply(message, {"bytes": message["bytes"]})


@routes.consumer("websocket.receive", path=r"^/upper/$")
async def upper(message: Message) -> None:
    await _areply(message, {"text": message["text"].upper()})


@routes.consumer("websocket.receive", path=r"^/json/$")
def parse_json(message: Message) -> None:
    data = json.loads(message["text"])
    _reply(message, {"text": f"items:{len(data)}"})


@routes.consumer("websocket.receive", path=r"^/nest/$")
async def nest(message: Message) -> None:
    nested: list[Any] = []
    for _ in range(int(message["text"])):
        nested = [nested]
    try:
        await Channel(SINK).asend({"nested": nested})
    except Exception as exc:
        await _areply(message, {"text": _failure(exc)})
        return
    await _areply(message, {"text": "sent"})


# -- names from user data --------------------------------------------------------------


@routes.consumer("websocket.receive", path=r"^/group/$")
async def join_named(message: Message) -> None:
    try:
        await Group(f"room-{message['text']}").aadd(message.reply_channel)  # type: ignore[arg-type]
    except Exception as exc:
        await _areply(message, {"text": _failure(exc)})
        return
    await _areply(message, {"text": "joined"})


@routes.consumer("websocket.connect", path=r"^/room/(?P<room>[^/]+)/$")
async def join_room(message: Message, room: str) -> None:
    await Group(f"room-{room}").aadd(message.reply_channel)  # type: ignore[arg-type]
    await _areply(message, {"accept": True})


# -- consumers that fail ---------------------------------------------------------------


@routes.consumer("websocket.receive", path=r"^/raise/$")
async def fail(message: Message) -> None:
    if message["text"] == "raise":
        raise RuntimeError("the test app's consumer failed")
    await _areply(message, {"text": message["text"]})


@routes.consumer("websocket.receive", path=r"^/hang/$")
async def hang(message: Message) -> None:
    if message["text"] == "hang":
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            COUNTS["cancelled"] += 1
            raise
    await _areply(message, {"text": message["text"]})


@routes.consumer("websocket.receive", path=r"^/sync-hang/$")
def sync_hang(message: Message) -> None:
    if message["text"] == "hang":
        _release.wait(HANG_LIMIT)
        _reply(message, {"text": "late"})  # given up on: never delivered
        return
    _reply(message, {"text": message["text"]})


@routes.consumer("websocket.receive", path=r"^/non-dict/$")
async def non_dict(message: Message) -> None:
    await _areply(message, "not a dict")  # type: ignore[arg-type]


# -- malformed replies -----------------------------------------------------------------

_MALFORMED: dict[str, dict[str, Any]] = {
    "both": {"text": "a", "bytes": b"b"},
    "unknown-key": {"txt": "misspelt"},
    "bad-close": {"close": 99999},
}


@routes.consumer("websocket.receive", path=r"^/(?P<kind>both|unknown-key|bad-close)/$")
async def malformed(message: Message, kind: str) -> None:
    await _areply(message, _MALFORMED[kind])
    await _areply(message, {"text": "after"})


# -- slow readers ----------------------------------------------------------------------


@routes.consumer("websocket.receive", path=r"^/flood/$")
async def flood(message: Message) -> None:
    count, size = (int(part) for part in message["text"].split())
    assert message.reply_channel is not None
    text = "x" * size
    for _ in range(count):
        await message.reply_channel.asend({"text": text}, immediately=True)
    COUNTS["floods"] += 1
    await _areply(message, {"text": "done"})


# -- the connection flood --------------------------------------------------------------


@routes.consumer("websocket.connect", path=r"^/member/$")
@channel_session
async def member_join(message: Message) -> None:
    message.channel_session["joined"] = True
    await Group("members").aadd(message.reply_channel)  # type: ignore[arg-type]
    await _areply(message, {"accept": True})


@routes.consumer("websocket.disconnect", path=r"^/member/$")
@channel_session
async def member_leave(message: Message) -> None:
    await Group("members").adiscard(message.reply_channel)  # type: ignore[arg-type]


# -- HTTP ------------------------------------------------------------------------------


@routes.consumer("http.request", path=r"^/twice/$")
async def twice(message: Message) -> None:
    await _areply(message, {"status": 200, "content": b"first"})
    await _areply(message, {"status": 500, "content": b"second"})


@routes.consumer("http.request", path=r"^/never/$")
async def never(message: Message) -> None:
    """Never replies: the interface answers 503 after HTTP_TIMEOUT."""


@routes.consumer("http.request", path=r"^/hello/")
async def hello(message: Message) -> None:
    text = f"path:{len(message['path'])} query:{message['query_string']}"
    await _areply(message, {"status": 200, "content": text.encode()})


# -- the host app: what could leak -----------------------------------------------------


async def debug(request: Request) -> Response:
    """What a flood of bad clients could leave behind (reads private state: a test aid)."""
    layer = app.layer
    store = session_store()
    assert isinstance(layer, InMemoryChannelLayer) and isinstance(store, MemorySessionStore)
    stats = await layer.stats()
    return JSONResponse(
        {
            "groups": stats["groups"],
            "channels": stats["channels"],
            "memberships": len(layer._memberships),
            "sessions": len(store._sessions),
            "cursors": len(store._cursors),
            "connections": app.interface.connection_count if app.interface else None,
            "tasks": len(asyncio.all_tasks()),
            **COUNTS,
        }
    )


async def release(request: Request) -> Response:
    """Let every blocked ``/sync-hang/`` thread return."""
    _release.set()
    return PlainTextResponse("released")


host = Starlette(routes=[StarletteRoute("/debug", debug), StarletteRoute("/release", release)])
app = Chanlite(
    routes,
    app=host,
    secret_key=SECRET_KEY,
    http_timeout=HTTP_TIMEOUT,
    consumer_timeout=CONSUMER_TIMEOUT,
)
