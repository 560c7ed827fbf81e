"""Tutorial, stage 5: who is talking? Users log in over HTTP; their sockets know them.
Users chat with everyone whose name starts with the same letter.

Serve it (saved as ``chat.py``) with ``chanlite serve chat:app``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from chanlite import Chanlite, DenyConnection, Group, Message, Routes
from chanlite.auth import channel_session_user, channel_session_user_from_http, login, logout
from chanlite.sessions import SessionMiddleware

# -- the site: log in and out over HTTP ----------------------------------------------

NAME = re.compile(r"^[a-zA-Z0-9_]{1,32}$")


async def login_view(request: Request) -> Response:
    """POST /login with a form field ``name`` (no passwords in this tutorial)."""
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


def letter_group(message: Message) -> Group:
    return Group(f"chat-{message.user.id[0].lower()}")


@routes.consumer("websocket.connect")
@channel_session_user_from_http
def ws_add(message: Message) -> None:
    if not message.user.is_authenticated:
        raise DenyConnection  # refuse anonymous sockets
    letter_group(message).add(message.reply_channel)
    message.reply_channel.send({"accept": True})


@routes.consumer("websocket.receive")
@channel_session_user
def ws_message(message: Message) -> None:
    letter_group(message).send({"text": f"{message.user.id}: {message['text']}"})


@routes.consumer("websocket.disconnect")
@channel_session_user
def ws_disconnect(message: Message) -> None:
    if message.user.is_authenticated:  # refused sockets get a disconnect too
        letter_group(message).discard(message.reply_channel)


app = Chanlite(routes, app=site)


if __name__ == "__main__":
    from starlette.testclient import WebSocketDenialResponse
    from starlette.websockets import WebSocketDisconnect

    from chanlite.sessions import SESSION_COOKIE
    from chanlite.testing import ChanliteTestClient

    def log_in(client: ChanliteTestClient, name: str) -> dict[str, str]:
        """Log ``name`` in; return the Cookie header that carries their session."""
        client.cookies.clear()
        assert client.post("/login", data={"name": name}).text == f"logged in as {name}"
        cookie = {"cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}
        client.cookies.clear()
        return cookie

    with ChanliteTestClient(app) as client:
        alice, anna, bob = log_in(client, "alice"), log_in(client, "anna"), log_in(client, "bob")
        with (
            client.websocket_connect("/chat/", headers=alice) as alice_ws,
            client.websocket_connect("/chat/", headers=anna) as anna_ws,
            client.websocket_connect("/chat/", headers=bob) as bob_ws,
        ):
            alice_ws.send_text("hi")
            assert alice_ws.receive_text() == anna_ws.receive_text() == "alice: hi"
            bob_ws.send_text("anyone?")  # bob's group is chat-b: he hears only himself
            assert bob_ws.receive_text() == "bob: anyone?"
        try:
            with client.websocket_connect("/chat/"):  # no session cookie
                raise AssertionError("an anonymous socket was accepted")
        except (WebSocketDenialResponse, WebSocketDisconnect):
            pass
    print("tutorial_05_auth: alice and anna chat, bob is alone, anonymous sockets are refused")
