"""The chat of the Channels getting-started guide, as chanlite, with logins, history
and a presence list.

* ``/``: the login form, or, once logged in, the chat page, which joins a room over
  ``chanlite.js`` (served at ``/chanlite.js``) and shows the socket's state.
  ``POST /login`` and ``POST /logout`` are plain Starlette views behind
  ``SessionMiddleware``.
* ``/chat/<room>/``: a logged-in user's socket. Everyone in a room sees every
  message with its author's name. Messages go through the ``chat-messages``
  background channel, whose consumer stores them in SQLite and broadcasts them; a
  socket that joins gets the room's last :data:`HISTORY_SIZE` messages, and everyone
  in the room gets the list of who is there whenever someone joins or leaves (the
  group's presence, announced on ``chanlite.presence``). The room's group keeps its
  last :data:`RECOVERY_SIZE` messages, so a socket whose network dropped gets, when
  it comes back, everything it missed instead (recovery, over ``chanlite.js``).
  An anonymous socket is accepted and closed at once with :data:`NOT_LOGGED_IN`.
* ``/echo/``: every frame comes back.

Frames the room sends (JSON text)::

    {"type": "message", "id": 7, "room": "lobby", "user": "Alice", "text": "hi"}
    {"type": "history", "room": "lobby", "messages": [<message>, ...]}  (oldest first)
    {"type": "presence", "room": "lobby", "users": ["Alice", "Bob"]}

Run it with ``chanlite serve examples.chat.app:app``; messages are kept in the SQLite
file named by the ``CHAT_DB`` environment variable (default ``chat.db`` in the
working directory).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from chanlite import Chanlite, Channel, Group, Message, Routes, enforce_ordering
from chanlite.auth import USER_ID_KEY, channel_session_user, channel_session_user_from_http
from chanlite.auth import login as log_in
from chanlite.auth import logout as log_out
from chanlite.presence import PresenceTiming
from chanlite.sessions import SessionMiddleware
from chanlite.static import javascript_route

routes = Routes()

ROOM = r"^/chat/(?P<room>[\w-]+)/$"
#: Names users may log in with.
NAME = re.compile(r"^[\w .-]{1,32}$")
#: Where messages are stored; override with CHAT_DB.
DB_PATH = os.environ.get("CHAT_DB", "chat.db")
#: How many of a room's last messages a socket gets when it joins.
HISTORY_SIZE = 50
#: How many of a room's last messages a socket that dropped can still recover.
RECOVERY_SIZE = 500
#: Seconds a closed socket's user stays in the room's list, for its page to come
#: back (a reload, a dropped network) without a leave and a join being shown.
PRESENCE_GRACE = 2.0
#: The close code for a socket without a logged-in user. chanlite.js does not
#: reconnect after a 4xxx code; a refused handshake (403) would look like a network
#: failure to the browser, which would keep retrying.
NOT_LOGGED_IN = 4001
_HERE = Path(__file__).parent
_CHAT_PAGE = (_HERE / "index.html").read_text()
_LOGIN_PAGE = (_HERE / "login.html").read_text()
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (room TEXT, user TEXT, text TEXT);
CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room);
"""


# -- views -----------------------------------------------------------------------------


async def home(request: Request) -> Response:
    """The chat page for a logged-in user, else the login form."""
    user = request.session.get(USER_ID_KEY)
    if user is None:
        return HTMLResponse(_LOGIN_PAGE)
    return HTMLResponse(_CHAT_PAGE.replace("{{user}}", _escape(str(user))))


async def login(request: Request) -> Response:
    """Log in under the name from the form (no passwords: this is a demo)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    name = (form.get("name") or [""])[0].strip()
    if not NAME.match(name):
        return PlainTextResponse("a name is 1-32 letters, digits, spaces, '.', '-'", 400)
    log_in(request.session, name)
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    """Log out and go back to the login form."""
    log_out(request.session)
    return RedirectResponse("/", status_code=303)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


site = Starlette(
    routes=[
        Route("/", home),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        javascript_route(),
    ]
)
site.add_middleware(SessionMiddleware)


# -- storage ----------------------------------------------------------------------------


@contextmanager
def database() -> Iterator[sqlite3.Connection]:
    """A connection to :data:`DB_PATH` inside a write transaction.

    SQLite runs one write transaction at a time, across threads and processes, so
    what happens inside one (reading who is present and telling the room) is one step.
    """
    db = sqlite3.connect(DB_PATH, timeout=30, isolation_level=None)
    try:
        db.executescript(_SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


def history(db: sqlite3.Connection, room: str) -> list[dict[str, Any]]:
    """The last :data:`HISTORY_SIZE` messages of ``room``, oldest first."""
    rows = db.execute(
        "SELECT rowid, user, text FROM messages WHERE room = ? ORDER BY rowid DESC LIMIT ?",
        (room, HISTORY_SIZE),
    ).fetchall()
    return [_entry(row_id, room, user, text) for row_id, user, text in reversed(rows)]


def announce(room: str) -> None:
    """Tell everyone in ``room`` who is there.

    Computed and sent at once inside a write transaction (see :func:`database`), so
    that lists leave in the order they were computed and the last one anyone gets is
    the current one.
    """
    group = Group(f"chat-{room}")
    with database():
        users = {str(data["user"]) for data in group.presence().values()}
        listed = sorted(users, key=str.casefold)  # a user with two tabs is listed once
        group.send(_frame(type="presence", room=room, users=listed), immediately=True)


def _entry(row_id: int | None, room: str, user: str, text: str) -> dict[str, Any]:
    return {"type": "message", "id": row_id, "room": room, "user": user, "text": text}


def _frame(**content: Any) -> dict[str, Any]:
    return {"text": json.dumps(content)}


# -- consumers ---------------------------------------------------------------------------


@routes.consumer("websocket.receive", path=r"^/echo/$")
def echo(message: Message) -> None:
    """Send every frame straight back."""
    message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=ROOM)
@enforce_ordering(slight=True)
@channel_session_user_from_http
def join(message: Message, room: str) -> None:
    """Accept a logged-in user's socket: add it to the room, send it the room's
    history, and tell everyone in the room who is there."""
    reply = message.reply_channel
    assert reply is not None
    if not message.user.is_authenticated:
        reply.send({"accept": True, "close": NOT_LOGGED_IN})
        return
    # The accept and the history go at once. Adding the socket with its user
    # announces the join on chanlite.presence, whose consumer sends everyone in the
    # room (this socket too) the new list. A socket that came back and was sent what
    # it missed (a recovered reconnect) needs no history; its user was present all
    # along, so no join is announced.
    reply.send({"accept": True}, immediately=True)
    recovered = Group(f"chat-{room}").add(reply, presence={"user": message.user.id})
    if not recovered:
        with database() as db:
            messages = history(db, room)
        reply.send(_frame(type="history", room=room, messages=messages), immediately=True)


@routes.consumer("websocket.receive", path=ROOM)
@enforce_ordering(slight=True)
@channel_session_user
def post(message: Message, room: str) -> None:
    """Hand a message to the background channel that stores and broadcasts it."""
    text = message.get("text") or ""
    if message.user.is_authenticated and text.strip():
        Channel("chat-messages").send({"room": room, "user": message.user.id, "text": text})


@routes.consumer("websocket.disconnect", path=ROOM)
@enforce_ordering(slight=True)
def leave(message: Message, room: str) -> None:
    """Remove the socket from the room. Its user's leave is announced on
    ``chanlite.presence`` once its grace is over, unless it came back meanwhile."""
    reply = message.reply_channel
    assert reply is not None
    Group(f"chat-{room}").discard(reply)


@routes.consumer("chanlite.presence", group=r"^chat-")
def presence_changed(message: Message) -> None:
    """Someone joined or left a room: tell the room who is there now."""
    announce(message["group"].removeprefix("chat-"))


@routes.consumer("chat-messages")
def save_message(message: Message) -> None:
    """Store a message, then broadcast it to its room."""
    room, user, text = message["room"], message["user"], message["text"]
    with database() as db:
        cursor = db.execute("INSERT INTO messages VALUES (?, ?, ?)", (room, user, text))
    Group(f"chat-{room}").send(_frame(**_entry(cursor.lastrowid, room, user, text)))


#: What the app asks of its layer: each room's group keeps its last messages, so a
#: socket that drops and comes back gets what it missed, and who is in it; a socket
#: that closed stays present for :data:`PRESENCE_GRACE` seconds, in case its page
#: comes back.
OPTIONS: dict[str, Any] = {
    "group_history": {"chat-*": RECOVERY_SIZE},
    "group_presence": ["chat-*"],
    "presence_grace": PRESENCE_GRACE,
    "presence_timing": PresenceTiming(sweep_interval=PRESENCE_GRACE),
}
#: The whole app: the site's views, and the consumers above.
app = Chanlite(routes, app=site, **OPTIONS)
