"""One WebSocket's state machine, and the replies waiting to be written to it.

A socket is *connecting* until its connect consumer decides (accept, or reject by
``accept: False``, a close, or ``websocket_connect_timeout``), then *open* until
either side closes it, then *closed*. A reply is written at once when nothing is
waiting ahead of it; a writer task runs only while replies wait behind a write the
client has not taken yet, and at most ``limit`` replies may wait (then 1013).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Coroutine
from http import HTTPStatus
from types import CoroutineType
from typing import Any

from starlette.types import Scope, Send

from ._eager import start_each_eagerly, start_eagerly
from .metrics import Metrics
from .protocol import RECOVERY_KEY, REPLAY_KEY, SUBPROTOCOL, as_bytes
from .socket_recovery import SocketRecovery
from .wire import GroupMessage

logger = logging.getLogger("chanlite.server")

#: Close codes the interface uses.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN = 1013
#: The code reported in ``websocket.disconnect`` for a socket that never opened.
CLOSE_NEVER_OPENED = 1006
#: Longest a graceful shutdown waits for sockets to take their last replies, and again
#: for their close frames: a client that stopped reading would hold it up forever.
SHUTDOWN_WRITE_TIMEOUT = 5.0
# Reply keys a socket understands.
_SOCKET_REPLY_KEYS = frozenset({"accept", "subprotocol", "text", "bytes", "close"})
# Close codes an application may send (RFC 6455 7.4: the registered ones that are not
# reserved for the protocol itself, and 3000-4999).
_SENDABLE_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
_APPLICATION_CLOSE_CODES = range(3000, 5000)

_CONNECTING, _OPEN, _CLOSED = "connecting", "open", "closed"


class Socket:
    """One WebSocket: its state, and the replies waiting to be written to it."""

    __slots__ = (
        "_batched",
        "_decided",
        "_pending",
        "_writer",
        "close_code",
        "limit",
        "metrics",
        "opened",
        "order",
        "recovery",
        "reply_channel",
        "send",
        "state",
        "trace",
    )

    def __init__(self, send: Send, reply_channel: str, limit: int, metrics: Metrics) -> None:
        self.send = send
        #: Counts the frames written.
        self.metrics = metrics
        self.reply_channel = reply_channel
        self.limit = limit
        self.state = _CONNECTING
        self.opened = False
        self.order = 0
        self.close_code: int | None = None
        #: The trace context every message sent for this socket carries (tracing on).
        self.trace: dict[str, str] | None = None
        #: A ``chanlite.v1`` socket's frames and re-join (None for any other socket).
        self.recovery: SocketRecovery | None = None
        # Replies waiting behind a write in progress; made when first needed (an
        # empty deque costs more memory than an idle socket's other state).
        self._pending: deque[dict[str, Any]] | None = None
        self._writer: asyncio.Task[None] | None = None
        # Whether a write to this socket waits in a Writes batch, not yet started.
        self._batched = False
        # Resolved once the handshake is decided (accepted or rejected).
        self._decided: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def deliver(self, reply: dict[str, Any], writes: Writes | None = None) -> None:
        """Write a reply now if nothing waits ahead of it, else queue it behind.

        With ``writes``, a write that would start now joins that batch instead, and
        starts when the batch does (:meth:`Writes.start`, in the same turn).
        ``reply`` is only read, never changed (one dict may go to many sockets).
        Invariant: replies wait in ``_pending`` only while a writer task runs or a
        write waits in a batch. A ``chanlite.v1`` socket's replies go through its
        :class:`SocketRecovery`.
        """
        if self.state == _CLOSED or self.close_code is not None:
            return  # closed, or closing: nothing more goes out but the close
        recovery = self.recovery
        if recovery is None:
            self._deliver(reply, writes)
            return
        for admitted in recovery.admit(reply, self.state == _OPEN):
            self._deliver(admitted, writes)
        if recovery.overflowing:
            logger.warning("closing a socket with 1013: its re-join holds too many messages")
            recovery.held.clear()
            recovery.early.clear()
            self._deliver({"close": CLOSE_TRY_AGAIN}, writes)

    def _deliver(self, reply: dict[str, Any], writes: Writes | None) -> None:
        if self._writer is None and not self._batched:
            if writes is None:
                self._write_now(reply)
            else:
                self._batched = True
                writes.add(self, reply)
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
        # one that has to wait (flow control) leaves a writer task behind.
        try:
            waiting = start_eagerly(self._write(reply))
        except Exception:  # the client is gone mid-write
            self._gone()
            return
        if waiting is not None:
            self._writer = asyncio.get_running_loop().create_task(self._write_rest(waiting))

    def _write(self, reply: dict[str, Any]) -> Coroutine[Any, Any, None]:
        """The coroutine that writes ``reply``."""
        frame = self._plain_frame(reply)
        if frame is None:
            return self._apply(reply)
        self.metrics.frames_sent += 1
        write = self.send(frame)
        return write if type(write) is CoroutineType else _awaited(write)

    def _batch_started(self, waiting: asyncio.Task[None] | None, failed: bool) -> None:
        """This socket's write in a :class:`Writes` batch has started: it ``failed``
        at once, or goes on in ``waiting``, or is done."""
        self._batched = False
        if failed:
            self._gone()
        elif waiting is not None or self._pending:
            self._writer = asyncio.get_running_loop().create_task(self._write_rest(waiting))

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

    async def _write_rest(self, waiting: asyncio.Task[None] | None) -> None:
        """Finish a write that waits (if any), then write every reply queued behind it."""
        try:
            if waiting is not None:
                await waiting
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
    def is_open(self) -> bool:
        """True once accepted, until either side closes."""
        return self.state == _OPEN

    @property
    def writing(self) -> bool:
        """True while a write waits for the client to take data."""
        return self._writer is not None

    async def flushed(self) -> None:
        """Wait until every queued reply has been written."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _apply(self, reply: dict[str, Any]) -> None:
        if REPLAY_KEY in reply or RECOVERY_KEY in reply:
            return  # a re-join's, for a socket whose app chose another subprotocol
        problem = _reply_problem(reply)
        if problem is not None:
            logger.error("dropped a reply to a socket: it has %s", problem)
            return
        if self.state == _CONNECTING:
            for early in await self._handshake(reply):
                await self._apply(early)
        if self.state != _OPEN:
            return
        if reply.get("text") is not None:
            self.metrics.frames_sent += 1
            await self.send({"type": "websocket.send", "text": str(reply["text"])})
        elif reply.get("bytes") is not None:
            self.metrics.frames_sent += 1
            await self.send({"type": "websocket.send", "bytes": as_bytes(reply["bytes"])})
        close = reply.get("close")
        if close is not None and close is not False:
            await self.close(CLOSE_NORMAL if close is True else close)

    async def _handshake(self, reply: dict[str, Any]) -> list[dict[str, Any]]:
        """Accept or reject as ``reply`` says; the replies that came before it and
        waited for the socket to open (see :class:`SocketRecovery`)."""
        if reply.get("accept") is True or "text" in reply or "bytes" in reply:
            self._mark(_OPEN)
            message: dict[str, Any] = {"type": "websocket.accept"}
            early: list[dict[str, Any]] = []
            if reply.get("subprotocol"):
                message["subprotocol"] = reply["subprotocol"]
                early = self._leave_v1()
            elif self.recovery is not None:
                message["subprotocol"] = SUBPROTOCOL
                early = self.recovery.release_early()
            await self.send(message)
            return early
        if reply.get("accept") is False or reply.get("close") not in (None, False):
            self._mark(_CLOSED)
            await self.send({"type": "websocket.close", "code": 1000})
        return []

    def _leave_v1(self) -> list[dict[str, Any]]:
        """The app chose a subprotocol of its own: this socket gets plain frames.
        Returns the group messages that came before it opened, as plain replies."""
        if self.recovery is None:
            return []
        early, self.recovery = self.recovery.early, None
        return [reply for reply in early if isinstance(reply, GroupMessage)]

    def _mark(self, state: str) -> None:
        self.state = state
        self.opened = self.opened or state == _OPEN
        if not self._decided.done():
            self._decided.set_result(None)

    async def wait_open(self, timeout: float) -> str:
        """Wait for the connect consumer's verdict; reject (403) on timeout. Returns
        ``"accepted"`` (the socket is open), ``"rejected"`` or ``"timeout"``."""
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
                    return "timeout"
        return "accepted" if self.state == _OPEN else "rejected"

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


class Writes:
    """Writes to many sockets, started together: one reply delivered to every member
    of a group starts its writes in one eager task, not one each
    (:func:`~chanlite._eager.start_each_eagerly`). Use it as a context manager around
    the ``deliver`` calls; the writes start, in order, as the block ends."""

    __slots__ = ("_replies", "_sockets")

    def __init__(self) -> None:
        self._sockets: list[Socket] = []
        self._replies: list[dict[str, Any]] = []

    def add(self, socket: Socket, reply: dict[str, Any]) -> None:
        """Write ``reply``, the next reply of ``socket``, with the others."""
        self._sockets.append(socket)
        self._replies.append(reply)

    def __enter__(self) -> Writes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.start()

    def start(self) -> None:
        """Start the writes added so far, each socket's in order."""
        sockets, replies = self._sockets, self._replies
        self._sockets, self._replies = [], []
        writes = (socket._write(reply) for socket, reply in zip(sockets, replies, strict=True))
        try:
            started = start_each_eagerly(writes)
        except BaseException:  # not a write's failure: no socket is left marked
            for socket in sockets:
                socket._batched = False
            raise
        waiting, failed = started.waiting, started.failed
        for index, socket in enumerate(sockets):
            if waiting or failed or socket._pending:
                socket._batch_started(waiting.get(index), index in failed)
            else:
                socket._batched = False  # written, and nothing queued behind it


async def finish_writes(writes: list[Coroutine[Any, Any, None]], what: str) -> None:
    """Run socket ``writes`` at shutdown; give up on those still blocked after
    :data:`SHUTDOWN_WRITE_TIMEOUT` seconds (their clients are not reading)."""
    started = [start_eagerly(write) for write in writes]
    blocked = [task for task in started if task is not None]  # most complete at once
    if not blocked:
        return
    _, stuck = await asyncio.wait(blocked, timeout=SHUTDOWN_WRITE_TIMEOUT)
    for task in stuck:
        task.cancel()
    if stuck:
        logger.warning(
            "gave up writing %s to %d sockets after %gs: their clients are not reading",
            what,
            len(stuck),
            SHUTDOWN_WRITE_TIMEOUT,
        )


async def _awaited(awaitable: Awaitable[None]) -> None:
    await awaitable


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
