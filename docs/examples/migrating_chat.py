"""The chat of the Channels 1.x getting-started guide, moved to chanlite.

Serve it with ``chanlite serve migrating_chat:channel_routing``.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from chanlite import (
    Channel,
    Group,
    Message,
    channel_session,
    enforce_ordering,
    include,
    route,
)

SAVED: list[dict[str, str]] = []  # stands in for the ChatMessage model


@enforce_ordering(slight=True)
@channel_session
def ws_connect(message: Message, room_name: str) -> None:
    assert message.reply_channel is not None
    params = parse_qs(message["query_string"])  # a str in chanlite, not bytes
    if "username" not in params:
        message.reply_channel.send({"close": True})  # before accept: rejected
        return
    message.reply_channel.send({"accept": True})
    message.channel_session["username"] = params["username"][0]
    Group(f"chat-{room_name}").add(message.reply_channel)


@enforce_ordering(slight=True)
@channel_session
def ws_message(message: Message, room_name: str) -> None:
    Channel("chat-messages").send(
        {
            "room": room_name,
            "username": message.channel_session["username"],
            "text": message["text"],
        }
    )


@enforce_ordering(slight=True)
@channel_session
def ws_disconnect(message: Message, room_name: str) -> None:
    assert message.reply_channel is not None
    Group(f"chat-{room_name}").discard(message.reply_channel)


def msg_consumer(message: Message) -> None:
    SAVED.append({"room": message["room"], "text": message["text"]})
    # Replies carry only reply keys: send {"text": ...}, not message.content.
    payload = {"username": message["username"], "text": message["text"]}
    Group(f"chat-{message['room']}").send({"text": json.dumps(payload)})


ROOM = r"^/(?P<room_name>[a-zA-Z0-9_]+)/$"
chat_routing = [
    route("websocket.connect", ws_connect, path=ROOM),
    route("websocket.receive", ws_message, path=ROOM),
    route("websocket.disconnect", ws_disconnect, path=ROOM),
]
channel_routing = [
    include(chat_routing, path=r"^/chat"),
    route("chat-messages", msg_consumer),
]
