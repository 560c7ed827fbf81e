"""The first consumer of the Channels getting-started guide: every HTTP request, on
any path, is answered by a consumer on the ``http.request`` channel.

The interface server turns the request into an ``http.request`` message; the consumer
builds an ordinary Starlette ``Response`` and sends it, encoded as reply messages by
``response_to_messages``, to the request's reply channel.

Run it with ``chanlite serve examples.http_consumer.app:routes``.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse

from chanlite import Message, route
from chanlite.http import response_to_messages


def http_consumer(message: Message) -> None:
    """Say hello, with the path that was asked for."""
    response = PlainTextResponse(f"Hello world! You asked for {message['path']}")
    for reply in response_to_messages(response):
        message.reply_channel.send(reply)  # type: ignore[union-attr]


#: The routing table: one route, no filters, so every request comes here.
routes = [route("http.request", http_consumer)]
