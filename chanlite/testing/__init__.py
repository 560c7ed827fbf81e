"""Test tools for chanlite apps: an in-process harness with a sync facade.

``ChanliteTestClient`` is Starlette's ``TestClient`` plus the channel side: use it as a
context manager so the app's lifespan (layer, reply reader, workers) runs, then
connect WebSockets, make HTTP requests, send to channels, run workers until idle and
read groups::

    with ChanliteTestClient(Chanlite(routes)) as client:
        with client.websocket_connect("/chat/lobby/") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
        client.channel_send("chat-messages", {"text": "hello"})
        client.run_until_idle()
"""

from __future__ import annotations

from ._client import ChanliteTestClient as ChanliteTestClient

__all__ = ["ChanliteTestClient"]
