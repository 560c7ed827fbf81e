"""Slight ordering: the connect finishes first; the other messages then run as they come."""

from __future__ import annotations

import time

from chanlite import Message, Routes, channel_session, enforce_ordering

routes = Routes()
events: list[str] = []


@routes.consumer("websocket.connect")
@enforce_ordering(slight=True)
@channel_session
def connect(message: Message) -> None:
    time.sleep(0.2)  # a slow lookup, say
    message.channel_session["room"] = "lobby"
    events.append("connected")
    message.reply_channel.send({"accept": True})


@routes.consumer("websocket.receive")
@enforce_ordering(slight=True)
@channel_session
def receive(message: Message) -> None:
    # The connect has finished, so what it stored in the session is there.
    events.append(f"{message['order']} in {message.channel_session['room']}")


if __name__ == "__main__":
    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(Chanlite(routes)) as client:
        socket = client.new_channel()
        for order in (1, 2, 3):  # the frames get to the layer before the connect
            content = {"reply_channel": socket, "path": "/", "order": order, "text": "hi"}
            client.channel_send("websocket.receive", content)
        client.channel_send("websocket.connect", {"reply_channel": socket, "path": "/", "order": 0})
        client.run_until_idle()
    assert events[0] == "connected"
    assert sorted(events[1:]) == ["1 in lobby", "2 in lobby", "3 in lobby"]  # any order
    print("ordering_slight: the connect ran first; the three frames all saw its session")
