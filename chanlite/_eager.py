"""Running a coroutine's first step at once, and finishing it later only if it waits.

asyncio (before Python 3.12's eager tasks) runs every new task one event-loop
iteration later, and wakes whoever awaits it one more iteration after it ends. On
the hot paths most coroutines never wait (a consumer that only buffers its sends, a
socket write the transport takes at once), so chanlite steps them by hand:
:func:`run_eagerly` runs the first step right away and returns ``None`` if that was
all, or a :class:`Continuation` to await (in the caller's task, or a new one) that
finishes the coroutine exactly as awaiting it would have.

:func:`run_eagerly_as` runs that first step as another task, one that is suspended
and will await the rest: whatever the step binds to the current task (a timeout, a
cancel scope) is then bound to the task that finishes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from typing import Any

# asyncio's own hooks for running a step as a task (what its eager tasks use). Private
# to asyncio, so looked up rather than imported: without them nothing runs "as".
_enter_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = getattr(
    asyncio.tasks, "_enter_task", None
)
_leave_task: Callable[[asyncio.AbstractEventLoop, asyncio.Task[Any]], None] | None = getattr(
    asyncio.tasks, "_leave_task", None
)
#: Whether :func:`run_eagerly_as` can run here.
CAN_RUN_AS = _enter_task is not None and _leave_task is not None


def run_eagerly(
    coro: Coroutine[Any, Any, Any], context: Context | None = None
) -> Continuation | None:
    """Run ``coro`` until it first waits; ``None`` if it finished, else its rest.

    Every step runs in ``context`` when one is given (as a task's steps run in the
    task's context). An exception from the first step is raised here.
    """
    try:
        yielded = context.run(coro.send, None) if context is not None else coro.send(None)
    except StopIteration:
        return None
    return Continuation(coro, yielded, context)


def run_eagerly_as(
    task: asyncio.Task[Any], coro: Coroutine[Any, Any, Any], context: Context | None = None
) -> Continuation | None:
    """:func:`run_eagerly`, with ``task`` as the current task during the step.

    ``task`` must be suspended (it is not the one running) and, if a rest is returned,
    must be the task that awaits it. Only when :data:`CAN_RUN_AS`.
    """
    assert _enter_task is not None and _leave_task is not None
    loop = task.get_loop()
    current = asyncio.current_task(loop)
    if current is not None:
        _leave_task(loop, current)
    _enter_task(loop, task)
    try:
        return run_eagerly(coro, context)
    finally:
        _leave_task(loop, task)
        if current is not None:
            _enter_task(loop, current)


class Continuation:
    """The rest of a coroutine that :func:`run_eagerly` started and that is waiting.

    Await it once, from a task: the task waits on what the coroutine was waiting on,
    and cancelling the task cancels the coroutine, as with a plain ``await``.
    """

    __slots__ = ("_context", "_coro", "_yielded")

    def __init__(
        self, coro: Coroutine[Any, Any, Any], yielded: Any, context: Context | None
    ) -> None:
        self._coro = coro
        self._yielded = yielded
        self._context = context

    def throw(self, exc: BaseException) -> Continuation | None:
        """Raise ``exc`` in the coroutine where it waits (as cancelling its task
        would); ``None`` if it then finished, else its rest. What it raises is raised.
        """
        try:
            if self._context is not None:
                yielded = self._context.run(self._coro.throw, exc)
            else:
                yielded = self._coro.throw(exc)
        except StopIteration:
            return None
        return Continuation(self._coro, yielded, self._context)

    def __await__(self) -> Generator[Any, Any, None]:
        coro, context, yielded = self._coro, self._context, self._yielded
        while True:
            # What the coroutine yielded (a future, or None to be run again soon) goes
            # to the awaiting task; what the task sends or throws back goes in.
            try:
                sent = yield yielded
            except BaseException as exc:  # cancellation, or closing the generator
                step: Callable[[Any], Any] = coro.throw
                argument: Any = exc
            else:
                step, argument = coro.send, sent
            try:
                yielded = context.run(step, argument) if context is not None else step(argument)
            except StopIteration:
                return
