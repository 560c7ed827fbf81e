# rooms.py: run with `chanlite serve rooms:routes`
from chanlite import Group, Message, Routes

routes = Routes()
ROOM = r"^/chat/(?P<room>[a-zA-Z0-9_-]+)/$"


@routes.consumer("websocket.connect", path=ROOM)
def join(message: Message, room: str) -> None:
    message.reply_channel.send({"accept": True})
    Group(f"chat-{room}").add(message.reply_channel)


@routes.consumer("websocket.receive", path=ROOM)
def say(message: Message, room: str) -> None:
    Group(f"chat-{room}").send({"text": message["text"]})


@routes.consumer("websocket.disconnect", path=ROOM)
def leave(message: Message, room: str) -> None:
    Group(f"chat-{room}").discard(message.reply_channel)


if __name__ == "__main__":  # the README shows the program above this line
    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(Chanlite(routes)) as client:
        with (
            client.websocket_connect("/chat/lobby/") as one,
            client.websocket_connect("/chat/lobby/") as two,
            client.websocket_connect("/chat/kitchen/") as other,
        ):
            one.send_text("hello")
            assert one.receive_text() == two.receive_text() == "hello"
            other.send_text("elsewhere")
            assert other.receive_text() == "elsewhere"
        client.run_until_idle()
        assert client.group_channels("chat-lobby") == set()
    print("readme_rooms: a room's sockets hear each other, and only each other")
