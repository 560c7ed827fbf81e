"""What happens to a message that no route matches."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from chanlite import Chanlite, Message, Routes

routes = Routes()


@routes.consumer("websocket.receive", path=r"^/echo/$")
def echo(message: Message) -> None:
    message.reply_channel.send({"text": message["text"]})


@routes.consumer("jobs", kind=r"^email$")
def send_email(message: Message) -> None:
    pass


site = Starlette(routes=[Route("/", lambda request: PlainTextResponse("home page"))])


class Lines(logging.Handler):
    """Keeps the worker's log lines."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


if __name__ == "__main__":
    from chanlite.testing import ChanliteTestClient

    log = Lines()
    logging.getLogger("chanlite.worker").addHandler(log)
    with ChanliteTestClient(Chanlite(routes, app=site)) as client:
        # No connect consumer is routed: the default one accepts the socket.
        with client.websocket_connect("/echo/") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
        # Connected anywhere; what the socket sends is dropped without a word.
        with client.websocket_connect("/elsewhere/") as ws:
            ws.send_text("anyone?")
        # HTTP with no http.request route goes to the host app.
        assert client.get("/").text == "home page"
        # A routed channel whose filters do not match: logged at ERROR, dropped.
        client.channel_send("jobs", {"kind": "sms"})
        client.run_until_idle()
    assert log.lines == ["ERROR no consumer for a message on channel 'jobs'; dropped"]
    print("routing_defaults: sockets accepted, frames dropped, HTTP to the host, one ERROR")
