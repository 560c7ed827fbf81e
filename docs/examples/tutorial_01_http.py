"""Tutorial, stage 1: a consumer that answers every HTTP request itself.

Serve it (saved as ``chat.py``) with ``chanlite serve chat:routes``.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse

from chanlite import Message, Routes
from chanlite.http import response_to_messages

routes = Routes()


@routes.consumer("http.request")
def http_consumer(message: Message) -> None:
    # The request is a dict of JSON types and bytes: read the path straight from it.
    response = PlainTextResponse(f"Hello world! You asked for {message['path']}")
    # Encode the Starlette response into reply messages (status, headers, body).
    for chunk in response_to_messages(response):
        message.reply_channel.send(chunk)


if __name__ == "__main__":
    from chanlite import Chanlite
    from chanlite.testing import ChanliteTestClient

    with ChanliteTestClient(Chanlite(routes)) as client:
        response = client.get("/any/path/")
        assert response.status_code == 200
        assert response.text == "Hello world! You asked for /any/path/"
    print("tutorial_01_http:", response.text)
