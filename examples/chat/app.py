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
  in the room gets the list of who is there whenever someone joins or leaves. The
  room's group keeps its last :data:`RECOVERY_SIZE` messages, so a socket whose
  network dropped gets, when it comes back, everything it missed instead (recovery,
  over ``chanlite.js``).
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
CREATE TABLE IF NOT EXISTS presence (channel TEXT PRIMARY KEY, room TEXT, user TEXT);
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
    what happens inside one (a presence change and its broadcast) is one step.
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


def present(db: sqlite3.Connection, room: str) -> list[str]:
    """Who is in ``room``: the users of the sockets that are still in its group.

    The table maps sockets to users and the group says which sockets are alive:
    rows left behind by a server that stopped without running its disconnects are
    ignored, and deleted, once the layer no longer lists their sockets (at once on
    ``memory://``, which a restart empties). A user with two tabs open is listed once.
    """
    members = Group(f"chat-{room}").channels()
    rows = db.execute("SELECT channel, user FROM presence WHERE room = ?", (room,)).fetchall()
    gone = [(channel,) for channel, _ in rows if channel not in members]
    db.executemany("DELETE FROM presence WHERE channel = ?", gone)
    return sorted({user for channel, user in rows if channel in members}, key=str.casefold)


def announce(db: sqlite3.Connection, room: str) -> None:
    """Tell everyone in ``room`` who is there.

    Sent at once, not when the consumer returns: inside the transaction that
    computed the list (see :func:`database`), so that lists leave in the order they
    were computed and the last one anyone gets is the current one.
    """
    users = present(db, room)
    Group(f"chat-{room}").send(_frame(type="presence", room=room, users=users), immediately=True)


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
    # The accept and the history go at once, ahead of the presence list, which
    # announce() sends at once. A socket that came back and was sent what it missed
    # (a recovered reconnect) needs no history.
    reply.send({"accept": True}, immediately=True)
    recovered = Group(f"chat-{room}").add(reply)
    with database() as db:
        if not recovered:
            messages = history(db, room)
            reply.send(_frame(type="history", room=room, messages=messages), immediately=True)
        db.execute(
            "INSERT OR REPLACE INTO presence VALUES (?, ?, ?)", (reply.name, room, message.user.id)
        )
        announce(db, room)


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
    """Remove the socket from the room and tell the others who is left."""
    reply = message.reply_channel
    assert reply is not None
    Group(f"chat-{room}").discard(reply)
    with database() as db:
        removed = db.execute("DELETE FROM presence WHERE channel = ?", (reply.name,)).rowcount
        if removed:
            announce(db, room)


@routes.consumer("chat-messages")
def save_message(message: Message) -> None:
    """Store a message, then broadcast it to its room."""
    room, user, text = message["room"], message["user"], message["text"]
    with database() as db:
        cursor = db.execute("INSERT INTO messages VALUES (?, ?, ?)", (room, user, text))
    Group(f"chat-{room}").send(_frame(**_entry(cursor.lastrowid, room, user, text)))


#: The whole app: the site's views, and the consumers above. Each room's group keeps
#: its last messages, so a socket that drops and comes back gets what it missed.
app = Chanlite(routes, app=site, group_history={"chat-*": RECOVERY_SIZE})
