"""A lean Redis connection: RESP over an :class:`asyncio.Protocol`, fully pipelined,
parsed by hiredis's C reader.

Every command of a process shares one such connection per server (blocking reads
each get their own). :meth:`RespConnection.execute` writes the packed commands and
returns a future at once. A command sent while no reply is due goes out at once;
while replies are due (the connection is busy), commands queue and go out together
in one ``write`` on the event loop's next turn, Nagle-style. Replies are parsed in
``data_received`` as they arrive, by ``hiredis.Reader`` (which keeps a partial reply
between pieces), in the order the commands went out, with no task and no ``await``
per reply. Many concurrent senders (an interface relaying frames
from hundreds of sockets) then cost one system call per turn, not one per command,
and a lone command waits for nothing.

Replies are raw RESP values: ``bytes``, ``int``, ``None``, lists (and the RESP3
types, should a server send them). An error reply comes back in place of its
command's reply as a :class:`redis.exceptions.ResponseError` (``NoScriptError`` for
``NOSCRIPT``), so one failed command of a batch does not hide the others. Errors of
the connection itself are redis-py's ``ConnectionError`` and ``TimeoutError``. These
are the errors of this module only: ``RedisShard`` raises each of them to its callers
as a :class:`~chanlite.LayerError` caused by it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.exceptions import AuthenticationError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RespConnection", "open_connection", "pack"]


def pack(commands: Sequence[Sequence[Any]]) -> bytes:
    """Commands in RESP: arrays of bulk strings (``str``, ``bytes``, ``int``, ``float``)."""
    out: list[bytes] = []
    for command in commands:
        out.append(b"*%d\r\n" % len(command))
        for arg in command:
            kind = type(arg)
            if kind is str:
                data = arg.encode()
            elif kind is bytes:
                data = arg
            elif kind is int or kind is float:
                data = repr(arg).encode()
            else:
                data = _coerce(arg)
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _coerce(arg: Any) -> bytes:
    """An argument of a less common type: a bytes-like, or a subclass of str or int."""
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return bytes(arg)
    if isinstance(arg, str):
        return str(arg).encode()
    if isinstance(arg, int) and not isinstance(arg, bool):
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(float(arg)).encode()
    raise TypeError(f"a Redis command argument must be str, bytes or a number: {arg!r}")


#: What the reader returns while the buffer ends inside a reply (``False`` is a reply).
_MORE = object()


def _error(text: str) -> ResponseError:
    if text.startswith("NOSCRIPT"):
        return NoScriptError(text)
    return ResponseError(text.removeprefix("ERR "))


class _Call:
    """Commands sent together, and the replies read for them so far."""

    __slots__ = ("count", "future", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future, self.count = future, count
        self.replies: list[Any] = []


class RespConnection(asyncio.Protocol):
    """One pipelined connection to a Redis server (see the module docstring).

    When the connection breaks, or a reply is more than ``reply_timeout`` seconds
    overdue, every command whose replies have not arrived fails with
    ``ConnectionError`` or ``TimeoutError``: it may or may not have run, so callers
    decide whether repeating it is safe. A broken connection stays broken.
    """

    def __init__(self, reply_timeout: float) -> None:
        #: How long a reply may be overdue before the connection counts as dead.
        self.reply_timeout = reply_timeout
        #: The server's id for this connection (``CLIENT ID``), for ``CLIENT UNBLOCK``.
        self.client_id = 0
        self.error: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._pending: deque[_Call] = deque()
        self._out: list[bytes] = []
        # hiredis's C reader keeps a partial reply between calls, so a large reply
        # that arrives in many pieces is parsed once, not again with each piece.
        self._reader = hiredis.Reader(replyError=ResponseError, notEnoughData=_MORE)
        self._replies_read = 0
        self._watchdog: asyncio.TimerHandle | None = None

    @property
    def broken(self) -> bool:
        """Whether the connection failed (it stays failed)."""
        return self.error is not None

    @property
    def busy(self) -> bool:
        """Whether replies are still due (say, of a read whose caller left)."""
        return bool(self._pending)

    def execute(self, commands: Sequence[Sequence[Any]]) -> asyncio.Future[list[Any]]:
        """Queue ``commands`` to go out with whatever else is being sent; the future
        gets their replies, in order. Cancelling it drops the replies, not the
        commands."""
        if self.error is not None:
            raise RedisConnectionError(f"connection lost: {self.error}")
        future: asyncio.Future[list[Any]] = self._loop.create_future()
        if self._pending or self._out:  # busy: join the next turn's write
            if not self._out:
                self._loop.call_soon(self._flush)
            self._out.append(pack(commands))
        elif self._transport is not None:
            self._transport.write(pack(commands))
        self._pending.append(_Call(future, len(commands)))
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(
                self.reply_timeout, self._watch, self._replies_read
            )
        return future

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Speak TLS from now on (before any command).

        Done after connecting rather than by ``create_connection(ssl=...)``, so that a
        failed handshake leaves the TCP transport with us, and :meth:`close` closes it.
        """
        tls = await self._loop.start_tls(
            cast(asyncio.Transport, self._transport), self, context, server_hostname=server_hostname
        )
        self._transport = cast(asyncio.Transport, tls)

    def close(self) -> None:
        """Fail what is pending and close the connection."""
        self._fail(RedisConnectionError("connection closed"))

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not _MORE:
                if isinstance(reply, ResponseError):
                    reply = _error(str(reply))
                self._deliver(reply)
        except hiredis.ProtocolError as error:  # nothing after it can be read
            self._fail(RedisConnectionError(f"unexpected reply from Redis: {error}"))
        except Exception as error:
            self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or RedisConnectionError("Redis closed the connection"))

    # -- internals ------------------------------------------------------------------

    def _flush(self) -> None:
        if self._out and self._transport is not None and self.error is None:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def _deliver(self, reply: Any) -> None:
        self._replies_read += 1
        if not self._pending:
            raise RedisConnectionError(f"unexpected reply from Redis: {reply!r}")
        call = self._pending[0]
        call.replies.append(reply)
        if len(call.replies) == call.count:
            self._pending.popleft()
            if not call.future.done():  # a cancelled caller's replies are dropped
                call.future.set_result(call.replies)

    def _watch(self, seen: int) -> None:
        """Break if no reply came for ``reply_timeout`` seconds while some were due."""
        self._watchdog = None
        if not self._pending or self.error is not None:
            return
        if self._replies_read == seen:
            self._fail(RedisTimeoutError(f"no reply from Redis in {self.reply_timeout}s"))
            return
        self._watchdog = self._loop.call_later(self.reply_timeout, self._watch, self._replies_read)

    def _fail(self, error: BaseException) -> None:
        """Break for good: fail every pending command and close."""
        if not isinstance(error, (RedisConnectionError, RedisTimeoutError)):
            error = RedisConnectionError(f"{type(error).__name__}: {error}")
        if self.error is None:
            self.error = error
        while self._pending:
            call = self._pending.popleft()
            if not call.future.done():
                call.future.set_exception(error)
                call.future.exception()  # retrieved: a caller that left must not warn
        self._out.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._transport is not None:
            # A TLS connection is dropped, not shut down: its closing handshake would
            # need the server's answer, which may never come (or come after the event
            # loop is gone), leaving the socket under it open.
            if self._transport.get_extra_info("sslcontext") is not None:
                self._transport.abort()
            else:
                self._transport.close()


async def open_connection(
    host: str,
    port: int,
    *,
    db: int = 0,
    username: str | None = None,
    password: str | None = None,
    tls: ssl.SSLContext | None = None,
    connect_timeout: float,
    reply_timeout: float,
) -> RespConnection:
    """Connect (over TLS with the ``tls`` context, if given), authenticate, select
    ``db`` and learn the connection's client id.

    Raises ``ConnectionError`` or ``TimeoutError`` if the server cannot be reached,
    and ``AuthenticationError`` or ``ResponseError`` if it refuses the setup.
    """
    loop = asyncio.get_running_loop()
    connection: RespConnection | None = None
    try:
        async with asyncio.timeout(connect_timeout):
            _, connection = await loop.create_connection(
                lambda: RespConnection(reply_timeout), host, port
            )
            if tls is not None:
                await connection.start_tls(tls, host)
            setup: list[tuple[Any, ...]] = []
            if password is not None:
                setup.append(("AUTH", username, password) if username else ("AUTH", password))
            if db:
                setup.append(("SELECT", db))
            setup.append(("CLIENT", "ID"))
            replies = await connection.execute(setup)
    except BaseException as error:
        if connection is not None:  # it timed out, or broke, during the setup
            connection.close()
        if isinstance(error, TimeoutError):
            raise RedisTimeoutError(f"connecting to {host}:{port} timed out") from None
        if isinstance(error, OSError):
            raise RedisConnectionError(f"cannot connect to {host}:{port}: {error}") from error
        raise
    for reply in replies:
        if isinstance(reply, ResponseError):
            connection.close()
            if str(reply).startswith(("NOAUTH", "WRONGPASS", "invalid password")):
                raise AuthenticationError(str(reply))
            raise reply
    connection.client_id = int(replies[-1])
    return connection
