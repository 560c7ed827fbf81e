"""Tutorial, stage 6: routing. The room comes from the path through a named group;
a POST to /poll/ goes to its own consumer.

Serve it (saved as ``chat.py``) with ``chanlite serve chat:routing``.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse

from chanlite import Group, Message, include, route
from chanlite.http import response_to_messages


def chat_connect(message: Message, room: str) -> None:
    Group(f"chat-{room}").add(message.reply_channel)
    message.reply_channel.send({"accept": True})


def chat_message(message: Message, room: str) -> None:
    Group(f"chat-{room}").send({"text": f"[{room}] {message['text']}"})


def chat_disconnect(message: Message, room: str) -> None:
    Group(f"chat-{room}").discard(message.reply_channel)


def poll_consumer(message: Message) -> None:
    for chunk in response_to_messages(PlainTextResponse("vote counted")):
        message.reply_channel.send(chunk)


ROOM = r"^/(?P<room>[a-zA-Z0-9_]+)/$"

chat_routing = [
    route("websocket.connect", chat_connect, path=ROOM),
    route("websocket.receive", chat_message, path=ROOM),
    route("websocket.disconnect", chat_disconnect, path=ROOM),
]

http_routing = [
    route("http.request", poll_consumer, path=r"^/poll/$", method=r"^POST$"),
]

routing = [
    include(chat_routing, path=r"^/chat"),
    include(http_routing),
]


if __name__ == "__main__":
    from chanlite import Chanlite, Routes
    from chanlite.testing import ChanliteTestClient

    # The include joined the two path filters into one.
    first_route = next(iter(Routes(routing)))
    assert first_route.patterns["path"] == r"^/chat/(?P<room>[a-zA-Z0-9_]+)/$"
    with ChanliteTestClient(Chanlite(routing)) as client:
        with client.websocket_connect("/chat/lobby/") as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "[lobby] hello"
        assert client.post("/poll/").text == "vote counted"
        assert client.get("/poll/").status_code == 404  # no route for GET: no host app
    print("tutorial_06_routing: room 'lobby' came from the path; POST /poll/ was routed")
