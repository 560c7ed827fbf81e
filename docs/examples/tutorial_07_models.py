"""Tutorial, stage 7: chat messages stored in SQLite. Sockets hand each message to
the ``chat-messages`` channel, whose consumer saves it and broadcasts it.

Serve it (saved as ``chat.py``) with ``chanlite serve chat:routes``.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing

from chanlite import Channel, Group, Message, Routes

DB_PATH = "chat.db"
ROOM = r"^/chat/(?P<room>[a-zA-Z0-9_]+)/$"

routes = Routes()


@routes.consumer("chat-messages")
def msg_consumer(message: Message) -> None:
    room, text = message["room"], message["text"]
    # Save to the database ("with db" commits; closing() closes the connection).
    with closing(sqlite3.connect(DB_PATH)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS messages (room TEXT, text TEXT)")
        db.execute("INSERT INTO messages (room, text) VALUES (?, ?)", (room, text))
    # Broadcast to the sockets listening in that room.
    Group(f"chat-{room}").send({"text": text})


@routes.consumer("websocket.connect", path=ROOM)
def ws_connect(message: Message, room: str) -> None:
    Group(f"chat-{room}").add(message.reply_channel)
    message.reply_channel.send({"accept": True})


@routes.consumer("websocket.receive", path=ROOM)
def ws_message(message: Message, room: str) -> None:
    # Stick the message onto the processing queue, and move on.
    Channel("chat-messages").send({"room": room, "text": message["text"]})


@routes.consumer("websocket.disconnect", path=ROOM)
def ws_disconnect(message: Message, room: str) -> None:
    Group(f"chat-{room}").discard(message.reply_channel)


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    with tempfile.TemporaryDirectory() as tmp, ChanliteTestClient(Chanlite(routes)) as client:
        DB_PATH = str(Path(tmp) / "chat.db")
        with client.websocket_connect("/chat/lobby/") as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "hello"
            # Anything may send to chat-messages: a bot, a script, a cron job.
            client.channel_send("chat-messages", {"room": "lobby", "text": "bot: welcome"})
            assert ws.receive_text() == "bot: welcome"
        with closing(sqlite3.connect(DB_PATH)) as db:
            rows = db.execute("SELECT room, text FROM messages ORDER BY rowid").fetchall()
        assert rows == [("lobby", "hello"), ("lobby", "bot: welcome")], rows
    print("tutorial_07_models: both messages were stored and broadcast")
