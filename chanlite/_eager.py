"""Running a coroutine's first step at once, and finishing it later only if it waits.

asyncio (before Python 3.12's eager tasks) runs every new task one event-loop
iteration later, and wakes whoever awaits it one more iteration after it ends. On
the hot paths most coroutines never wait (a consumer that only buffers its sends, a
socket write the transport takes at once), so chanlite steps them by hand:
:func:`run_eagerly` runs the first step right away and returns ``None`` if that was
all, or a :class:`Continuation` to await (in the caller's task, or a new one) that
finishes the coroutine exactly as awaiting it would have.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from contextvars import Context
from typing import Any


def run_eagerly(
    coro: Coroutine[Any, Any, None], context: Context | None = None
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


class Continuation:
    """The rest of a coroutine that :func:`run_eagerly` started and that is waiting.

    Await it once, from a task: the task waits on what the coroutine was waiting on,
    and cancelling the task cancels the coroutine, as with a plain ``await``.
    """

    __slots__ = ("_context", "_coro", "_yielded")

    def __init__(
        self, coro: Coroutine[Any, Any, None], yielded: Any, context: Context | None
    ) -> None:
        self._coro = coro
        self._yielded = yielded
        self._context = context

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
