"""The chat of the Channels getting-started guide, as chanlite, with logins.

* ``/``: the login form, or, once logged in, the chat page, which joins a room and
  shows messages live. ``POST /login`` and ``POST /logout`` are plain Starlette views
  behind ``SessionMiddleware``.
* ``/chat/<room>/``: a logged-in user's socket (anonymous sockets are refused);
  everyone in a room sees every message with its author's name. Messages go through
  the ``chat-messages`` background channel, which stores them in SQLite and
  broadcasts them.
* ``/echo/``: every frame comes back.

Run it with ``chanlite serve examples.chat.app:app``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from chanlite import Chanlite, Channel, DenyConnection, Group, Message, Routes
from chanlite.auth import USER_ID_KEY, channel_session_user, channel_session_user_from_http
from chanlite.auth import login as log_in
from chanlite.auth import logout as log_out
from chanlite.sessions import SessionMiddleware

routes = Routes()

ROOM = r"^/chat/(?P<room>[\w-]+)/$"
#: Names users may log in with.
NAME = re.compile(r"^[\w .-]{1,32}$")
#: Where messages are stored; override with CHAT_DB.
DB_PATH = os.environ.get("CHAT_DB", "chat.db")
_HERE = Path(__file__).parent
_CHAT_PAGE = (_HERE / "index.html").read_text()
_LOGIN_PAGE = (_HERE / "login.html").read_text()
_db_lock = threading.Lock()


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
    ]
)
site.add_middleware(SessionMiddleware)


# -- consumers ---------------------------------------------------------------------------


@routes.consumer("websocket.receive", path=r"^/echo/$")
def echo(message: Message) -> None:
    """Send every frame straight back."""
    message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=ROOM)
@channel_session_user_from_http
def join(message: Message, room: str) -> None:
    """Accept a logged-in user's socket and add it to the room's group."""
    if not message.user.is_authenticated:
        raise DenyConnection
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]
    Group(f"chat-{room}").add(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer("websocket.receive", path=ROOM)
@channel_session_user
def post(message: Message, room: str) -> None:
    """Hand the message to the background channel that stores and broadcasts it."""
    text = message.get("text") or ""
    Channel("chat-messages").send({"room": room, "user": message.user.id, "text": text})


@routes.consumer("websocket.disconnect", path=ROOM)
@channel_session_user
def leave(message: Message, room: str) -> None:
    """Remove the socket from the room's group."""
    Group(f"chat-{room}").discard(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer("chat-messages")
def save_message(message: Message) -> None:
    """Store a message, then broadcast it to its room."""
    room, user, text = message["room"], message["user"], message["text"]
    with _db_lock, sqlite3.connect(DB_PATH) as db:
        db.execute("CREATE TABLE IF NOT EXISTS messages (room TEXT, user TEXT, text TEXT)")
        db.execute("INSERT INTO messages VALUES (?, ?, ?)", (room, user, text))
    payload = json.dumps({"room": room, "user": user, "text": text})
    Group(f"chat-{room}").send({"text": payload})


#: The whole app: the site's views, and the consumers above.
app = Chanlite(routes, app=site)
