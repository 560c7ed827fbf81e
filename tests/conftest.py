"""Shared fixtures: the async backend, layers, and the Redis requirement."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from .layers.redis_helpers import RedisServer

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TrackedConnection(sqlite3.Connection):
    """A sqlite3 connection that records whether it was closed by its owner (one left
    to the garbage collector never is)."""

    was_closed = False

    def close(self) -> None:
        super().close()
        self.was_closed = True


@pytest.fixture
def sqlite_connections(monkeypatch: pytest.MonkeyPatch) -> list[TrackedConnection]:
    """Every sqlite3 connection opened during the test, by chanlite or anyone else,
    in the order they were opened; assert on ``was_closed`` to check that each was."""
    opened: list[TrackedConnection] = []
    connect = sqlite3.connect

    def tracked(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs, factory=TrackedConnection)
        opened.append(conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", tracked)
    return opened


async def assert_each_fails_on_a_missing_table(
    operations: dict[str, Callable[[], Awaitable[Any]]], path: str
) -> None:
    """Each of ``operations`` raises a LayerError naming the SQLite database at
    ``path``, caused by sqlite3's own error for a table dropped behind its back."""
    from chanlite import LayerError

    for name, operation in operations.items():
        with pytest.raises(LayerError, match="no such table") as caught:
            await operation()
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError), name
        assert caught.value.backend == f"SQLite database {path!r}", name


def redis_available() -> bool:
    """True if a Redis server answers PING on 127.0.0.1:6379."""
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def require_redis() -> None:
    """Skip (or, with CHANLITE_REQUIRE_REDIS=1, fail) when no Redis answers."""
    if not redis_available():
        _missing(f"no Redis server answers on {REDIS_HOST}:{REDIS_PORT}")


def require_redis_server() -> None:
    """Skip (or, with CHANLITE_REQUIRE_REDIS=1, fail) without a redis-server binary
    to start a private server with."""
    if not shutil.which("redis-server"):
        _missing("no redis-server binary to start a private server with")


@contextlib.contextmanager
def private_redis_servers(count: int = 1) -> Iterator[list[RedisServer]]:
    """``count`` redis-server processes of our own, killed by PID afterwards; skips
    (or, with CHANLITE_REQUIRE_REDIS=1, fails) without a redis-server binary."""
    require_redis_server()
    servers = [RedisServer() for _ in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.kill()


def _missing(reason: str, requirement: str = "CHANLITE_REQUIRE_REDIS") -> None:
    """Fail when the environment variable ``requirement`` is 1 (as in CI), else skip
    with a visible reason: the part the test needs is not on this machine."""
    if os.environ.get(requirement) != "1":
        pytest.skip(reason)
    pytest.fail(f"{reason}, and {requirement}=1 requires it")


def require_browser() -> str:
    """The path of the OS's Chromium for Playwright to drive; skip without one, or,
    with CHANLITE_REQUIRE_BROWSER=1 (CI), fail."""
    path = shutil.which("chromium")
    if path is None:
        reason = "no chromium on PATH for Playwright to drive (apt-get install chromium)"
        _missing(reason, "CHANLITE_REQUIRE_BROWSER")
        raise AssertionError("unreachable")  # _missing always fails or skips
    return path
