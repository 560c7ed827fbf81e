"""Tutorial, stage 3: a chat. Every socket joins the "chat" group; every frame goes
to the whole group.

Serve it (saved as ``chat.py``) with ``chanlite serve chat:routes``.
"""

from __future__ import annotations

from chanlite import Group, Message, Routes

routes = Routes()


@routes.consumer("websocket.connect")
def ws_add(message: Message) -> None:
    Group("chat").add(message.reply_channel)
    message.reply_channel.send({"accept": True})


@routes.consumer("websocket.receive")
def ws_message(message: Message) -> None:
    Group("chat").send({"text": f"[user] {message['text']}"})


@routes.consumer("websocket.disconnect")
def ws_disconnect(message: Message) -> None:
    Group("chat").discard(message.reply_channel)


if __name__ == "__main__":
    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(Chanlite(routes)) as client:
        with client.websocket_connect("/chat/") as one, client.websocket_connect("/chat/") as two:
            assert len(client.group_channels("chat")) == 2
            one.send_text("hello world")
            assert one.receive_text() == two.receive_text() == "[user] hello world"
        client.run_until_idle()  # let the disconnect consumers run
        assert client.group_channels("chat") == set()
    print("tutorial_03_groups: both sockets got the message; the group is empty again")
