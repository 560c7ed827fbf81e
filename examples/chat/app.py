"""The chat of the Channels getting-started guide, as chanlite.

* ``/echo/``: every frame comes back.
* ``/chat/<room>/``: everyone in a room sees every message. Messages go through the
  ``chat-messages`` background channel, which stores them in SQLite and broadcasts them.
* ``/``: the page, which joins a room and shows messages live.

Run it with ``chanlite serve examples.chat.app:routes``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from starlette.responses import HTMLResponse

from chanlite import Group, Message, Routes
from chanlite.http import response_to_messages

routes = Routes()

ROOM = r"^/chat/(?P<room>[\w-]+)/$"
#: Where messages are stored; override with CHAT_DB.
DB_PATH = os.environ.get("CHAT_DB", "chat.db")
_PAGE = (Path(__file__).parent / "index.html").read_text()
_db_lock = threading.Lock()


@routes.consumer("http.request", path=r"^/$")
def page(message: Message) -> None:
    """Serve the chat page."""
    for reply in response_to_messages(HTMLResponse(_PAGE)):
        message.reply_channel.send(reply)  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=r"^/echo/$")
def echo(message: Message) -> None:
    """Send every frame straight back."""
    message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=ROOM)
def join(message: Message, room: str) -> None:
    """Accept the socket and add it to the room's group."""
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]
    Group(f"chat-{room}").add(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer("websocket.receive", path=ROOM)
def post(message: Message, room: str) -> None:
    """Hand the message to the background channel that stores and broadcasts it."""
    from chanlite import Channel

    Channel("chat-messages").send({"room": room, "text": message.get("text", "")})


@routes.consumer("websocket.disconnect", path=ROOM)
def leave(message: Message, room: str) -> None:
    """Remove the socket from the room's group."""
    Group(f"chat-{room}").discard(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer("chat-messages")
def save_message(message: Message) -> None:
    """Store a message, then broadcast it to its room."""
    room, text = message["room"], message["text"]
    with _db_lock, sqlite3.connect(DB_PATH) as db:
        db.execute("CREATE TABLE IF NOT EXISTS messages (room TEXT, text TEXT)")
        db.execute("INSERT INTO messages (room, text) VALUES (?, ?)", (room, text))
    Group(f"chat-{room}").send({"text": json.dumps({"room": room, "text": text})})
