"""Names of the protocol channels and reply keys (DESIGN §6), defined once."""

from __future__ import annotations

HTTP_REQUEST = "http.request"
WEBSOCKET_CONNECT = "websocket.connect"
WEBSOCKET_RECEIVE = "websocket.receive"
WEBSOCKET_DISCONNECT = "websocket.disconnect"

#: Channels that carry one socket's lifecycle, in ``order``.
WEBSOCKET_CHANNELS = (WEBSOCKET_CONNECT, WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT)

#: Reply keys that accept a socket when they reach it before any ``accept``.
ACCEPTING_KEYS = ("text", "bytes")


def accepts(reply: dict[str, object]) -> bool:
    """True if sending ``reply`` to a socket's reply channel opens the socket."""
    # Spelled out rather than looping over ACCEPTING_KEYS: it runs for every send to
    # a reply channel inside a consumer.
    return reply.get("accept") is True or "text" in reply or "bytes" in reply
