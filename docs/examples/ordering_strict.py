"""Strict ordering: a socket's messages run in ``order``, whatever order they arrive in."""

from __future__ import annotations

import logging
import random
import time

from chanlite import Message, Routes, enforce_ordering

routes = Routes()
#: (socket, order) of every message, in the order the consumer ran them.
ran: list[tuple[str, int]] = []


@routes.consumer(["websocket.connect", "websocket.receive", "websocket.disconnect"])
@enforce_ordering
def record(message: Message) -> None:
    time.sleep(random.uniform(0, 0.01))  # four threads: without ordering, a free-for-all
    ran.append((message["reply_channel"], message["order"]))
    message.reply_channel.send({"text": str(message["order"])})
    if message.get("text") == "oops":
        raise ValueError("a consumer that raises still advances the order")


def socket_messages(reply_channel: str) -> list[tuple[str, dict[str, object]]]:
    """What the interface server sends for one socket: connect, 3 frames, disconnect."""
    base = {"reply_channel": reply_channel, "path": "/"}
    return [
        ("websocket.connect", {**base, "order": 0}),
        ("websocket.receive", {**base, "order": 1, "text": "hi"}),
        ("websocket.receive", {**base, "order": 2, "text": "oops"}),
        ("websocket.receive", {**base, "order": 3, "text": "bye"}),
        ("websocket.disconnect", {**base, "order": 4, "code": 1000}),
    ]


if __name__ == "__main__":
    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    logging.getLogger("chanlite.worker").setLevel(logging.CRITICAL)  # the "oops" traceback
    with ChanliteTestClient(Chanlite(routes)) as client:
        prefixes = ["a!", "b!", "c!"]  # one per socket, to read each one's replies apart
        sockets = [client.new_channel(prefix) for prefix in prefixes]
        messages = [message for socket in sockets for message in socket_messages(socket)]
        random.shuffle(messages)  # the worst a busy layer could do
        for channel, content in messages:
            client.channel_send(channel, content)
        client.run_until_idle()
        for socket, prefix in zip(sockets, prefixes, strict=True):
            assert [order for name, order in ran if name == socket] == [0, 1, 2, 3, 4]
            replies = [client.channel_receive(prefix, timeout=0) for _ in range(5)]
            assert [reply and reply["text"] for reply in replies] == ["0", "1", "2", "3", "4"]
    print("ordering_strict: 3 sockets x 5 messages, shuffled, each socket ran 0, 1, 2, 3, 4")
