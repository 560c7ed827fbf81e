"""The sync bridge: blocking twins of async calls, for code with no event loop.

Worker threads (``def`` consumers), sync Starlette views and plain scripts call
:func:`run_sync`, which runs the coroutine on the right event loop and waits for its
result. A script outside any app gets the process's blocking portal (anyio's), an
event loop in a daemon thread that stops at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from .exceptions import ChanliteError
from .runtime import current_app, current_scope

# The process's blocking portal for scripts, and the lock that makes one.
_portal: BlockingPortal | None = None
_lock = threading.Lock()


def run_sync[T](fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``await fn(*args)`` from synchronous code and return its result.

    The call runs on the event loop of the worker running the current consumer; else
    on the current app's event loop; else (a plain script) on the process's blocking
    portal, an event loop in a background thread that stops at interpreter exit.
    Called from a thread that is running an event loop it would block that loop, so
    it raises :class:`ChanliteError` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ChanliteError(
            "a blocking chanlite call was made from async code; "
            "use the async twin (asend, aadd, adiscard, achannels) with await"
        )
    loop = _home_loop()
    if loop is None:
        return script_portal().call(fn, *args)
    # The task starts in a copy of this thread's context, so it sees the same app.
    return asyncio.run_coroutine_threadsafe(_call(fn, *args), loop).result()


def _home_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop of the current consumer's worker, else of the current app."""
    scope = current_scope()
    if scope is not None and scope.loop is not None and scope.loop.is_running():
        return scope.loop
    services = current_app()
    if services is not None and services.loop is not None and services.loop.is_running():
        return services.loop
    return None


async def _call[T](fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)


def script_portal() -> BlockingPortal:
    """The process's blocking portal for code outside any app, started on first use.

    It runs in a daemon thread, so it never holds the interpreter open, and is
    stopped at interpreter exit, so its event loop closes cleanly.
    """
    global _portal
    portal = _portal
    if portal is not None:
        return portal
    with _lock:
        if _portal is None:
            running = contextlib.ExitStack()
            _portal = running.enter_context(start_blocking_portal())
            atexit.register(_stop_script_portal, running)
        return _portal


def _stop_script_portal(running: contextlib.ExitStack) -> None:
    global _portal
    with _lock:
        _portal = None
    running.close()
