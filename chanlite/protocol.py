"""The protocol (DESIGN §6): channel names and reply keys, defined once, and the
messages built from an ASGI connection scope."""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

HTTP_REQUEST = "http.request"
WEBSOCKET_CONNECT = "websocket.connect"
WEBSOCKET_RECEIVE = "websocket.receive"
WEBSOCKET_DISCONNECT = "websocket.disconnect"

#: Channels that carry one socket's lifecycle, in ``order``.
WEBSOCKET_CHANNELS = (WEBSOCKET_CONNECT, WEBSOCKET_RECEIVE, WEBSOCKET_DISCONNECT)

#: Reply keys that accept a socket when they reach it before any ``accept``.
ACCEPTING_KEYS = ("text", "bytes")

#: Reserved content key: the trace context a message carries (:mod:`chanlite.tracing`).
#: The worker removes it before user code sees the message, the interface before a
#: client sees a reply, whether or not tracing is on in their process.
TRACE_KEY = "__chanlite_trace__"

#: Reserved content keys of a message sent to a group that keeps a history (DESIGN
#: §11): the group, and the message's position in it. The interface removes them
#: before a client sees the message (``chanlite.v1`` clients get them in the frame).
GROUP_KEY = "__chanlite_group__"
POSITION_KEY = "__chanlite_position__"
#: Reserved key of a message to a reply channel that replays missed messages of a
#: group: ``{REPLAY_KEY: group, "messages": [[position, content], ...]}``.
REPLAY_KEY = "__chanlite_replay__"
#: Reserved key of the message that ends a re-join (:mod:`chanlite.recovery`).
RECOVERY_KEY = "__chanlite_recovery__"
#: The WebSocket subprotocol in which a client takes part in recovery.
SUBPROTOCOL = "chanlite.v1"


def accepts(reply: dict[str, object]) -> bool:
    """True if sending ``reply`` to a socket's reply channel opens the socket."""
    # Spelled out rather than looping over ACCEPTING_KEYS: it runs for every send to
    # a reply channel inside a consumer.
    return reply.get("accept") is True or "text" in reply or "bytes" in reply


def route_path(scope: Scope) -> str:
    """The path as the app sees it: relative to ``root_path`` when mounted."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :] or "/"
    return path


def websocket_connect_content(scope: Scope, path: str, reply_channel: str) -> dict[str, Any]:
    """The ``websocket.connect`` message for an ASGI scope."""
    return {
        "reply_channel": reply_channel,
        "path": path,
        "query_string": scope.get("query_string", b"").decode("latin-1"),
        "headers": _headers(scope),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "scheme": scope.get("scheme", "ws"),
        "subprotocols": list(scope.get("subprotocols", ())),
        "order": 0,
    }


def http_request_content(scope: Scope, path: str) -> dict[str, Any]:
    """The ``http.request`` message for an ASGI scope (body and reply channel added later)."""
    return {
        "http_version": scope.get("http_version", "1.1"),
        "method": scope["method"],
        "scheme": scope.get("scheme", "http"),
        "path": path,
        "query_string": scope.get("query_string", b"").decode("latin-1"),
        "root_path": scope.get("root_path", ""),
        "headers": _headers(scope),
        "body": b"",
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
    }


def _headers(scope: Scope) -> list[list[str]]:
    return [
        [name.decode("latin-1").lower(), value.decode("latin-1")]
        for name, value in scope.get("headers", ())
    ]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def as_bytes(value: object) -> bytes:
    """A reply's ``str`` or ``bytes`` value as bytes (ASCII text as Latin-1)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1") if value.isascii() else value.encode()
    raise TypeError(f"expected str or bytes, got {type(value).__name__}")
