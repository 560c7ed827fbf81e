"""``around``: one implementation for decorators of sync and async consumers.

A decorator supplies two async steps, ``enter(message)`` before the consumer and
``leave(message, state, error)`` after it (also when it raised; ``error`` is the
exception, re-raised afterwards). An ``async def`` consumer gets an ``async def``
wrapper that awaits the steps; a ``def`` consumer gets a ``def`` wrapper (it runs in a
worker thread) that runs them on the worker's event loop through the sync bridge. The
wrapper keeps the consumer's name, docstring and chanlite marks (``functools.wraps``),
so decorators stack in any order.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .messages import Message
from .routing import is_async_callable
from .sync_bridge import run_sync

S = TypeVar("S")
Consumer = Callable[..., Any]
Enter = Callable[[Message], Awaitable[S]]
Leave = Callable[[Message, S, BaseException | None], Awaitable[None]]


def around[S](consumer: Consumer, enter: Enter[S], leave: Leave[S]) -> Consumer:
    """Wrap ``consumer`` so ``enter`` runs before it and ``leave`` after it."""
    if is_async_callable(consumer):
        return _around_async(consumer, enter, leave)
    return _around_sync(consumer, enter, leave)


def _around_async[S](consumer: Consumer, enter: Enter[S], leave: Leave[S]) -> Consumer:
    @functools.wraps(consumer)
    async def wrapper(message: Message, **kwargs: Any) -> Any:
        state = await enter(message)
        try:
            result = await consumer(message, **kwargs)
        except BaseException as exc:
            await leave(message, state, exc)
            raise
        await leave(message, state, None)
        return result

    return wrapper


def _around_sync[S](consumer: Consumer, enter: Enter[S], leave: Leave[S]) -> Consumer:
    @functools.wraps(consumer)
    def wrapper(message: Message, **kwargs: Any) -> Any:
        state = run_sync(enter, message)
        try:
            result = consumer(message, **kwargs)
        except BaseException as exc:
            run_sync(leave, message, state, exc)
            raise
        run_sync(leave, message, state, None)
        return result

    return wrapper


def mark(consumer: Consumer, name: str, value: object = True) -> Consumer:
    """Set a chanlite mark on ``consumer`` (a wrapper, never the user's function)."""
    setattr(consumer, name, value)
    return consumer


def marked(consumer: object, name: str) -> Any:
    """The value of mark ``name`` on ``consumer``, or None."""
    return getattr(consumer, name, None)
