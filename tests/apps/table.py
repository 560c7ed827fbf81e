"""A module whose consumers are registered on a ``Routes`` table, served as
``chanlite serve tests.apps.table`` (no ``:routes``)."""

from __future__ import annotations

from chanlite import Message, Routes

routes = Routes()


@routes.consumer("websocket.receive", path=r"^/table/$")
def table_echo(message: Message) -> None:
    message.reply_channel.send({"text": message["text"]})  # type: ignore[union-attr]
