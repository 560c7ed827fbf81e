"""Consumers marked with @consumer and collected from their module.

Run it with ``chanlite serve routing_marks`` (a module, no attribute).
"""

from __future__ import annotations

from chanlite import Channel, Message, channel_session, consumer


@consumer("websocket.connect", path=r"^/counter/$")
@channel_session  # consumer() goes on top, above the other decorators
def start(message: Message) -> None:
    message.channel_session["count"] = 0
    message.reply_channel.send({"accept": True})


@consumer("websocket.receive", path=r"^/counter/$")
@channel_session
def count(message: Message) -> None:
    message.channel_session["count"] += 1
    message.reply_channel.send({"text": str(message.channel_session["count"])})


@consumer("websocket.receive", path=r"^/echo/$")
@consumer("websocket.receive", path=r"^/shout/(?P<times>[1-9])/$")  # stacked: two routes
def echo(message: Message, times: str = "1") -> None:
    message.reply_channel.send({"text": message["text"] * int(times)})


@consumer("audit")
async def audit(message: Message) -> None:
    await Channel("audit-log").asend({"seen": message["event"]})


if __name__ == "__main__":
    import sys

    from chanlite import Chanlite, Routes
    from chanlite.testing import ChanliteTestClient

    routes = Routes.from_module(sys.modules[__name__])  # what `chanlite serve` does
    assert [item.name.rsplit(".", 1)[1] for item in routes] == [
        "start",
        "count",
        "echo",
        "echo",
        "audit",
    ]
    with ChanliteTestClient(Chanlite(routes)) as client:
        with client.websocket_connect("/counter/") as ws:
            for expected in ("1", "2"):
                ws.send_text("tick")
                assert ws.receive_text() == expected
        with client.websocket_connect("/shout/3/") as ws:
            ws.send_text("ho")
            assert ws.receive_text() == "hohoho"
        client.channel_send("audit", {"event": "login"})
        assert client.channel_receive("audit-log") == {"seen": "login"}
    print("routing_marks: five routes collected in definition order, two for echo")
