"""Tutorial, stage 2: a WebSocket echo server.

Serve it (saved as ``chat.py``) with ``chanlite serve chat:routes``.
"""

from __future__ import annotations

from chanlite import Message, Routes

routes = Routes()


@routes.consumer("websocket.receive")
def ws_message(message: Message) -> None:
    # Every frame arrives on websocket.receive; its reply channel leads back to
    # the socket it came from.
    message.reply_channel.send({"text": message["text"]})


if __name__ == "__main__":
    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(Chanlite(routes)) as client:
        # No consumer on websocket.connect: the default one accepts the socket.
        with client.websocket_connect("/chat/") as ws:
            ws.send_text("hello world")
            assert ws.receive_text() == "hello world"
        # No consumer on http.request: HTTP goes to the host app (none here: 404).
        assert client.get("/").status_code == 404
    print("tutorial_02_echo: 'hello world' came back")
