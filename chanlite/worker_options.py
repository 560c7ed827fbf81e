"""A worker's settings: which channels it listens on, its threads and its in-flight
limit, each checked with a message that names the problem."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from .exceptions import ConfigurationError
from .routing import Routes

__all__ = [
    "ASYNC_CONCURRENCY",
    "check_concurrency",
    "check_threads",
    "default_concurrency",
    "select_channels",
]

#: In-flight limit beyond the thread count when some consumers are async.
ASYNC_CONCURRENCY = 64


def check_threads(threads: int) -> int:
    """``threads``, if it is a positive integer."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigurationError(f"threads must be a positive integer, got {threads!r}")
    return threads


def select_channels(
    channels: Iterable[str],
    only: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> list[str]:
    """``channels`` filtered by ``only`` and ``exclude`` glob patterns, sorted."""
    only_list = list(only or ())
    exclude_list = list(exclude or ())
    selected = []
    for name in sorted(channels):
        if only_list and not any(fnmatch.fnmatchcase(name, glob) for glob in only_list):
            continue
        if any(fnmatch.fnmatchcase(name, glob) for glob in exclude_list):
            continue
        selected.append(name)
    return selected


def default_concurrency(routes: Routes, threads: int) -> int:
    """The in-flight limit when none is given: the threads, plus
    :data:`ASYNC_CONCURRENCY` when some consumer is ``async def``."""
    if any(item.is_async for item in routes):
        return threads + ASYNC_CONCURRENCY
    return threads


def check_concurrency(concurrency: int | None) -> int | None:
    """``concurrency``, if it is None or a positive integer."""
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ConfigurationError(
            f"concurrency must be a positive integer or None, got {concurrency!r}"
        )
    return concurrency
