"""The process's runtime context.

* Which layer a ``Channel`` or ``Group`` without an explicit layer uses: the current
  consumer's message's layer; else the layer of the ``Chanlite`` app (or worker)
  running in this process; else ``CHANLITE_LAYER``; else one process-wide
  ``memory://`` layer.
* The *consumer scope*: while a consumer runs, its sends are buffered here and
  flushed, in call order, when it returns or raises (consumer atomicity).
* The app's *services*: the secret key, session store and user loader that the
  session, auth and ordering decorators use (:class:`AppServices`).
* The sync bridge: blocking twins of async calls, usable from worker threads, sync
  Starlette views and plain scripts with no event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .config import LAYER_ENV, SECRET_KEY_ENV
from .exceptions import ChanliteError, ChannelFull

if TYPE_CHECKING:
    from .layers.base import BaseChannelLayer

logger = logging.getLogger("chanlite")
T = TypeVar("T")


_app_layer: BaseChannelLayer | None = None
_app_services: AppServices | None = None
_default_layer: BaseChannelLayer | None = None
_home_loop: asyncio.AbstractEventLoop | None = None
_portal: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


class ConsumerScope:
    """What one running consumer has sent, waiting to be flushed.

    (A plain class with slots: one is made for every message a worker runs.)
    """

    __slots__ = ("accepted", "layer", "loop", "outbox", "reply_channel")

    def __init__(
        self,
        layer: BaseChannelLayer,
        reply_channel: str | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.layer = layer
        self.reply_channel = reply_channel
        #: (is_group, name, encoded payload), in call order.
        self.outbox: list[tuple[bool, str, bytes]] = []
        #: True once something that opens the socket went to the reply channel.
        self.accepted = False
        #: The event loop running the consumer's worker, for blocking calls from threads.
        self.loop = loop

    async def flush(self) -> None:
        """Send everything buffered, in order; a full channel is logged, not raised."""
        outbox, self.outbox = self.outbox, []
        for is_group, name, payload in outbox:
            try:
                if is_group:
                    await self.layer.group_send_encoded(name, payload)
                else:
                    await self.layer.send_encoded(name, payload)
            except ChannelFull as exc:
                logger.error("dropped a buffered message: %s", exc)


@dataclass(frozen=True)
class AppServices:
    """What the decorators need from the app running in this process."""

    #: Signs session keys; None when the app has none (signed values then count
    #: as no session).
    secret_key: str | None = None
    #: A store URL or instance; None uses the same backend as the layer.
    session_store: Any = None
    #: ``user_loader(user_id)``, sync or async; None gives a :class:`chanlite.auth.User`.
    user_loader: Callable[[Any], Any] | None = None


_scope: ContextVar[ConsumerScope | None] = ContextVar("chanlite_scope", default=None)


def current_scope() -> ConsumerScope | None:
    """The scope of the consumer running in this context, if any."""
    return _scope.get()


def enter_scope(scope: ConsumerScope) -> None:
    """Make ``scope`` current for this context (a worker task, copied into threads)."""
    _scope.set(scope)


def set_app_layer(layer: BaseChannelLayer | None, loop: asyncio.AbstractEventLoop | None) -> None:
    """Register (or clear) the layer and event loop of the app running here."""
    global _app_layer, _home_loop
    _app_layer = layer
    _home_loop = loop


def set_app_services(services: AppServices | None) -> None:
    """Register (or clear) the services of the app running in this process."""
    global _app_services
    _app_services = services


def app_services() -> AppServices:
    """The running app's services; without an app, the secret key from
    ``CHANLITE_SECRET_KEY`` and defaults for the rest."""
    if _app_services is not None:
        return _app_services
    return AppServices(secret_key=os.environ.get(SECRET_KEY_ENV) or None)


def resolve_layer(layer: BaseChannelLayer | None = None) -> BaseChannelLayer:
    """The layer to use when ``layer`` is not given (see the module docstring)."""
    if layer is not None:
        return layer
    scope = _scope.get()
    if scope is not None:
        return scope.layer
    if _app_layer is not None:
        return _app_layer
    return default_layer()


def default_layer() -> BaseChannelLayer:
    """The process-wide layer from ``CHANLITE_LAYER``, else ``memory://``."""
    global _default_layer
    with _lock:
        if _default_layer is None:
            from .layers import get_layer

            _default_layer = get_layer(os.environ.get(LAYER_ENV) or "memory://")
        return _default_layer


def run_sync(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``await fn(*args)`` from synchronous code and return its result.

    The call runs on the event loop of the worker running the current consumer; else
    on the app's event loop when one is running in this process; else on a private
    background loop. Calling it from a thread that is running an event
    loop would block that loop, so it raises instead.
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
    scope = _scope.get()
    if scope is not None and scope.loop is not None and scope.loop.is_running():
        loop = scope.loop
    elif _home_loop is not None and _home_loop.is_running():
        loop = _home_loop
    else:
        loop = _portal_loop()
    return asyncio.run_coroutine_threadsafe(_call(fn, *args), loop).result()


async def _call(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)


def _portal_loop() -> asyncio.AbstractEventLoop:
    global _portal
    with _lock:
        if _portal is None or not _portal.is_running():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=_run_portal, args=(loop, ready), name="chanlite-portal", daemon=True
            )
            thread.start()
            ready.wait()
            _portal = loop
        return _portal


def _run_portal(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()
