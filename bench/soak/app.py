"""The chat app of the soak run, served by ``chanlite serve bench.soak.app:app``.

* ``/room/NAME/``: the chat of the Channels 1.x getting-started guide. Connect
  accepts the socket, adds it to ``Group("soak-NAME")`` and keeps the room in the
  socket's channel session; every text frame is sent, unchanged, to every member of
  the room named by the session (the sender included); disconnect leaves the room.
  All three are ``@enforce_ordering(slight=True)``, so the session store holds an
  ordering cursor per socket too.
* ``GET /debug`` (the host app): what could leak in this process, as JSON: asyncio
  tasks (and the commonest kinds), threads, open connections, group sizes, queued messages and, on
  ``memory://``, session-store entries.
* channel ``soak.debug.NAME``, only in a process started with
  ``CHANLITE_SOAK_PROCESS=NAME`` (each ``chanlite worker`` of a Redis run): answers
  ``{"nonce": ...}`` on the message's ``reply_channel`` with that process's tasks and
  threads, so the sampler can read a worker, which serves no HTTP.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chanlite import Chanlite, Group, Message, Routes, channel_session, enforce_ordering

#: The name a worker process answers debug requests under (see :func:`debug_channel`).
PROCESS_ENV = "CHANLITE_SOAK_PROCESS"
ROOM = r"^/room/(?P<room>[\w-]+)/$"
#: How many kinds of task :func:`process_figures` lists.
TASK_KINDS = 20

routes = Routes()


def debug_channel(process: str) -> str:
    """The channel on which the process started with ``CHANLITE_SOAK_PROCESS=process``
    answers debug requests."""
    return f"soak.debug.{process}"


def room_group(room: str) -> Group:
    """The group of the room named ``room``."""
    return Group(f"soak-{room}")


@routes.consumer("websocket.connect", path=ROOM)
@enforce_ordering(slight=True)
@channel_session
async def join(message: Message, room: str) -> None:
    """Accept the socket, add it to its room and remember the room."""
    reply = message.reply_channel
    assert reply is not None
    await reply.asend({"accept": True})
    await room_group(room).aadd(reply)
    message.channel_session["room"] = room


@routes.consumer("websocket.receive", path=ROOM)
@enforce_ordering(slight=True)
@channel_session
async def say(message: Message, room: str) -> None:
    """Send the frame to everyone in the room the socket joined."""
    await room_group(message.channel_session["room"]).asend({"text": message["text"]})


@routes.consumer("websocket.disconnect", path=ROOM)
@enforce_ordering(slight=True)
@channel_session
async def leave(message: Message, room: str) -> None:
    """Remove the socket from its room."""
    assert message.reply_channel is not None
    await room_group(message.channel_session.get("room", room)).adiscard(message.reply_channel)


def process_figures() -> dict[str, Any]:
    """This process's id, asyncio tasks (of the running loop) and threads, and its
    tasks counted by coroutine (the most common first), to tell which kind grows."""
    tasks = asyncio.all_tasks()
    return {
        "pid": os.getpid(),
        "tasks": len(tasks),
        "threads": threading.active_count(),
        "task_kinds": dict(Counter(task_kind(task) for task in tasks).most_common(TASK_KINDS)),
    }


def task_kind(task: asyncio.Task[Any]) -> str:
    """The qualified name of the coroutine a task runs."""
    coroutine = task.get_coro()
    return getattr(coroutine, "__qualname__", type(coroutine).__name__)


async def answer_debug(message: Message) -> None:
    """Reply to a debug request with :func:`process_figures` and its nonce."""
    assert message.reply_channel is not None
    await message.reply_channel.asend({"nonce": message.get("nonce"), **process_figures()})


_process = os.environ.get(PROCESS_ENV)
if _process:
    routes.consumer(debug_channel(_process))(answer_debug)


async def layer_figures() -> dict[str, Any]:
    """Group count, members and queued messages of the app's layer (all processes'
    on a shared layer); zeros where the layer cannot tell."""
    stats = (await app.layer.stats() if app.layer is not None else None) or {}
    groups: dict[str, int] = stats.get("groups", {})
    channels: dict[str, int] = stats.get("channels", {})
    return {
        "groups": len(groups),
        "members": sum(groups.values()),
        "largest_group": max(groups.values(), default=0),
        "queued": sum(channels.values()),
    }


def store_figures() -> dict[str, Any]:
    """Sessions and ordering cursors held by an in-process session store (``None``
    for a store kept elsewhere, such as Redis, where they are Redis keys)."""
    store = app.session_store
    sessions = getattr(store, "_sessions", None)
    cursors = getattr(store, "_cursors", None)
    return {
        "sessions": None if sessions is None else len(sessions),
        "cursors": None if cursors is None else len(cursors),
    }


async def debug(request: Request) -> Response:
    """``GET /debug``: what could leak in this process (reads private state: a
    measurement aid, not an API)."""
    connections = app.interface.connection_count if app.interface is not None else None
    return JSONResponse(
        {
            **process_figures(),
            "connections": connections,
            **await layer_figures(),
            **store_figures(),
        }
    )


host = Starlette(routes=[Route("/debug", debug)])
app = Chanlite(routes, app=host)
