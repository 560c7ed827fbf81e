"""Tutorial, stage 8: the whole chat. Logged-in users talk in rooms named by the path;
messages are stored in SQLite on the way; each socket's connect runs before its
other messages (slight ordering).

Serve it (saved as ``chat.py``) with ``chanlite serve chat:app``.
"""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chanlite import Chanlite, Channel, DenyConnection, Group, Message, Routes, enforce_ordering
from chanlite.auth import channel_session_user, channel_session_user_from_http, login, logout
from chanlite.sessions import SessionMiddleware

DB_PATH = "chat.db"
NAME = re.compile(r"^[a-zA-Z0-9_]{1,32}$")
ROOM = r"^/chat/(?P<room>[a-zA-Z0-9_]+)/$"

# -- the site: log in and out over HTTP ----------------------------------------------


async def login_view(request: Request) -> Response:
    form = parse_qs((await request.body()).decode())
    name = form.get("name", [""])[0]
    if not NAME.match(name):
        return PlainTextResponse("a name is 1-32 letters, digits or '_'", status_code=400)
    login(request.session, name)
    return PlainTextResponse(f"logged in as {name}")


async def logout_view(request: Request) -> Response:
    logout(request.session)
    return PlainTextResponse("logged out")


site = Starlette(
    routes=[
        Route("/login", login_view, methods=["POST"]),
        Route("/logout", logout_view, methods=["POST"]),
    ]
)
site.add_middleware(SessionMiddleware)

# -- the consumers ---------------------------------------------------------------------

routes = Routes()


@routes.consumer("websocket.connect", path=ROOM)
@enforce_ordering(slight=True)
@channel_session_user_from_http
def ws_add(message: Message, room: str) -> None:
    if not message.user.is_authenticated:
        raise DenyConnection
    Group(f"chat-{room}").add(message.reply_channel)
    message.reply_channel.send({"accept": True})


@routes.consumer("websocket.receive", path=ROOM)
@enforce_ordering(slight=True)
@channel_session_user
def ws_message(message: Message, room: str) -> None:
    # message.user was stored in the channel session by ws_add, which ran first.
    Channel("chat-messages").send({"room": room, "user": message.user.id, "text": message["text"]})


@routes.consumer("websocket.disconnect", path=ROOM)
@enforce_ordering(slight=True)
@channel_session_user
def ws_disconnect(message: Message, room: str) -> None:
    Group(f"chat-{room}").discard(message.reply_channel)


@routes.consumer("chat-messages")
def msg_consumer(message: Message) -> None:
    room, user, text = message["room"], message["user"], message["text"]
    with closing(sqlite3.connect(DB_PATH)) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS messages (room TEXT, user TEXT, text TEXT)")
        db.execute("INSERT INTO messages VALUES (?, ?, ?)", (room, user, text))
    Group(f"chat-{room}").send({"text": f"{user}: {text}"})


app = Chanlite(routes, app=site)


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    from chanlite.sessions import SESSION_COOKIE
    from chanlite.testing import ChanliteTestClient

    def log_in(client: ChanliteTestClient, name: str) -> dict[str, str]:
        """Log ``name`` in; return the Cookie header that carries their session."""
        client.cookies.clear()
        assert client.post("/login", data={"name": name}).status_code == 200
        cookie = {"cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}
        client.cookies.clear()
        return cookie

    with tempfile.TemporaryDirectory() as tmp, ChanliteTestClient(app) as client:
        DB_PATH = str(Path(tmp) / "chat.db")
        alice, bob = log_in(client, "alice"), log_in(client, "bob")
        with (
            client.websocket_connect("/chat/lobby/", headers=alice) as alice_ws,
            client.websocket_connect("/chat/lobby/", headers=bob) as bob_ws,
        ):
            for text in ("one", "two", "three"):  # sent at once, without waiting
                alice_ws.send_text(text)
            expected = {"alice: one", "alice: two", "alice: three"}
            assert {bob_ws.receive_text() for _ in range(3)} == expected
            assert {alice_ws.receive_text() for _ in range(3)} == expected
        client.run_until_idle()
        assert client.group_channels("chat-lobby") == set()
        with closing(sqlite3.connect(DB_PATH)) as db:
            (count,) = db.execute("SELECT count(*) FROM messages WHERE user = 'alice'").fetchone()
        assert count == 3
    print("tutorial_08_ordering: bob heard alice's three messages; all three were stored")
