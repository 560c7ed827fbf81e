"""Buffered sends, errors in consumers, DenyConnection and ConsumeLater."""

from __future__ import annotations

import logging

from chanlite import Channel, ConsumeLater, DenyConnection, Message, Routes

routes = Routes()
#: Pretend that the thumbnail service is still starting.
READY_AFTER_TRIES = 3
tries: list[int] = []


@routes.consumer("websocket.connect", path=r"^/private/$")
def private(message: Message) -> None:
    if "token=letmein" not in message["query_string"]:
        raise DenyConnection  # rejected (403), nothing logged
    message.reply_channel.send({"accept": True})


@routes.consumer("websocket.connect", path=r"^/broken/$")
def broken(message: Message) -> None:
    raise RuntimeError("database down")  # logged; not accepted yet, so rejected


@routes.consumer("websocket.receive", path=r"^/private/$")
def careful(message: Message) -> None:
    message.reply_channel.send({"text": "working on it"})  # buffered...
    if message["text"] == "fail":
        raise ValueError("cannot do that")  # ...and still sent: the socket stays open
    message.reply_channel.send({"text": "done"})


@routes.consumer("thumbnails")
def thumbnail(message: Message) -> None:
    tries.append(1)
    if len(tries) < READY_AFTER_TRIES:
        raise ConsumeLater  # back at the end of the channel, run again later
    Channel("thumbnails-done").send({"image": message["image"], "tries": len(tries)})


if __name__ == "__main__":
    from starlette.websockets import WebSocketDisconnect

    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    logging.getLogger("chanlite.worker").setLevel(logging.CRITICAL)  # keep the demo quiet

    def refused(client: ChanliteTestClient, path: str) -> bool:
        try:
            with client.websocket_connect(path):
                return False
        except WebSocketDisconnect:  # the handshake was rejected
            return True

    with ChanliteTestClient(Chanlite(routes)) as client:
        assert refused(client, "/private/") and refused(client, "/broken/")
        with client.websocket_connect("/private/?token=letmein") as ws:
            ws.send_text("fail")
            assert ws.receive_text() == "working on it"
            ws.send_text("go")  # the socket is still open
            assert [ws.receive_text(), ws.receive_text()] == ["working on it", "done"]
        client.channel_send("thumbnails", {"image": "cat.png"})
        assert client.channel_receive("thumbnails-done") == {"image": "cat.png", "tries": 3}
    print("consumers_errors: two sockets refused, the failed frame still answered, 3 tries")
