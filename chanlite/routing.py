"""The routing table: which consumer runs for which message.

A table is a :class:`Routes` object, or a list of :func:`route`, :func:`include` and
:func:`consumer`-marked functions. Tables are flattened when built: every include is
folded into its inner routes, every error (a bad regex, a positional group, an include
prefix without ``^`` or with ``$``, an import string that does not resolve) is raised
then, and matching walks a flat list. First match in table order wins.

Those errors are :class:`~chanlite.exceptions.ConfigurationError` (an import string
that does not resolve, its :class:`~chanlite.exceptions.ImportStringError`), which is
a ``ValueError``, as DESIGN §3 promises; a bad channel name is
:class:`~chanlite.InvalidChannelName`, also a ``ValueError``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, TypeVar

from ._importer import import_from_string, import_module
from .exceptions import ConfigurationError, ImportStringError
from .names import validate_channel_name

Consumer = Callable[..., Any]
F = TypeVar("F", bound=Callable[..., Any])

# Where @consumer keeps a function's routes: a list of (channels, filters).
_MARK = "__chanlite_routes__"
# An unescaped "$", which an include prefix must not contain.
_DOLLAR = re.compile(r"(?<!\\)\$")


class Route:
    """One route: channel names, a consumer, and regex filters on content keys."""

    __slots__ = ("_compiled", "channels", "consumer", "is_async", "name", "patterns")

    def __init__(
        self, channels: str | Iterable[str], consumer: Consumer | str, **filters: str
    ) -> None:
        self.channels = _channel_tuple(channels)
        self.consumer = _resolve_consumer(consumer)
        #: The consumer's qualified name, for logs, metrics and ``chanlite routes``.
        self.name = consumer_name(self.consumer)
        self.patterns = {
            key: _check_pattern_type(self, key, value) for key, value in filters.items()
        }
        self._compiled = [(key, _compile(self, key, value)) for key, value in self.patterns.items()]
        self.is_async = is_async_callable(self.consumer)

    def match(self, content: dict[str, Any]) -> dict[str, str] | None:
        """The filters' named groups if every filter matches ``content``, else None."""
        kwargs: dict[str, str] = {}
        for key, regex in self._compiled:
            value = content.get(key)
            if not isinstance(value, str):
                return None
            found = regex.match(value)
            if found is None:
                return None
            kwargs.update(found.groupdict())
        return kwargs

    def __repr__(self) -> str:
        filters = "".join(f" {key}={value!r}" for key, value in self.patterns.items())
        return f"<Route {','.join(self.channels)} -> {self.name}{filters}>"


class Include:
    """A routing table nested under filters that prefix its routes' filters."""

    __slots__ = ("filters", "routing")

    def __init__(self, routing: Any, **filters: str) -> None:
        self.routing = routing
        self.filters = filters

    def __repr__(self) -> str:
        return f"<Include {self.routing!r} {self.filters!r}>"


def route(channel: str | Iterable[str], consumer: Consumer | str, **filters: str) -> Route:
    """A route from ``channel`` (one name or several) to ``consumer``."""
    return Route(channel, consumer, **filters)


def include(routing: Any, **filters: str) -> Include:
    """Nest ``routing`` (a table or ``"module:attr"``) under ``filters``."""
    return Include(routing, **filters)


def consumer(channel: str | Iterable[str], **filters: str) -> Callable[[F], F]:
    """Mark a function as the consumer of ``channel``; stack to give it several routes.

    Marks are collected by :meth:`Routes.from_module` (and ``chanlite serve module``).
    """
    spec = (_channel_tuple(channel), dict(filters))

    def mark(func: F) -> F:
        Route(spec[0], func, **spec[1])  # check the filters now, not at collection
        marks: list[tuple[tuple[str, ...], dict[str, str]]] = list(getattr(func, _MARK, []))
        marks.insert(0, spec)  # decorators apply bottom-up; keep top-down order
        setattr(func, _MARK, marks)
        return func

    return mark


class Routes:
    """A flat, ordered routing table."""

    def __init__(self, table: Any = None) -> None:
        self._routes: list[Route] = []
        self._by_channel: dict[str, list[Route]] = {}
        if table is not None:
            for item in flatten(table):
                self.add(item)

    def add(self, item: Route) -> None:
        """Append a route to the table."""
        self._routes.append(item)
        for name in item.channels:
            self._by_channel.setdefault(name, []).append(item)

    def consumer(self, channel: str | Iterable[str], **filters: str) -> Callable[[F], F]:
        """Register the decorated function in this table (and return it unchanged)."""
        channels = _channel_tuple(channel)

        def register(func: F) -> F:
            self.add(Route(channels, func, **filters))
            return func

        return register

    @classmethod
    def from_module(cls, module: ModuleType | str) -> Routes:
        """The ``@consumer``-marked functions of ``module``, in definition order."""
        if isinstance(module, str):
            module = import_module(module)
        table = cls()
        for value in list(vars(module).values()):
            for channels, filters in getattr(value, _MARK, None) or ():
                if callable(value):
                    table.add(Route(channels, value, **filters))
        return table

    def match(self, message: Any) -> tuple[Consumer, dict[str, str]] | None:
        """``(consumer, kwargs)`` for the first route matching ``message``, or None."""
        found = self.match_content(message.channel.name, message.content)
        return None if found is None else (found[0].consumer, found[1])

    def match_content(
        self, channel: str, content: dict[str, Any]
    ) -> tuple[Route, dict[str, str]] | None:
        """The first route for ``channel`` whose filters match ``content``."""
        for item in self._by_channel.get(channel, ()):
            kwargs = item.match(content)
            if kwargs is not None:
                return item, kwargs
        return None

    @property
    def channels(self) -> set[str]:
        """Every channel name some route listens on."""
        return set(self._by_channel)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def __repr__(self) -> str:
        return f"<Routes {len(self._routes)} routes>"


def flatten(table: Any) -> list[Route]:
    """Flatten any table form into a list of routes (includes folded in)."""
    if isinstance(table, str):
        table = import_from_string(table)
    if isinstance(table, Routes):
        return list(table)
    if isinstance(table, Route):
        return [table]
    if isinstance(table, Include):
        return [_join(inner, table.filters) for inner in flatten(table.routing)]
    if isinstance(table, ModuleType):
        return list(Routes.from_module(table))
    if callable(table) and hasattr(table, _MARK):
        return [Route(channels, table, **filters) for channels, filters in getattr(table, _MARK)]
    if isinstance(table, (list, tuple)):
        return [item for entry in table for item in flatten(entry)]
    raise TypeError(
        f"a routing table must be a Routes, a list of route()/include()/@consumer "
        f"functions, or a 'module:attr' string, not {type(table).__name__}"
    )


def _join(inner: Route, outer: dict[str, str]) -> Route:
    filters = dict(inner.patterns)
    for key, prefix in outer.items():
        if key in filters:
            filters[key] = _join_pattern(inner, key, prefix, filters[key])
        else:
            filters[key] = prefix
    return Route(inner.channels, inner.consumer, **filters)


def _join_pattern(inner: Route, key: str, prefix: str, pattern: str) -> str:
    if not prefix.startswith("^"):
        raise ConfigurationError(
            f"include filter {key}={prefix!r} over {inner!r} must start with '^'"
        )
    if _DOLLAR.search(prefix):
        raise ConfigurationError(
            f"include filter {key}={prefix!r} over {inner!r} must not contain '$'"
        )
    if not pattern.startswith("^"):
        raise ConfigurationError(
            f"filter {key}={pattern!r} of {inner!r} must start with '^' to be included "
            f"under {prefix!r}"
        )
    return prefix + pattern[1:]


def with_defaults(routes: Routes, defaults: Iterable[Route]) -> Routes:
    """A copy of ``routes`` with ``defaults`` appended last (the served table)."""
    served = Routes()
    for item in routes:
        served.add(item)
    for item in defaults:
        served.add(item)
    return served


def is_async_callable(func: Any) -> bool:
    """True for ``async def`` functions, also behind ``functools.partial``/wrappers."""
    while hasattr(func, "func"):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    call = type(func).__dict__.get("__call__")
    return not inspect.isroutine(func) and inspect.iscoroutinefunction(call)


def consumer_name(func: Any) -> str:
    """``module.qualname`` of a consumer."""
    module = getattr(func, "__module__", None) or "?"
    name = getattr(func, "__qualname__", None) or type(func).__qualname__
    return f"{module}.{name}"


def _channel_tuple(channels: str | Iterable[str]) -> tuple[str, ...]:
    names = (channels,) if isinstance(channels, str) else tuple(channels)
    if not names:
        raise ConfigurationError("a route needs at least one channel name")
    return tuple(validate_channel_name(name) for name in names)


def _resolve_consumer(value: Consumer | str) -> Consumer:
    if isinstance(value, str):
        value = import_from_string(value)  # type: ignore[assignment]
    if not callable(value):
        raise ImportStringError(f"consumer {value!r} is not callable")
    return value


def _check_pattern_type(item: Route, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(
            f"filter {key!r} of route to {item.name} must be a regex string, "
            f"not {type(value).__name__}"
        )
    return value


def _compile(item: Route, key: str, pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigurationError(
            f"filter {key}={pattern!r} of route to {item.name} is not a valid regex: {exc}"
        ) from None
    if regex.groups != len(regex.groupindex):
        raise ConfigurationError(
            f"filter {key}={pattern!r} of route to {item.name} has a positional group; "
            "only named groups (?P<name>...) are allowed"
        )
    return regex
