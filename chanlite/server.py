"""The interface server: HTTP requests and WebSocket connections in, replies out.

It runs no user code. Each connection gets a reply channel under the process's one
reply prefix ``interface.<id>!``, and every reply for every connection arrives
through that prefix (see :mod:`chanlite.replies`). A reply is written to its socket
at once when nothing is waiting ahead of it; a writer task runs only while a socket
has replies waiting (see :mod:`chanlite.sockets`).

The interface depends on the layer contract alone: it sends through the layer's
``send_waiting`` and reads ``process_local`` and ``attach_reader``, whatever the layer.
Protocol messages that meet a full channel wait for room, first come first served:
a frame up to ``receive_full_timeout`` (then 1013), a connect up to
``websocket_connect_timeout`` (then 503), a disconnect up to ``receive_full_timeout``
(then it is dropped with a warning).

WebSocket lifecycle (DESIGN §6): ``websocket.connect`` (order 0), one
``websocket.receive`` per frame (order 1..n), ``websocket.disconnect`` (order n+1) for
every socket that got a reply channel, also when it was rejected.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import http_relay
from .config import InterfaceSettings
from .default_routes import default_connect
from .exceptions import ChannelFull, MessageTooLarge
from .http_relay import log_layer_failure
from .layers.base import INTERFACE_PREFIX, BaseChannelLayer
from .metrics import Metrics
from .ordering import ordering_mode
from .presence_keeper import socket_closed
from .protocol import (
    HTTP_REQUEST,
    TRACE_KEY,
    WEBSOCKET_CONNECT,
    WEBSOCKET_DISCONNECT,
    WEBSOCKET_RECEIVE,
    header,
    http_request_content,
    route_path,
    websocket_connect_content,
)
from .recovery import Rejoin
from .replies import Replies
from .routing import Routes
from .socket_recovery import recovery_for
from .sockets import (
    CLOSE_GOING_AWAY,
    CLOSE_NEVER_OPENED,
    CLOSE_NORMAL,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    Socket,
    finish_writes,
)

if TYPE_CHECKING:
    from .tracing import Tracing

logger = logging.getLogger("chanlite.server")


# UTF-8 takes at most this many bytes per character: a text frame of at most
# limit / 4 characters is under the limit without encoding it to count.
_MAX_UTF8_BYTES = 4
# Frames up to this size (in characters or bytes) are handed to memory:// uncopied:
# far enough under the codec's 1 MiB limit that the message cannot reach it.
_OWNED_FRAME_LIMIT = 512 * 1024
# Close codes with which the ASGI server ends a socket whose client broke the protocol
# (uvicorn: a frame over ws_max_size, text that is not UTF-8), and what they mean.
_PROTOCOL_FAILURES = {
    1002: "protocol error",
    1007: "invalid frame data, such as a text frame that is not UTF-8",
    1009: "message too big",
}

# The reply the default connect consumer sends.
_ACCEPT: dict[str, Any] = {"accept": True}


class InterfaceServer:
    """Turns ASGI connections into channel messages and relays replies."""

    def __init__(
        self,
        layer: BaseChannelLayer,
        routes: Routes,
        settings: InterfaceSettings,
        *,
        local_workers: bool = False,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        """``routes`` is the served table (defaults included). ``local_workers``: the
        app runs its workers in this process (so on memory:// nobody else could read
        a message this interface sends). ``metrics``: where to count (a fresh
        :class:`~chanlite.metrics.Metrics` when None). ``tracing``: trace requests,
        sockets and replies (:mod:`chanlite.tracing`)."""
        self.layer = layer
        self.metrics = metrics if metrics is not None else Metrics(routes.channels)
        self.tracing = tracing
        self.routes = routes
        self.settings = settings
        self.prefix = f"{INTERFACE_PREFIX}{secrets.token_hex(6)}!"
        #: This process's reply channels, and who gets what arrives on each.
        self.replies = Replies(layer, self.prefix, tracing)
        self._sockets: dict[str, Socket] = {}
        # Set once every socket is being closed (shutdown): no worker is left to make
        # room, so a disconnect that finds its channel full is dropped at once.
        self._closing = False
        # A connect that only the default consumer would take is accepted here when
        # nothing could tell the difference: memory://, workers in this process (no
        # other reader of websocket.connect), and no ordering that counts order 0.
        self._answers_connects = (
            local_workers
            and layer.process_local
            and not any(ordering_mode(item.consumer) for item in routes)
        )

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Start receiving this process's replies (see :class:`~chanlite.replies.Replies`)."""
        self.replies.start()

    async def stop(self) -> None:
        """Stop receiving replies."""
        await self.replies.stop()

    async def drain_replies(self) -> None:
        """Deliver every reply already waiting for this process's connections (a
        local reader gets them as they come)."""
        await self.replies.drain()
        sockets = list(self._sockets.values())
        await finish_writes([sock.flushed() for sock in sockets], "their last replies")

    async def close_all(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Close every open socket with ``code`` (graceful shutdown uses 1001); one
        still writing (its client is not reading) is left to the ASGI server."""
        self._closing = True
        sockets = [sock for sock in self._sockets.values() if not sock.writing]
        await finish_writes([sock.close(code) for sock in sockets], "their close frames")

    @property
    def connection_count(self) -> int:
        """How many connections currently hold a reply channel."""
        return len(self.replies)

    # -- WebSocket --------------------------------------------------------------

    async def handle_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one WebSocket connection from handshake to disconnect."""
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        origin = header(scope, b"origin")
        if not self.settings.origin_allowed(origin):
            logger.info("rejected a WebSocket from origin %r (not in allowed_origins)", origin)
            self.metrics.handshakes["origin"] += 1
            await send({"type": "websocket.close", "code": 1008})
            return
        reply_channel = await self.layer.new_channel(self.prefix)
        sock = Socket(send, reply_channel, self.settings.max_pending_replies, self.metrics)
        self.replies[reply_channel] = sock.deliver
        self._sockets[reply_channel] = sock
        try:
            await self._run_socket(sock, scope, receive)
        finally:
            del self.replies[reply_channel]
            del self._sockets[reply_channel]
            await socket_closed(self.layer, reply_channel)  # presence held before any discard
            await self._send_disconnect(sock, scope)

    async def _run_socket(self, sock: Socket, scope: Scope, receive: Receive) -> None:
        path = route_path(scope)
        if self.tracing is None:
            opened = await self._open(sock, scope, path)
        else:
            with self.tracing.server_span(scope, path) as span:
                sock.trace = span.carrier
                opened = await self._open(sock, scope, path)
                span.opened(opened)
        if not opened:
            return
        self.metrics.connections += 1
        try:
            await self._read_frames(sock, path, receive)
        finally:
            self.metrics.connections -= 1
            self.metrics.closes[sock.close_code or CLOSE_NORMAL] += 1

    async def _open(self, sock: Socket, scope: Scope, path: str) -> bool:
        """Send the connect (or answer it here) and wait for the verdict; True if open.

        A function of its own so the connect message is not kept alive, in a
        suspended frame, for as long as the socket is open.
        """
        content = websocket_connect_content(scope, path, sock.reply_channel)
        sock.recovery = recovery_for(content, sock.metrics)
        if sock.trace is not None:
            content[TRACE_KEY] = sock.trace
        if self._answers_connects and self._only_default_accepts(content):
            sock.deliver(_ACCEPT)
            if sock.recovery is not None:  # nothing re-joined: nothing recovered
                sock.deliver(Rejoin(sock.reply_channel, content["positions"], None).summary())
            self.metrics.handshakes["accepted"] += 1
            return sock.is_open
        timeout = self.settings.websocket_connect_timeout
        try:
            await self.layer.send_waiting(WEBSOCKET_CONNECT, content, timeout)
        except MessageTooLarge as exc:
            logger.info("refused a socket with 431: its websocket.connect %s", exc)
            await self._refuse(sock, scope, 431)
            return False
        except ChannelFull:
            logger.warning(
                "websocket.connect stayed full for %.1fs; refusing a socket with 503", timeout
            )
            self.metrics.channel_full(WEBSOCKET_CONNECT)
            await self._refuse(sock, scope, 503)
            return False
        except Exception as exc:
            log_layer_failure("refused a socket with 503", exc)
            await self._refuse(sock, scope, 503)
            return False
        self.metrics.message_sent(WEBSOCKET_CONNECT)
        outcome = await sock.wait_open(timeout)
        self.metrics.handshakes[outcome] += 1
        return outcome == "accepted"

    async def _refuse(self, sock: Socket, scope: Scope, status: int) -> None:
        """Refuse a handshake whose connect the layer did not take."""
        self.metrics.handshakes["refused"] += 1
        await sock.deny(scope, status)

    def _only_default_accepts(self, content: dict[str, Any]) -> bool:
        """True if no routed consumer but the default one would take this connect."""
        found = self.routes.match_content(WEBSOCKET_CONNECT, content)
        return found is not None and found[0].consumer is default_connect

    async def _read_frames(self, sock: Socket, path: str, receive: Receive) -> None:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                code = event.get("code", CLOSE_NORMAL)
                if code in _PROTOCOL_FAILURES:
                    _log_protocol_failure(code, event.get("reason"))
                sock.client_closed(code)
                return
            if event["type"] != "websocket.receive":
                continue
            self.metrics.frames_received += 1
            frame = self._frame_content(sock, path, event)
            if frame is None or not await self._send_frame(sock, frame):
                await sock.close(sock.close_code or CLOSE_TOO_BIG)
                return

    def _frame_content(self, sock: Socket, path: str, event: Message) -> dict[str, Any] | None:
        text, data = event.get("text"), event.get("bytes")
        limit = self.settings.max_frame_size
        if text is not None:
            size = len(text) if len(text) * _MAX_UTF8_BYTES <= limit else len(text.encode())
        else:
            size = len(data) if data is not None else 0
        if size > limit:
            logger.info("closed a socket with 1009: a %d-byte frame is over the limit", size)
            sock.close_code = CLOSE_TOO_BIG
            return None
        sock.order += 1
        content: dict[str, Any] = {
            "reply_channel": sock.reply_channel,
            "path": path,
            "order": sock.order,
        }
        if text is not None:
            content["text"] = text
        else:
            content["bytes"] = data or b""
        if sock.trace is not None:
            content[TRACE_KEY] = sock.trace
        return content

    async def _send_frame(self, sock: Socket, content: dict[str, Any]) -> bool:
        """Send a frame's message; while the channel is full the socket is not read
        (backpressure) and its frame waits its turn for room. False if it could not
        be sent: the socket's close code is set, and its order number is given back,
        so the disconnect that follows takes it and ``enforce_ordering`` never waits
        for a frame that never left."""
        timeout = self.settings.receive_full_timeout
        # A frame's message is a dict of str, int and one str or bytes that nobody
        # else holds: it can be handed over uncopied, unless it might be near the
        # codec's size limit, which only encoding it checks.
        owned = _frame_size(content) <= _OWNED_FRAME_LIMIT
        try:
            await self.layer.send_waiting(WEBSOCKET_RECEIVE, content, timeout, owned=owned)
            self.metrics.sent[WEBSOCKET_RECEIVE] += 1
            return True
        except MessageTooLarge:
            logger.info("closed a socket with 1009: its frame's message is over the limit")
            sock.close_code = CLOSE_TOO_BIG
        except ChannelFull:
            logger.warning(
                "closed a socket with 1013: websocket.receive stayed full for %.1fs", timeout
            )
            self.metrics.channel_full(WEBSOCKET_RECEIVE)
            sock.close_code = CLOSE_TRY_AGAIN
        except Exception as exc:
            log_layer_failure("closed a socket with 1013", exc)
            sock.close_code = CLOSE_TRY_AGAIN
        sock.order -= 1
        return False

    async def _send_disconnect(self, sock: Socket, scope: Scope) -> None:
        code = sock.close_code if sock.opened else CLOSE_NEVER_OPENED
        content = {
            "reply_channel": sock.reply_channel,
            "path": route_path(scope),
            "code": code or CLOSE_NORMAL,
            "order": sock.order + 1,
        }
        if sock.trace is not None:
            content[TRACE_KEY] = sock.trace
        timeout = 0.0 if self._closing else self.settings.receive_full_timeout
        try:
            await self.layer.send_waiting(WEBSOCKET_DISCONNECT, content, timeout)
            self.metrics.message_sent(WEBSOCKET_DISCONNECT)
        except ChannelFull:
            self.metrics.channel_full(WEBSOCKET_DISCONNECT)
            logger.warning(
                "websocket.disconnect stayed full for %.1fs; a disconnect message was dropped",
                timeout,
            )
        except Exception as exc:
            log_layer_failure("dropped a websocket.disconnect", exc)

    # -- HTTP -------------------------------------------------------------------

    async def handle_http(
        self, scope: Scope, receive: Receive, send: Send, fallback: ASGIApp
    ) -> None:
        """Serve one HTTP request through an ``http.request`` consumer, or ``fallback``."""
        content = http_request_content(scope, route_path(scope))
        if self.routes.match_content(HTTP_REQUEST, content) is None:
            await fallback(scope, receive, send)
            return
        if self.tracing is None:
            await self._relay(content, scope, receive, send)
            return
        with self.tracing.server_span(scope, content["path"]) as span:
            if span.carrier is not None:
                content[TRACE_KEY] = span.carrier
            await self._relay(content, scope, receive, span.watch(send))

    async def _relay(
        self, content: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Read the body, send the request with it, and write the replies."""
        body = await http_relay.read_body(receive, self.settings.max_frame_size)
        if body is None:
            await PlainTextResponse("Request body too large", 413)(scope, receive, send)
            return
        content["body"] = body
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        content["reply_channel"] = reply_channel = await self.layer.new_channel(self.prefix)
        self.replies[reply_channel] = lambda reply, _writes: replies.put_nowait(reply)
        try:
            timeout = self.settings.http_timeout
            await http_relay.relay(
                self.layer, content, replies, timeout, scope, receive, send, self.metrics
            )
        finally:
            del self.replies[reply_channel]


def _log_protocol_failure(code: int, reason: object) -> None:
    detail = f": {reason}" if reason else ""
    logger.info("a socket closed with %d (%s)%s", code, _PROTOCOL_FAILURES[code], detail)


def _frame_size(content: dict[str, Any]) -> int:
    """A frame message's text length or byte count."""
    value = content.get("text")
    if value is None:
        value = content.get("bytes", b"")
    return len(value)
