"""A routing table built from route() and include(): filters, named groups, first match.

Run it with ``chanlite serve routing_table:routing``.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse

from chanlite import Channel, Message, include, route
from chanlite.http import response_to_messages


def join(message: Message, room: str) -> None:
    message.reply_channel.send({"accept": True})


def say(message: Message, room: str, command: str) -> None:
    message.reply_channel.send({"text": f"{command} in {room}"})


def chat(message: Message, room: str) -> None:
    message.reply_channel.send({"text": f"{room}: {message['text']}"})


def article(message: Message, year: str, slug: str) -> None:
    for reply in response_to_messages(PlainTextResponse(f"{slug} ({year})")):
        message.reply_channel.send(reply)


def resize(message: Message, size: str) -> None:
    Channel(message["reply_to"]).send({"resized": message["image"], "to": int(size)})


ROOM = r"^/(?P<room>[\w-]+)/$"

chat_routing = [
    route("websocket.connect", join, path=ROOM),
    # Filters on several keys must all match; "text" is a key of websocket.receive.
    route("websocket.receive", say, path=ROOM, text=r"^/(?P<command>\w+)"),
    route("websocket.receive", chat, path=ROOM),  # first match wins: commands go above
]

routing = [
    include(chat_routing, path=r"^/chat"),  # joined: ^/chat/(?P<room>[\w-]+)/$
    route("http.request", article, path=r"^/(?P<year>\d{4})/(?P<slug>[\w-]+)/$", method="^GET$"),
    # Any channel, any string key of the content: here a background channel.
    route(["thumbnails", "images"], resize, size=r"^(?P<size>\d+)$"),
]


if __name__ == "__main__":
    from chanlite import Chanlite, Routes
    from chanlite.testing import ChanliteTestClient

    table = Routes(routing)  # flattened: includes folded into their routes
    first = next(iter(table))
    assert first.patterns == {"path": r"^/chat/(?P<room>[\w-]+)/$"}
    message = Message({"path": "/chat/lobby/", "text": "/wave"}, "websocket.receive")
    assert table.match(message) == (say, {"room": "lobby", "command": "wave"})

    with ChanliteTestClient(Chanlite(routing)) as client:
        with client.websocket_connect("/chat/lobby/") as ws:
            ws.send_text("/wave")
            assert ws.receive_text() == "wave in lobby"
            ws.send_text("hello")
            assert ws.receive_text() == "lobby: hello"
        assert client.get("/2024/routing/").text == "routing (2024)"
        assert client.post("/2024/routing/").status_code == 404  # method filter: no match

        client.channel_send("images", {"image": "cat.png", "size": "128", "reply_to": "done"})
        assert client.channel_receive("done") == {"resized": "cat.png", "to": 128}
    print("routing_table: kwargs came from the path, the text, the year/slug and the size")
