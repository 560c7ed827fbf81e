"""Consumers, sync and async: the message, replies, groups and a background channel.

Run it with ``chanlite serve consumers_basics:routes``.
"""

from __future__ import annotations

import threading

from chanlite import Channel, Group, Message, Routes

routes = Routes()
ROOM = r"^/rooms/(?P<room>[\w-]+)/$"
#: Words seen by the background consumer (a stand-in for a database).
WORDS: list[str] = []


@routes.consumer("websocket.connect", path=ROOM)
def join(message: Message, room: str) -> None:
    # A def consumer runs in one of the worker's threads: blocking calls are fine.
    assert threading.current_thread().name.startswith("chanlite-worker")
    message.reply_channel.send({"accept": True})
    Group(f"room-{room}").add(message.reply_channel)


@routes.consumer("websocket.receive", path=ROOM)
async def say(message: Message, room: str) -> None:
    # An async def consumer runs on the event loop: use the a-prefixed twins.
    await Group(f"room-{room}").asend({"text": f"{room}: {message['text']}"})
    await Channel("count-words").asend({"text": message["text"]})


@routes.consumer("websocket.disconnect", path=ROOM)
def leave(message: Message, room: str) -> None:
    Group(f"room-{room}").discard(message.reply_channel)


@routes.consumer("count-words")
def count_words(message: Message) -> None:
    # A background channel: no socket behind it, so no reply channel.
    assert message.reply_channel is None and message.channel.name == "count-words"
    WORDS.extend(message["text"].split())


if __name__ == "__main__":
    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(Chanlite(routes)) as client:
        with (
            client.websocket_connect("/rooms/lobby/") as alice,
            client.websocket_connect("/rooms/lobby/") as bob,
        ):
            assert len(client.group_channels("room-lobby")) == 2
            alice.send_text("hello there")
            assert bob.receive_text() == "lobby: hello there"
            assert alice.receive_text() == "lobby: hello there"
        client.run_until_idle()  # the disconnects and the background message are done
        assert client.group_channels("room-lobby") == set()
    assert WORDS == ["hello", "there"]
    print("consumers_basics: both sockets heard it, the group emptied, 2 words counted")
