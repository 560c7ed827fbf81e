"""Testing a chanlite app with ChanliteTestClient: sockets, groups, channels, workers.

Run it with ``pytest docs/examples/testing_chat.py``, or run this file.
"""

from __future__ import annotations

from chanlite import Chanlite, Group, Message, Routes
from chanlite.testing import ChanliteTestClient

routes = Routes()
SAVED: list[str] = []  # stands in for a database table


@routes.consumer("websocket.connect", path=r"^/chat/(?P<room>\w+)/$")
def join(message: Message, room: str) -> None:
    assert message.reply_channel is not None
    message.reply_channel.send({"accept": True})
    Group(f"chat-{room}").add(message.reply_channel)


@routes.consumer("websocket.receive", path=r"^/chat/(?P<room>\w+)/$")
def say(message: Message, room: str) -> None:
    Group(f"chat-{room}").send({"text": message["text"]})


@routes.consumer("websocket.disconnect", path=r"^/chat/(?P<room>\w+)/$")
def leave(message: Message, room: str) -> None:
    assert message.reply_channel is not None
    Group(f"chat-{room}").discard(message.reply_channel)


@routes.consumer("chat-messages")
def save(message: Message) -> None:
    SAVED.append(message["text"])
    Group(f"chat-{message['room']}").send({"text": message["text"]})


def make_app() -> Chanlite:
    # An explicit layer: CHANLITE_LAYER in the environment would apply otherwise.
    return Chanlite(routes, layer="memory://", secret_key="a-test-key-of-enough-length")


def test_chat() -> None:
    with ChanliteTestClient(make_app()) as client:  # runs the app's lifespan
        with client.websocket_connect("/chat/lobby/") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
            assert len(client.group_channels("chat-lobby")) == 1
            # A message from a background channel reaches the socket too.
            client.channel_send("chat-messages", {"room": "lobby", "text": "saved"})
            assert ws.receive_text() == "saved"
        client.run_until_idle()  # every message taken, every consumer done
        assert client.group_channels("chat-lobby") == set()  # the disconnect ran
        assert SAVED == ["saved"]


def test_group_send_reaches_a_stand_in_reply_channel() -> None:
    with ChanliteTestClient(make_app()) as client:
        reply = client.new_channel("test!")  # like a socket's reply channel: test!<random>
        client.channel_send("websocket.connect", {"reply_channel": reply, "path": "/chat/x/"})
        # Replies to test!<random> are read on the process prefix, test!.
        assert client.channel_receive("test!") == {"accept": True}
        client.run_until_idle()
        assert client.group_channels("chat-x") == {reply}
        client.group_send("chat-x", {"text": "to everyone"})
        assert client.channel_receive("test!") == {"text": "to everyone"}


if __name__ == "__main__":
    test_chat()
    test_group_send_reaches_a_stand_in_reply_channel()
    print("sockets, groups, background channels and stand-in reply channels: ok")
