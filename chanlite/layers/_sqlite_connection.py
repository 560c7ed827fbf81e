"""The thread a SQLite database is used on, and the file a ``sqlite://`` URL names.

:class:`SQLiteConnection` owns one sqlite3 connection on one dedicated thread: the
SQLite layer and the SQLite session store each run all their SQL through one.
:func:`immediate` is their write transaction; :func:`database_path` turns a URL into
the file both open.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

from ..exceptions import ConfigurationError, LayerError
from .base import backend_failure

__all__ = ["BUSY_TIMEOUT", "SQLiteConnection", "database_path", "immediate"]

P = ParamSpec("P")
T = TypeVar("T")

#: How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT = 10.0


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in a ``BEGIN IMMEDIATE`` transaction: commit, or roll back on error.

    IMMEDIATE takes the write lock up front, so a read inside the block cannot be
    invalidated by another process before the block writes.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def database_path(url: str) -> str:
    """The absolute file path of ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

    Raises :class:`~chanlite.exceptions.ConfigurationError` for a URL with a host, a
    query, no file name, or a directory that does not exist.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigurationError(f"not a SQLite URL: {url!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"SQLite URL {url!r}: pass options to get_layer() or as keyword arguments"
        )
    if parts.netloc:
        raise ConfigurationError(
            f"SQLite URL {url!r} names a host {parts.netloc!r}; "
            "use sqlite:///relative.db or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)[1:]  # the slash after "sqlite://" separates the path
    if not path or path.endswith("/") or path == ":memory:":
        raise ConfigurationError(
            f"SQLite URL {url!r} needs a database file, e.g. sqlite:///chanlite.db "
            "(for one process, use memory://)"
        )
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if not os.path.isdir(directory):
        raise ConfigurationError(f"SQLite URL {url!r}: the directory {directory!r} does not exist")
    return full


class _Handle:
    """The connection owned by a :class:`SQLiteConnection`'s thread."""

    __slots__ = ("closed", "conn")

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.closed = False

    def close_connection(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _shutdown(executor: ThreadPoolExecutor, handle: _Handle) -> Future[None]:
    """Close the connection after the work already queued; the thread then ends.

    Run once: by :meth:`SQLiteConnection.aclose`, when its owner is collected, or at
    interpreter exit for a connection nobody closed.
    """
    handle.closed = True
    try:
        future = executor.submit(handle.close_connection)
    except RuntimeError:  # the interpreter is exiting: the executor takes no more work
        return _close_after_exit(executor, handle)
    executor.shutdown(wait=False)
    return future


def _close_after_exit(executor: ThreadPoolExecutor, handle: _Handle) -> Future[None]:
    """Close the connection on this thread once the connection's thread has ended.

    At exit the executor's thread runs the work already queued and ends, but accepts
    no more, so the close cannot be queued behind it.
    """
    executor.shutdown(wait=True)
    handle.close_connection()
    done: Future[None] = Future()
    done.set_result(None)
    return done


class SQLiteConnection:
    """One sqlite3 connection living on one dedicated thread.

    Every call runs in submission order on that thread, so work submitted later never
    overtakes work submitted earlier. The connection is in autocommit mode (use
    :func:`immediate` for transactions), in WAL mode with ``synchronous=NORMAL``, and
    waits up to ``busy_timeout`` seconds for another process's lock. It is closed by
    :meth:`aclose` or :meth:`close`, else when it is collected or the interpreter exits.

    :meth:`run` raises an ``sqlite3.Error`` of the call as a
    :class:`~chanlite.LayerError` caused by it; :meth:`submit` and :meth:`run` raise
    ``LayerError`` once the connection is closed.
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        setup: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        self.path = path
        #: How errors name this database.
        self.backend = f"SQLite database {path!r}"
        self._handle = _Handle()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="chanlite-sqlite")
        self._finalizer = weakref.finalize(self, _shutdown, self._executor, self._handle)
        try:
            self._executor.submit(self._open, busy_timeout, setup).result()
        except sqlite3.Error as exc:
            self.close()  # the connection, if it opened, is closed before the error is raised
            raise ConfigurationError(f"cannot use the SQLite database {path!r}: {exc}") from None
        except BaseException:
            self._finalizer()  # closed once the open, still running, has finished
            raise

    def _open(
        self, busy_timeout: float, setup: Callable[[sqlite3.Connection], None] | None
    ) -> None:
        # Only this connection's thread uses it; the one exception is the close at
        # interpreter exit, after that thread has ended (see _close_after_exit).
        conn = sqlite3.connect(
            self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._handle.conn = conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if setup is not None:
            setup(conn)

    def submit(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Future[T]:
        """Queue ``fn(connection, *args, **kwargs)`` on the connection's thread.

        The future gets what ``fn`` raises as it is (see :meth:`failure`). Raises
        LayerError if the connection is closed.
        """
        if self._handle.closed:
            raise self.closed_error()
        return self._executor.submit(lambda: fn(self._connection(), *args, **kwargs))

    async def run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(connection, *args, **kwargs)`` on the connection's thread.

        Cancelling the caller cancels ``fn`` only if it has not started yet. An
        ``sqlite3.Error`` is raised as a LayerError caused by it, as it is after
        the connection is closed.
        """
        try:
            return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))
        except sqlite3.Error as error:
            raise self.failure(error) from error

    def failure(self, error: sqlite3.Error) -> LayerError:
        """``error`` of this database as a LayerError caused by it."""
        return backend_failure(self.backend, error)

    def closed_error(self) -> LayerError:
        """The error of a call on this connection once it is closed."""
        return LayerError(self.backend, "closed by aclose()")

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` or :meth:`close` has been called."""
        return self._handle.closed

    def _connection(self) -> sqlite3.Connection:
        if self._handle.conn is None:
            raise self.closed_error()
        return self._handle.conn

    async def aclose(self) -> None:
        """Close the connection after the work already queued, and end the thread."""
        closing: Future[None] | None = self._finalizer()  # None once already closed
        if closing is not None:
            await asyncio.shield(asyncio.wrap_future(closing))

    def close(self) -> None:
        """Blocking :meth:`aclose`, for code that has no event loop."""
        closing: Future[None] | None = self._finalizer()
        if closing is not None:
            closing.result()

    def __repr__(self) -> str:
        return f"<SQLiteConnection path={self.path!r}>"
