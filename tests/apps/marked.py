"""A module of bare ``@consumer`` marks, served as ``chanlite serve tests.apps.marked``."""

from __future__ import annotations

from chanlite import Message, consumer


@consumer("websocket.receive", path=r"^/marked/$")
def marked_echo(message: Message) -> None:
    message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]


@consumer("jobs")
async def job(message: Message) -> None:
    """A background-channel consumer."""
