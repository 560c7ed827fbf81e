"""The interface server: HTTP requests and WebSocket connections in, replies out.

It runs no user code. Each connection gets a reply channel ``<prefix>!<random>``
under the process's one reply prefix ``interface.<id>!``, and every reply for every
connection arrives through that prefix: on ``memory://`` the layer hands replies to
the interface as they are sent (a local reader), on other layers one reader task
takes them with a single ``receive`` on the prefix. Replies for connections that are
gone are dropped. A reply is written to its socket at once when nothing is waiting
ahead of it; a writer task runs only while a socket has replies waiting.

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
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from http import HTTPStatus
from types import CoroutineType
from typing import Any

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._codec import decode
from ._eager import Continuation, run_eagerly
from .config import InterfaceSettings
from .exceptions import ChannelFull, MessageTooLarge
from .layers.base import INTERFACE_PREFIX, BaseChannelLayer
from .layers.memory import InMemoryChannelLayer
from .names import queue_name
from .ordering import ordering_mode
from .protocol import HTTP_REQUEST, WEBSOCKET_CONNECT, WEBSOCKET_DISCONNECT, WEBSOCKET_RECEIVE
from .routing import Routes
from .worker import default_connect

logger = logging.getLogger("chanlite.server")


#: Close codes the interface uses.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
#: The code reported in ``websocket.disconnect`` for a socket that never opened.
CLOSE_NEVER_OPENED = 1006
# Polling bounds while a message waits for room on a full channel of a layer that
# cannot say when room frees up (every layer but memory://).
_FULL_BACKOFF_MIN = 0.001
_FULL_BACKOFF_MAX = 0.05
# UTF-8 takes at most this many bytes per character: a text frame of at most
# limit / 4 characters is under the limit without encoding it to count.
_MAX_UTF8_BYTES = 4
# Frames up to this size (in characters or bytes) are handed to memory:// uncopied:
# far enough under the codec's 1 MiB limit that the message cannot reach it.
_OWNED_FRAME_LIMIT = 512 * 1024
# Pause after a layer error in the reply reader before reading again.
_READER_RETRY = 0.5
# Longest a graceful shutdown waits for sockets to take their last replies, and again
# for their close frames: a client that stopped reading would hold it up forever.
_SHUTDOWN_WRITE_TIMEOUT = 5.0
# Reply keys a socket understands.
_SOCKET_REPLY_KEYS = frozenset({"accept", "subprotocol", "text", "bytes", "close"})
# Close codes an application may send (RFC 6455 7.4: the registered ones that are not
# reserved for the protocol itself, and 3000-4999).
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
_APPLICATION_CLOSE_CODES = range(3000, 5000)
# Close codes with which the ASGI server ends a socket whose client broke the protocol
# (uvicorn: a frame over ws_max_size, text that is not UTF-8), and what they mean.
_PROTOCOL_FAILURES = {
    1002: "protocol error",
    1007: "invalid frame data, such as a text frame that is not UTF-8",
    1009: "message too big",
}

_CONNECTING, _OPEN, _CLOSED = "connecting", "open", "closed"
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
    ) -> None:
        """``routes`` is the served table (defaults included). ``local_workers``: the
        app runs its workers in this process (so on memory:// nobody else could read
        a message this interface sends)."""
        self.layer = layer
        self.routes = routes
        self.settings = settings
        self.prefix = f"{INTERFACE_PREFIX}{secrets.token_hex(6)}!"
        self._targets: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._sockets: dict[str, _Socket] = {}
        self._reader: asyncio.Task[None] | None = None
        # memory:// hands replies over as they are sent and says when room frees up.
        self._memory = layer if isinstance(layer, InMemoryChannelLayer) else None
        self._attached = False
        # Other layers: per channel, the FIFO that senders waiting for room join.
        self._turns: dict[str, asyncio.Lock] = {}
        # Set once every socket is being closed (shutdown): no worker is left to make
        # room, so a disconnect that finds its channel full is dropped at once.
        self._closing = False
        # A connect that only the default consumer would take is accepted here when
        # nothing could tell the difference: memory://, workers in this process (no
        # other reader of websocket.connect), and no ordering that counts order 0.
        self._answers_connects = (
            local_workers
            and self._memory is not None
            and not any(ordering_mode(item.consumer) for item in routes)
        )

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Start receiving this process's replies: as a local reader where the layer
        can hand them over (memory://, redis://), else with a receive loop."""
        if not self._attached:
            self._attached = self.layer.attach_reader(self.prefix, self._deliver_all)
        if not self._attached and self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read_replies())

    async def stop(self) -> None:
        """Stop receiving replies."""
        if self._attached:
            self.layer.detach_reader(self.prefix)
            self._attached = False
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    async def drain_replies(self) -> None:
        """Deliver every reply already waiting for this process's connections (a
        local reader gets them as they come)."""
        while not self._attached:
            channel, message = await self.layer.receive([self.prefix], timeout=0)
            if channel is None or message is None:
                break
            self._deliver(channel, message)
        sockets = list(self._sockets.values())
        await _finish_writes([sock.flushed() for sock in sockets], "their last replies")

    async def close_all(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Close every open socket with ``code`` (graceful shutdown uses 1001); one
        still writing (its client is not reading) is left to the ASGI server."""
        self._closing = True
        sockets = [sock for sock in self._sockets.values() if not sock.writing]
        await _finish_writes([sock.close(code) for sock in sockets], "their close frames")

    @property
    def connection_count(self) -> int:
        """How many connections currently hold a reply channel."""
        return len(self._targets)

    async def _read_replies(self) -> None:
        while True:
            try:
                channel, message = await self.layer.receive([self.prefix])
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reading replies failed; retrying")
                await asyncio.sleep(_READER_RETRY)
                continue
            if channel is not None and message is not None:
                self._deliver(channel, message)

    def _deliver(self, channel: str, message: dict[str, Any]) -> None:
        target = self._targets.get(channel)
        if target is not None:
            target(message)

    def _deliver_all(self, channels: list[str], payload: bytes) -> None:
        """The local reader: one payload for some of this process's reply channels.

        Decoded once, for the first connection still here; every connection then
        gets the same dict, which is safe because the interface only reads replies.
        """
        message: dict[str, Any] | None = None
        for channel in channels:
            target = self._targets.get(channel)
            if target is None:
                continue
            if message is None:
                message = decode(payload)
            target(message)

    # -- sending protocol messages ------------------------------------------------

    def _send_waiting(
        self, channel: str, content: dict[str, Any], timeout: float, *, owned: bool = False
    ) -> Awaitable[None]:
        """Send ``content``, waiting up to ``timeout`` seconds for room while the
        channel is full, first come first served; ChannelFull if it never fits.

        ``owned``: ``content`` is handed over (see ``InMemoryChannelLayer.send_waiting``).
        Returns the layer's own coroutine where it can (one frame less per frame).
        """
        if self._memory is not None:
            return self._memory.send_waiting(channel, content, timeout, owned=owned)
        return self._send_polling(channel, content, timeout)

    async def _send_polling(self, channel: str, content: dict[str, Any], timeout: float) -> None:
        turn = self._turns.get(channel)
        if turn is None:
            turn = self._turns[channel] = asyncio.Lock()
        if not turn.locked():  # nobody is waiting: no turn to take
            try:
                await self.layer.send(channel, content)
                return
            except ChannelFull:
                if timeout <= 0:
                    raise
        await self._send_in_turn(turn, channel, content, timeout)

    async def _send_in_turn(
        self, turn: asyncio.Lock, channel: str, content: dict[str, Any], timeout: float
    ) -> None:
        """Wait for ``turn`` (a FIFO), then poll until the message fits: the layer
        cannot say when room frees up, and one poller per channel is enough."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                await turn.acquire()
        except TimeoutError:
            raise ChannelFull(channel, self.layer.capacity_for(queue_name(channel))) from None
        try:
            delay = _FULL_BACKOFF_MIN
            while True:
                try:
                    await self.layer.send(channel, content)
                    return
                except ChannelFull:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, _FULL_BACKOFF_MAX)
        finally:
            turn.release()

    # -- WebSocket --------------------------------------------------------------

    async def handle_websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one WebSocket connection from handshake to disconnect."""
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        origin = _header(scope, b"origin")
        if not self.settings.origin_allowed(origin):
            logger.info("rejected a WebSocket from origin %r (not in allowed_origins)", origin)
            await send({"type": "websocket.close", "code": 1008})
            return
        reply_channel = await self.layer.new_channel(self.prefix)
        sock = _Socket(send, reply_channel, self.settings.max_pending_replies)
        self._targets[reply_channel] = sock.deliver
        self._sockets[reply_channel] = sock
        try:
            await self._run_socket(sock, scope, receive)
        finally:
            del self._targets[reply_channel]
            del self._sockets[reply_channel]
            await self._send_disconnect(sock, scope)

    async def _run_socket(self, sock: _Socket, scope: Scope, receive: Receive) -> None:
        path = route_path(scope)
        if await self._open(sock, scope, path):
            await self._read_frames(sock, path, receive)

    async def _open(self, sock: _Socket, scope: Scope, path: str) -> bool:
        """Send the connect (or answer it here) and wait for the verdict; True if open.

        A function of its own so the connect message is not kept alive, in a
        suspended frame, for as long as the socket is open.
        """
        content = websocket_connect_content(scope, path, sock.reply_channel)
        if self._answers_connects and self._only_default_accepts(content):
            sock.deliver(_ACCEPT)
            return sock.state == _OPEN
        timeout = self.settings.websocket_connect_timeout
        try:
            await self._send_waiting(WEBSOCKET_CONNECT, content, timeout)
        except MessageTooLarge as exc:
            logger.info("refused a socket with 431: its websocket.connect %s", exc)
            await sock.deny(scope, 431)
            return False
        except ChannelFull:
            logger.warning(
                "websocket.connect stayed full for %.1fs; refusing a socket with 503", timeout
            )
            await sock.deny(scope, 503)
            return False
        except Exception as exc:
            _log_layer_failure("refused a socket with 503", exc)
            await sock.deny(scope, 503)
            return False
        return await sock.wait_open(timeout)

    def _only_default_accepts(self, content: dict[str, Any]) -> bool:
        """True if no routed consumer but the default one would take this connect."""
        found = self.routes.match_content(WEBSOCKET_CONNECT, content)
        return found is not None and found[0].consumer is default_connect

    async def _read_frames(self, sock: _Socket, path: str, receive: Receive) -> None:
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
            frame = self._frame_content(sock, path, event)
            if frame is None or not await self._send_frame(sock, frame):
                await sock.close(sock.close_code or CLOSE_TOO_BIG)
                return

    def _frame_content(self, sock: _Socket, path: str, event: Message) -> dict[str, Any] | None:
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
        return content

    async def _send_frame(self, sock: _Socket, content: dict[str, Any]) -> bool:
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
            await self._send_waiting(WEBSOCKET_RECEIVE, content, timeout, owned=owned)
            return True
        except MessageTooLarge:
            logger.info("closed a socket with 1009: its frame's message is over the limit")
            sock.close_code = CLOSE_TOO_BIG
        except ChannelFull:
            logger.warning(
                "closed a socket with 1013: websocket.receive stayed full for %.1fs", timeout
            )
            sock.close_code = CLOSE_TRY_AGAIN
        except Exception as exc:
            _log_layer_failure("closed a socket with 1013", exc)
            sock.close_code = CLOSE_TRY_AGAIN
        sock.order -= 1
        return False

    async def _send_disconnect(self, sock: _Socket, scope: Scope) -> None:
        code = sock.close_code if sock.opened else CLOSE_NEVER_OPENED
        content = {
            "reply_channel": sock.reply_channel,
            "path": route_path(scope),
            "code": code or CLOSE_NORMAL,
            "order": sock.order + 1,
        }
        timeout = 0.0 if self._closing else self.settings.receive_full_timeout
        try:
            await self._send_waiting(WEBSOCKET_DISCONNECT, content, timeout)
        except ChannelFull:
            logger.warning(
                "websocket.disconnect stayed full for %.1fs; a disconnect message was dropped",
                timeout,
            )
        except Exception as exc:
            _log_layer_failure("dropped a websocket.disconnect", exc)

    # -- HTTP -------------------------------------------------------------------

    async def handle_http(
        self, scope: Scope, receive: Receive, send: Send, fallback: ASGIApp
    ) -> None:
        """Serve one HTTP request through an ``http.request`` consumer, or ``fallback``."""
        content = http_request_content(scope, route_path(scope))
        if self.routes.match_content(HTTP_REQUEST, content) is None:
            await fallback(scope, receive, send)
            return
        body = await _read_body(receive, self.settings.max_frame_size)
        if body is None:
            await PlainTextResponse("Request body too large", 413)(scope, receive, send)
            return
        content["body"] = body
        replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        content["reply_channel"] = reply_channel = await self.layer.new_channel(self.prefix)
        self._targets[reply_channel] = replies.put_nowait
        try:
            await self._relay_http(content, replies, scope, receive, send)
        finally:
            del self._targets[reply_channel]

    async def _relay_http(
        self,
        content: dict[str, Any],
        replies: asyncio.Queue[dict[str, Any]],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            await self.layer.send(HTTP_REQUEST, content)
        except ChannelFull:
            logger.warning("http.request is full; answering 503")
            await PlainTextResponse("Service Unavailable", 503)(scope, receive, send)
            return
        except MessageTooLarge as exc:
            status = _too_large_status(len(content["body"]), exc)
            method, path = content["method"], content["path"]
            logger.info("refused %s %s with %d: %s", method, path, status, exc)
            await PlainTextResponse(HTTPStatus(status).phrase, status)(scope, receive, send)
            return
        except Exception as exc:
            _log_layer_failure("answered 503", exc)
            await PlainTextResponse("Service Unavailable", 503)(scope, receive, send)
            return
        started = False
        while True:
            try:
                reply = await asyncio.wait_for(replies.get(), self.settings.http_timeout)
            except TimeoutError:
                if not started:
                    logger.warning(
                        "no reply to %s %s within http_timeout; 503",
                        content["method"],
                        content["path"],
                    )
                    await PlainTextResponse("Service Unavailable", 503)(scope, receive, send)
                return
            if not started:
                if not await _start_response(reply, send):
                    await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
                    return
                started = True
            more = bool(reply.get("more_content", False))
            await send(
                {
                    "type": "http.response.body",
                    "body": _as_bytes(reply.get("content", b"")),
                    "more_body": more,
                }
            )
            if not more:
                return


class _Socket:
    """One WebSocket: its state, and the replies waiting to be written to it."""

    __slots__ = (
        "_decided",
        "_pending",
        "_writer",
        "close_code",
        "limit",
        "opened",
        "order",
        "reply_channel",
        "send",
        "state",
    )

    def __init__(self, send: Send, reply_channel: str, limit: int) -> None:
        self.send = send
        self.reply_channel = reply_channel
        self.limit = limit
        self.state = _CONNECTING
        self.opened = False
        self.order = 0
        self.close_code: int | None = None
        # Replies waiting behind a write in progress; made when first needed (an
        # empty deque costs more memory than an idle socket's other state).
        self._pending: deque[dict[str, Any]] | None = None
        self._writer: asyncio.Task[None] | None = None
        # Resolved once the handshake is decided (accepted or rejected).
        self._decided: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def deliver(self, reply: dict[str, Any]) -> None:
        """Write a reply now if nothing waits ahead of it, else queue it behind.

        ``reply`` is only read, never changed (one dict may go to many sockets).
        Invariant: replies wait in ``_pending`` only while a writer task runs.
        """
        if self.state == _CLOSED or self.close_code is not None:
            return  # closed, or closing: nothing more goes out but the close
        if self._writer is None:
            self._write_now(reply)
            return
        if self._pending is None:
            self._pending = deque()
        if len(self._pending) >= self.limit:
            self._overflow()
        else:
            self._pending.append(reply)

    def _overflow(self) -> None:
        """Too many replies wait: drop them, and close with 1013 once the write in
        progress completes (the close frame cannot pass it). From now on replies are
        dropped, so what waits for this socket stays bounded even if it never reads."""
        logger.warning(
            "closing a socket with 1013: %d replies are waiting, it is not reading", self.limit
        )
        self.close_code = CLOSE_TRY_AGAIN
        self._pending = deque([{"close": CLOSE_TRY_AGAIN}])

    def _write_now(self, reply: dict[str, Any]) -> None:
        # Most writes complete without waiting (the transport takes the bytes); only
        # one that has to wait (flow control) becomes the writer task.
        frame = self._plain_frame(reply)
        try:
            if frame is None:
                rest = run_eagerly(self._apply(reply))
            else:
                sent = self.send(frame)
                rest = run_eagerly(sent if type(sent) is CoroutineType else _awaited(sent))
        except Exception:  # the client is gone mid-write
            self._gone()
            return
        if rest is not None:
            self._writer = asyncio.get_running_loop().create_task(self._write(rest))

    def _plain_frame(self, reply: dict[str, Any]) -> dict[str, Any] | None:
        """The ASGI message for the commonest reply, ``{"text": str}`` or
        ``{"bytes": bytes}`` to an open socket; None for anything else, which
        :meth:`_apply` handles in full."""
        if self.state != _OPEN or len(reply) != 1:
            return None
        text = reply.get("text")
        if type(text) is str:
            return {"type": "websocket.send", "text": text}
        data = reply.get("bytes")
        if type(data) is bytes:
            return {"type": "websocket.send", "bytes": data}
        return None

    async def _write(self, rest: Continuation) -> None:
        try:
            await rest
            while self._pending:
                await self._apply(self._pending.popleft())
            self._pending = None
        except Exception:  # the client is gone mid-write
            self._gone()
        finally:
            self._writer = None

    def _gone(self) -> None:
        self.state = _CLOSED
        self._pending = None

    @property
    def writing(self) -> bool:
        """True while a write waits for the client to take data."""
        return self._writer is not None

    async def flushed(self) -> None:
        """Wait until every queued reply has been written."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _apply(self, reply: dict[str, Any]) -> None:
        problem = _reply_problem(reply)
        if problem is not None:
            logger.error("dropped a reply to a socket: it has %s", problem)
            return
        if self.state == _CONNECTING:
            await self._handshake(reply)
        if self.state != _OPEN:
            return
        if reply.get("text") is not None:
            await self.send({"type": "websocket.send", "text": str(reply["text"])})
        elif reply.get("bytes") is not None:
            await self.send({"type": "websocket.send", "bytes": _as_bytes(reply["bytes"])})
        close = reply.get("close")
        if close is not None and close is not False:
            await self.close(CLOSE_NORMAL if close is True else close)

    async def _handshake(self, reply: dict[str, Any]) -> None:
        if reply.get("accept") is True or "text" in reply or "bytes" in reply:
            self._mark(_OPEN)
            message: dict[str, Any] = {"type": "websocket.accept"}
            if reply.get("subprotocol"):
                message["subprotocol"] = reply["subprotocol"]
            await self.send(message)
        elif reply.get("accept") is False or reply.get("close") not in (None, False):
            self._mark(_CLOSED)
            await self.send({"type": "websocket.close", "code": 1000})

    def _mark(self, state: str) -> None:
        self.state = state
        self.opened = self.opened or state == _OPEN
        if not self._decided.done():
            self._decided.set_result(None)

    async def wait_open(self, timeout: float) -> bool:
        """Wait for the connect consumer's verdict; reject (403) on timeout."""
        if not self._decided.done():
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._decided)
            except TimeoutError:
                if self.state == _CONNECTING:
                    logger.info(
                        "rejected a socket: no reply to websocket.connect within %.1fs", timeout
                    )
                    self._mark(_CLOSED)
                    await self.send({"type": "websocket.close", "code": 1000})
        return self.state == _OPEN

    async def deny(self, scope: Scope, status: int) -> None:
        """Refuse the handshake with an HTTP ``status``, where the server supports
        the ASGI denial-response extension (uvicorn does); else with 403."""
        self._mark(_CLOSED)
        if "websocket.http.response" not in scope.get("extensions", {}):
            await self.send({"type": "websocket.close", "code": 1000})
            return
        body = f"{status} {HTTPStatus(status).phrase}".encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await self.send(
            {"type": "websocket.http.response.start", "status": status, "headers": headers}
        )
        await self.send({"type": "websocket.http.response.body", "body": body})

    def client_closed(self, code: int) -> None:
        """The client (or the server on our behalf) closed the socket with ``code``."""
        if self.close_code is None:
            self.close_code = code
        self.state = _CLOSED

    async def close(self, code: int) -> None:
        """Close an open socket with ``code`` (idempotent)."""
        if self.state != _OPEN:
            return
        self.state = _CLOSED
        self.close_code = code
        with contextlib.suppress(Exception):  # the client may already be gone
            await self.send({"type": "websocket.close", "code": code})


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


async def _finish_writes(writes: list[Coroutine[Any, Any, None]], what: str) -> None:
    """Run socket ``writes`` at shutdown; give up on those still blocked after
    :data:`_SHUTDOWN_WRITE_TIMEOUT` seconds (their clients are not reading)."""
    loop = asyncio.get_running_loop()
    blocked = [
        loop.create_task(_awaited(rest))
        for rest in map(run_eagerly, writes)
        if rest is not None  # most writes complete at once
    ]
    if not blocked:
        return
    _, stuck = await asyncio.wait(blocked, timeout=_SHUTDOWN_WRITE_TIMEOUT)
    for task in stuck:
        task.cancel()
    if stuck:
        logger.warning(
            "gave up writing %s to %d sockets after %gs: their clients are not reading",
            what,
            len(stuck),
            _SHUTDOWN_WRITE_TIMEOUT,
        )


def _reply_problem(reply: dict[str, Any]) -> str | None:
    """What makes ``reply`` unfit for a socket, or None."""
    unknown = reply.keys() - _SOCKET_REPLY_KEYS
    if unknown:
        return f"unknown keys {sorted(unknown)}"
    if "text" in reply and "bytes" in reply:
        return "both 'text' and 'bytes'"
    close = reply.get("close")
    if close is None or close is True or close is False:
        return None
    if type(close) is not int or (
        close not in _SENDABLE_CLOSE_CODES and close not in _APPLICATION_CLOSE_CODES
    ):
        return f"'close': {close!r}, which is neither True nor a close code an app may send"
    return None


def _too_large_status(body_size: int, exc: MessageTooLarge) -> int:
    """413 if the body is most of an ``http.request`` message over the size limit,
    else 431 (its path, query string and headers are)."""
    return 413 if body_size * 2 >= exc.size else 431


def _log_layer_failure(action: str, exc: Exception) -> None:
    """One line for a send the channel layer could not take (say, Redis is down); the
    layer logs the outage itself, once."""
    logger.warning("%s: the channel layer failed (%s: %s)", action, type(exc).__name__, exc)


def _log_protocol_failure(code: int, reason: object) -> None:
    detail = f": {reason}" if reason else ""
    logger.info("a socket closed with %d (%s)%s", code, _PROTOCOL_FAILURES[code], detail)


def _frame_size(content: dict[str, Any]) -> int:
    """A frame message's text length or byte count."""
    value = content.get("text")
    if value is None:
        value = content.get("bytes", b"")
    return len(value)


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


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] != "http.request":
            return b"".join(chunks)
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not event.get("more_body", False):
            return b"".join(chunks)


async def _start_response(reply: dict[str, Any], send: Send) -> bool:
    status = reply.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        logger.error(
            "dropped an HTTP reply: 'status' must be an int from 100 to 599, got %r", status
        )
        return False
    try:
        headers = [
            [_as_bytes(name).lower(), _as_bytes(value)] for name, value in reply.get("headers", ())
        ]
    except (TypeError, ValueError):
        logger.error("dropped an HTTP reply: 'headers' must be [name, value] pairs of str or bytes")
        return False
    await send({"type": "http.response.start", "status": status, "headers": headers})
    return True


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1") if value.isascii() else value.encode()
    raise TypeError(f"expected str or bytes, got {type(value).__name__}")
