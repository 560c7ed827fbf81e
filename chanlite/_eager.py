"""Starting a coroutine at once, and making a task of it only if it waits.

On the hot paths most coroutines never wait: a consumer that only buffers its sends,
a socket write the transport takes at once, a Redis script call written to an idle
connection. A plain task would run each of them one event-loop iteration later, and
wake whoever awaits it one more iteration after it ends. :func:`start_eagerly` runs
the first step in the caller's turn, as an asyncio eager task, and hands back the
task only if there is a rest to run. This is why chanlite needs Python 3.12.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextvars import Context
from typing import Any


def start_eagerly[T](
    coro: Coroutine[Any, Any, T], context: Context | None = None
) -> asyncio.Task[T] | None:
    """Run ``coro`` as a task that starts now; ``None`` if it already finished.

    Runs in ``context`` (a copy of the current one when ``None``), like any task. If
    ``coro`` finished in its first step, what it raised is raised here; otherwise
    the returned task runs the rest, and whoever holds it must await it or read its
    result.
    """
    task = asyncio.eager_task_factory(asyncio.get_running_loop(), coro, context=context)
    if not task.done():
        return task
    task.result()  # raises what the coroutine raised
    return None
