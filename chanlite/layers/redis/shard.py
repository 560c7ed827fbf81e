"""One Redis server (:class:`RedisShard`): its connections, reconnecting, outage
logging, and running commands and Lua scripts on it.

When Redis goes away, commands retry connecting for ``CONNECT_PATIENCE`` seconds and
then raise :class:`~chanlite.LayerError`; a command that may have reached the
server is never sent twice (at-most-once). A waiting ``receive`` keeps waiting and
retries with backoff. Each outage is logged once per server, as a WARNING when it
starts and an INFO when the server answers again. Every failure of a server (it cannot
be reached, a connection breaks, a reply is overdue, a command is refused) and every
use of a closed layer or store is a ``LayerError`` whose ``__cause__`` is redis-py's
exception; :class:`RedisShard` turns one into the other where each command ends.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...exceptions import LayerError
from .._resp import RespConnection, open_connection
from ..base import backend_failure
from .addresses import RedisAddress
from .scripts import RedisScript, run_script
from .tls import handshake_refusal

logger = logging.getLogger(__package__)  # chanlite.layers.redis, for the whole layer

#: How long a command keeps trying to connect to an unreachable server (seconds).
CONNECT_PATIENCE = 2.0
# Reconnect backoff: first and longest pause between attempts (seconds).
BACKOFF_START, BACKOFF_MAX = 0.05, 1.0
#: Server-side bound of one blocking read; a reader re-issues it, so this only bounds
#: how long a silently dead connection can go unnoticed.
BLOCK_SECONDS = 5
# Extra time allowed for a blocking read's reply to arrive after its server-side timeout.
READ_GRACE = 5.0
# Socket timeouts of command connections (seconds).
SOCKET_TIMEOUT, SOCKET_CONNECT_TIMEOUT = 5.0, 2.0
#: Idle blocking-read connections kept per server for the next reader.
IDLE_BLOCKING = 8
# Keys asked for per SCAN call in flush() and stats().
SCAN_COUNT = 1000
# Errors meaning "the server could not be reached or the connection broke".
NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
#: Error replies of a cluster node saying that a command did not run there (its slot
#: is elsewhere, moving, or not served at all), and so may run again elsewhere.
REDIRECTS = frozenset({"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN"})


def redirected(reply: object) -> bool:
    """Whether ``reply`` is an error reply of :data:`REDIRECTS`."""
    return isinstance(reply, ResponseError) and str(reply).split(" ", 1)[0] in REDIRECTS


def _cluster_only(error: BaseException) -> bool:
    """Whether ``error`` is a reply only a cluster node gives."""
    return redirected(error) or str(error).startswith("CROSSSLOT")


class RedisShard:
    """One Redis server: its connections, reconnecting, and outage logging.

    Shared by anything that keeps data in Redis (the channel layer, a session store).
    Every command goes over one pipelined connection (see ``_resp``); each blocking
    read has a connection of its own, kept for reuse while it stays healthy.

    Commands raise :class:`~chanlite.LayerError` when the server fails them (see
    :meth:`call_many`), and after :meth:`aclose`, which is final: a closed shard
    never reconnects.
    """

    def __init__(
        self,
        address: RedisAddress,
        tls: ssl.SSLContext | None = None,
        sentinel_tls: dict[str, Any] | None = None,
    ) -> None:
        self.address = address
        #: The SSL context of its connections, for ``rediss://``.
        self.tls_context = tls
        #: The Sentinel client that finds the master, for ``redis+sentinel://`` (with
        #: redis-py's TLS options ``sentinel_tls`` for ``rediss+sentinel://``).
        self.sentinel: Any = None
        if address.service is not None:
            sentinel_class: Any = Sentinel  # redis-py is untyped: through Any for mypy
            self.sentinel = sentinel_class(
                list(address.hosts),
                sentinel_kwargs={
                    "socket_timeout": SOCKET_TIMEOUT,
                    "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
                    **(sentinel_tls or {}),
                },
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_CONNECT_TIMEOUT,
            )
        self._commands: RespConnection | None = None
        self._idle_blocking: list[RespConnection] = []
        self._connecting = asyncio.Lock()
        self._reachable = True
        #: How many outages have begun (each at the first failure after an answer).
        self.outages = 0
        #: Whether blocking reads use BLMPOP (Redis 7); cleared on an older server.
        self.blmpop = True
        #: Set by :meth:`aclose`: commands raise LayerError from then on.
        self.closed = False
        #: How errors name this server (never with its password).
        self.backend = f"Redis at {address.label}/{address.db}"

    def __repr__(self) -> str:
        return f"<RedisShard {self.address.label} db={self.address.db}>"

    @property
    def connected(self) -> bool:
        """Whether the command connection is open (a command goes out without
        connecting first)."""
        return self._commands is not None and self._commands.error is None

    @property
    def tls(self) -> bool:
        """Whether connections use TLS (``rediss://``)."""
        return self.tls_context is not None

    def failure(self, error: BaseException) -> LayerError:
        """``error`` of this server (redis-py's) as a LayerError caused by it."""
        if _cluster_only(error):
            problem = f"is a Redis Cluster node ({error}); use a redis+cluster:// URL"
            failure = LayerError(self.backend, problem)
            failure.__cause__ = error
            return failure
        return backend_failure(self.backend, error)

    def transient(self, error: BaseException) -> bool:
        """Whether a blocking read that failed with ``error`` should be tried again
        (the server went away) rather than fail its receives."""
        return isinstance(error, NETWORK_ERRORS)

    def closed_error(self) -> LayerError:
        """The error of a command on this shard after :meth:`aclose`."""
        return LayerError(self.backend, "closed by aclose()")

    # -- health -----------------------------------------------------------------

    def mark_down(self, error: BaseException) -> None:
        """Note a failure; the first of an outage is logged as a WARNING."""
        if self._reachable:
            self._reachable = False
            self.outages += 1
            logger.warning("redis at %s unreachable; retrying (%s)", self.address.label, error)

    def mark_up(self, outages: int) -> None:
        """Note that the server answered a command sent when :attr:`outages` was
        ``outages``; the first answer after an outage is logged as INFO.

        Only an answer to a command sent since the outage began ends it: one to a
        command sent earlier may have arrived before the failure and been read after
        it.
        """
        if not self._reachable and outages == self.outages:
            self._reachable = True
            logger.info("redis at %s is reachable again", self.address.label)

    # -- commands -----------------------------------------------------------------

    async def call(
        self, *args: Any, retry: bool = False, patience: float = CONNECT_PATIENCE
    ) -> Any:
        """Run one command and return its raw reply.

        Connecting is retried for ``patience`` seconds. A failure after the command
        was sent is retried only if ``retry`` says the command is safe to repeat.
        Raises LayerError as :meth:`call_many` does, and when the server refuses the
        command (an error reply; its ``ResponseError`` is the cause).
        """
        replies = await self.call_many([args], retry=retry, patience=patience)
        return self._reply(replies[0])

    def _reply(self, reply: Any) -> Any:
        """``reply``, unless it is an error reply: then raise it as a LayerError."""
        if isinstance(reply, ResponseError):
            raise self.failure(reply) from reply
        return reply

    async def call_many(
        self,
        commands: Sequence[Sequence[Any]],
        *,
        retry: bool = False,
        patience: float = CONNECT_PATIENCE,
    ) -> list[Any]:
        """Send ``commands`` together and return their replies, in order (a
        :class:`ResponseError` in place of a failed command's reply). They share the
        server's one command connection with every concurrent caller.

        Raises :class:`~chanlite.LayerError`, caused by redis-py's
        ``ConnectionError`` or ``TimeoutError``, when the server cannot be reached
        (or refuses the connection's setup) within ``patience``, or the connection
        breaks after the commands went out and ``retry`` is false; and after
        :meth:`aclose`. Every command of the process ends here, so this is the one
        place where redis-py's errors become chanlite's.
        """
        connection = self._commands
        if connection is not None and connection.error is None:  # the usual case
            outages = self.outages
            try:
                replies = await connection.execute(commands)
            except NETWORK_ERRORS as error:
                self.mark_down(error)
                if not retry or patience <= 0:
                    raise self.failure(error) from error
            else:
                if not self._reachable:
                    self.mark_up(outages)
                return replies
        return await self._call_connecting(commands, retry, time.monotonic() + patience)

    async def _call_connecting(
        self, commands: Sequence[Sequence[Any]], retry: bool, deadline: float
    ) -> list[Any]:
        """:meth:`call_many` when the command connection is not open: connect (again),
        with backoff, until ``deadline``."""
        if self.closed:
            raise self.closed_error()
        for delay in backoff():
            outages = self.outages
            try:
                connection = await self._command_connection(deadline)
                replies = await connection.execute(commands)
            except NETWORK_ERRORS as error:
                self.mark_down(error)
                if not retry or time.monotonic() >= deadline:
                    raise self.failure(error) from error
            except ResponseError as error:  # the server refused AUTH or SELECT
                raise self.failure(error) from error
            else:
                self.mark_up(outages)
                return replies
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        raise AssertionError("unreachable")  # pragma: no cover - backoff never ends

    async def _command_connection(self, deadline: float) -> RespConnection:
        """The live command connection, connecting (until ``deadline``) if it broke."""
        connection = self._commands
        if connection is not None and connection.error is None:
            return connection
        async with self._connecting:
            connection = self._commands
            if connection is None or connection.error is not None:
                if connection is not None:
                    connection.close()
                    self._commands = None
                connection = self._commands = await self._connect(deadline, SOCKET_TIMEOUT)
            return connection

    async def run(
        self,
        script: RedisScript,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        retry: bool = False,
        patience: float = CONNECT_PATIENCE,
    ) -> Any:
        """Run a Lua script; loads it on the server when missing (NOSCRIPT means the
        script did not run, so running it again cannot repeat it). Raises LayerError
        as :meth:`call` does."""
        reply = await run_script(self.call_many, script, keys, args, retry, patience)
        return self._reply(reply)

    async def scan(self, pattern: str) -> AsyncIterator[list[bytes]]:
        """Yield batches of the keys matching ``pattern`` (SCAN, never KEYS)."""
        cursor = b"0"
        while True:
            reply = await self.call(
                "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, retry=True
            )
            cursor, keys = reply
            if keys:
                yield list(keys)
            if int(cursor) == 0:
                return

    async def _connect(self, deadline: float, reply_timeout: float) -> RespConnection:
        """A new connection; attempts go on until ``deadline`` (at least one)."""
        for delay in backoff():
            outages = self.outages
            try:
                connection = await self._open(reply_timeout)
            except NETWORK_ERRORS as error:
                self.mark_down(error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                await asyncio.sleep(min(delay, left))
            else:
                self.mark_up(outages)  # it answered the setup commands
                return connection
        raise AssertionError("unreachable")  # pragma: no cover - backoff never ends

    async def _open(self, reply_timeout: float) -> RespConnection:
        address = self.address
        if self.sentinel is not None:
            try:
                host, port = await self.sentinel.discover_master(address.service)
            except Exception as error:  # no sentinel answered, or none knows the master
                refused = await handshake_refusal(self.address.hosts, self.tls_context)
                if refused is not None:
                    problem = f"the TLS handshake with the sentinels failed ({refused})"
                    raise RedisConnectionError(problem) from error
                problem = f"no master for {address.label}: {_brief(str(error))}"
                raise RedisConnectionError(problem) from error
        else:
            host, port = address.hosts[0]
        return await open_connection(
            host,
            port,
            db=address.db,
            username=address.username,
            password=address.password,
            tls=self.tls_context,
            connect_timeout=SOCKET_CONNECT_TIMEOUT,
            reply_timeout=reply_timeout,
        )

    # -- blocking reads -----------------------------------------------------------

    async def blocking_connection(self) -> RespConnection:
        """A connection of its own for a blocking read (one connection attempt).

        Its replies may take :data:`BLOCK_SECONDS` plus :data:`READ_GRACE`; one
        later than that means a dead connection. Raises redis-py's errors as they
        are (the reader tells an outage, which it waits out, from the rest), and
        LayerError after :meth:`aclose`.
        """
        if self.closed:
            raise self.closed_error()
        while self._idle_blocking:
            connection = self._idle_blocking.pop()
            if connection.error is None:
                return connection
        return await self._connect(0.0, BLOCK_SECONDS + READ_GRACE)

    async def release_blocking(self, connection: RespConnection, *, broken: bool = False) -> None:
        """Give back a blocking connection; a ``broken`` one is closed."""
        if (
            broken
            or connection.broken
            or connection.busy
            or len(self._idle_blocking) >= IDLE_BLOCKING
        ):
            connection.close()
        else:
            self._idle_blocking.append(connection)

    async def aclose(self) -> None:
        """Close every connection to this server, for good."""
        self.closed = True
        if self._commands is not None:
            self._commands.close()
            self._commands = None
        for connection in self._idle_blocking:
            connection.close()
        self._idle_blocking.clear()
        if self.sentinel is not None:
            for client in self.sentinel.sentinels:
                await client.aclose()


def _brief(text: str, limit: int = 300) -> str:
    """``text``, cut to ``limit`` characters (redis-py's errors can name every setting
    of every connection they tried)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def backoff() -> Iterable[float]:
    """Pauses between reconnection attempts: doubling, capped, with jitter."""
    delay = BACKOFF_START
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(delay * 2, BACKOFF_MAX)
