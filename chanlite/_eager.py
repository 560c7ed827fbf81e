"""Starting coroutines at once, and making a task only of those that wait.

On the hot paths most coroutines never wait: a consumer that only buffers its sends,
a socket write the transport takes at once, a Redis script call written to an idle
connection. A plain task would run each of them one event-loop iteration later, and
wake whoever awaits it one more iteration after it ends.

* :func:`start_eagerly` runs one coroutine's first step in the caller's turn, as an
  asyncio eager task, and hands back the task only if there is a rest to run. This
  is why chanlite needs Python 3.12.
* :func:`start_each_eagerly` does the same for many coroutines (one reply written to
  a thousand sockets) in one eager task, for as long as none of them waits: an eager
  task still costs a ``Task`` object, about 0.5 µs, which a fan-out would otherwise
  pay once per socket (``docs/architecture.md``, "Fast paths").
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Iterator
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
    task = asyncio.Task(coro, loop=asyncio.get_running_loop(), context=context, eager_start=True)
    if not task.done():
        return task
    task.result()  # raises what the coroutine raised
    return None


class Started:
    """How the coroutines given to :func:`start_each_eagerly` started, by index."""

    __slots__ = ("failed", "waiting")

    def __init__(self) -> None:
        #: The tasks running the rest of those that waited; each runs only its own.
        self.waiting: dict[int, asyncio.Task[None]] = {}
        #: Those that raised an ``Exception`` in their first step.
        self.failed: set[int] = set()


def start_each_eagerly(coros: Iterable[Coroutine[Any, Any, None]]) -> Started:
    """Run ``coros`` one after another, now, in as few tasks as possible.

    They run in one eager task while each ends in its first step. When one waits,
    that task goes on with its rest alone, and the coroutines after it start in a
    new eager task. So each coroutine starts in order, in the caller's turn, and a
    task is made only per coroutine that waits (plus one). An ``Exception`` raised
    in a first step is noted in :attr:`Started.failed`, and the next coroutine
    starts; any other ``BaseException`` propagates, and the rest are closed unstarted.
    All of them run in one copy of the current context.

    ``coros`` is read as they start: given a generator, each coroutine is made just
    before it runs and is gone once it has ended, so a fan-out holds no list of
    finished ones (which the garbage collector would otherwise carry into its older
    generations, and pay for in full collections).
    """
    started = Started()
    remaining = enumerate(coros)
    while True:
        turn = _Turn()
        try:
            task = start_eagerly(_one_after_another(remaining, turn, started))
        except BaseException:
            for _, unstarted in remaining:
                unstarted.close()
            raise
        finally:
            turn.starting = False
        if task is None:
            return started  # every one has started
        started.waiting[turn.at] = task


class _Turn:
    """Which coroutine a run of them is at, and whether it is still in its first step."""

    __slots__ = ("at", "starting")

    def __init__(self) -> None:
        self.at = -1
        self.starting = True


async def _one_after_another(
    remaining: Iterator[tuple[int, Coroutine[Any, Any, None]]], turn: _Turn, started: Started
) -> None:
    """Run the ``remaining`` coroutines until one waits; then finish only that one."""
    for turn.at, coro in remaining:
        try:
            await coro
        except Exception:
            if not turn.starting:
                raise  # its rest raised: the task it waited in reports it
            started.failed.add(turn.at)
        if not turn.starting:
            return
