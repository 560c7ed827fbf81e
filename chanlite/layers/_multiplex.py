"""One Redis connection shared by every command of a process: automatic pipelining.

Commands issued while the event loop runs other work are written together, in one
``write``, and one task reads the replies in the order the commands went out. Many
concurrent senders (an interface relaying frames from hundreds of sockets) then cost
Redis and the process one round trip per batch instead of one per command, and no
connection pool is checked out per call.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["Multiplexer"]


class _Call:
    """Commands sent together, and the replies read for them so far."""

    __slots__ = ("count", "future", "replies")

    def __init__(self, future: asyncio.Future[list[Any]], count: int) -> None:
        self.future, self.count = future, count
        self.replies: list[Any] = []


class Multiplexer:
    """Pipelines commands over one connected redis-py connection.

    :meth:`execute` returns the replies of its commands (a :class:`ResponseError` in
    place of a failed command's reply). The connection is read all the time, so a
    server that closed it (say, on a restart) is noticed while it sits idle, before
    anything else is sent on it. When the connection breaks, or a reply is more than
    ``reply_timeout`` seconds overdue, every command whose replies have not arrived
    fails with :class:`redis.exceptions.ConnectionError` or ``TimeoutError``: it may
    or may not have run, so callers decide whether repeating it is safe. A broken
    multiplexer stays broken; make a new one.
    """

    def __init__(self, connection: Any, reply_timeout: float) -> None:
        self.connection = connection
        #: How long a reply may be overdue before the connection counts as dead.
        self.reply_timeout = reply_timeout
        self.error: BaseException | None = None
        self._pending: deque[_Call] = deque()
        self._chunks: list[bytes] = []
        self._to_write = asyncio.Event()
        self._replies_read = 0
        self._watchdog: asyncio.TimerHandle | None = None
        loop = asyncio.get_running_loop()
        self._tasks = (
            loop.create_task(self._write_loop()),
            loop.create_task(self._read_loop()),
        )

    @property
    def broken(self) -> bool:
        return self.error is not None

    async def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` with whatever else is going out, and return their replies."""
        if self.error is not None:
            raise RedisConnectionError(f"connection lost: {self.error}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._chunks.extend(self.connection.pack_commands(commands))
        self._pending.append(_Call(future, len(commands)))
        self._to_write.set()
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.reply_timeout, self._watch, self._replies_read)
        return await future

    async def aclose(self) -> None:
        """Stop both tasks, fail what is pending, and disconnect."""
        self._fail(RedisConnectionError("connection closed"))
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.connection.disconnect()

    async def _write_loop(self) -> None:
        try:
            while True:
                await self._to_write.wait()
                self._to_write.clear()
                chunks, self._chunks = self._chunks, []
                await self.connection.send_packed_command(chunks, check_health=False)
        except Exception as error:
            self._fail(error)

    async def _read_loop(self) -> None:
        try:
            while True:
                reply = await self._read_one()
                self._replies_read += 1
                if not self._pending:
                    raise RedisConnectionError(f"unexpected reply from Redis: {reply!r}")
                call = self._pending[0]
                call.replies.append(reply)
                if len(call.replies) == call.count:
                    self._pending.popleft()
                    if not call.future.done():  # a cancelled caller's replies are dropped
                        call.future.set_result(call.replies)
        except Exception as error:
            self._fail(error)

    async def _read_one(self) -> Any:
        try:
            return await self.connection.read_response(timeout=math.inf)
        except ResponseError as error:
            return error

    def _watch(self, seen: int) -> None:
        """Break if no reply came for ``reply_timeout`` seconds while some were due."""
        self._watchdog = None
        if not self._pending or self.error is not None:
            return
        if self._replies_read == seen:
            self._fail(RedisTimeoutError(f"no reply from Redis in {self.reply_timeout}s"))
            return
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self.reply_timeout, self._watch, self._replies_read)

    def _fail(self, error: BaseException) -> None:
        """Break for good: fail every pending command and stop both tasks."""
        if not isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError)):
            error = RedisConnectionError(f"{type(error).__name__}: {error}")
        if self.error is None:
            self.error = error
        while self._pending:
            call = self._pending.popleft()
            if not call.future.done():
                call.future.set_exception(error)
        self._chunks.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
