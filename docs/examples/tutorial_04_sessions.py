"""Tutorial, stage 4: chat rooms. The room comes from the socket's path
(``ws://host/lobby/``) and is kept in the socket's channel session.

Serve it (saved as ``chat.py``) with ``chanlite serve chat:routes``.
"""

from __future__ import annotations

from chanlite import Group, Message, Routes, channel_session

routes = Routes()


@routes.consumer("websocket.connect")
@channel_session
def ws_connect(message: Message) -> None:
    # Work out the room name from the path (ignore slashes).
    room = message["path"].strip("/")
    # Add the socket to the room's group, save the room in the session, accept.
    Group(f"chat-{room}").add(message.reply_channel)
    message.channel_session["room"] = room
    message.reply_channel.send({"accept": True})


@routes.consumer("websocket.receive")
@channel_session
def ws_message(message: Message) -> None:
    room = message.channel_session["room"]
    Group(f"chat-{room}").send({"text": message["text"]})


@routes.consumer("websocket.disconnect")
@channel_session
def ws_disconnect(message: Message) -> None:
    room = message.channel_session.get("room")
    if room is not None:  # None if the connect consumer refused the socket
        Group(f"chat-{room}").discard(message.reply_channel)


if __name__ == "__main__":
    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(Chanlite(routes)) as client:
        with (
            client.websocket_connect("/lobby/") as lobby,
            client.websocket_connect("/garden/") as garden,
        ):
            lobby.send_text("hi lobby")
            garden.send_text("hi garden")
            # Each socket hears only its own room.
            assert lobby.receive_text() == "hi lobby"
            assert garden.receive_text() == "hi garden"
        client.run_until_idle()
        assert client.group_channels("chat-lobby") == set()
    print("tutorial_04_sessions: each room heard only its own messages")
