"""How running code finds its app, its layer and an event loop.

* *The current app*: each ``Chanlite`` app, and each ``chanlite worker``, keeps its own
  :class:`AppServices` (layer, event loop, secret key, session store, user loader) and
  makes it current, in a context variable, for the code it runs: its workers (so
  every consumer, and the threads of ``def`` consumers), each request it passes to its
  host app (views, middleware, and the threads of sync views), the host's lifespan,
  and the ``with`` block of a ``ChanliteTestClient``. No app writes process-wide
  state, so several apps in one process keep their own settings.
* Code outside any app (a script, or a thread started without a copy of the
  context) uses the process defaults: the secret key from ``CHANLITE_SECRET_KEY``,
  and one process-wide layer from ``CHANLITE_LAYER``, else ``memory://``.
* Which layer a ``Channel`` or ``Group`` without an explicit layer uses: the current
  consumer's message's layer; else the current app's layer; else the default layer.
* The *consumer scope*: while a consumer runs, its sends are buffered here and
  flushed, in call order, when it returns or raises (consumer atomicity).

The sync bridge (blocking twins of async calls) is :mod:`chanlite.sync_bridge`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from contextvars import Context, ContextVar, Token, copy_context
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .config import LAYER_ENV, SECRET_KEY_ENV
from .exceptions import ChannelFull

if TYPE_CHECKING:
    from .layers.base import BaseChannelLayer
    from .metrics import Metrics
    from .recovery import Rejoin

logger = logging.getLogger("chanlite")
T = TypeVar("T")


class ConsumerScope:
    """What one running consumer has sent, waiting to be flushed.

    (A plain class with slots: one is made for every message a worker runs.)
    """

    __slots__ = (
        "accepted",
        "layer",
        "loop",
        "metrics",
        "outbox",
        "rejoin",
        "reply_channel",
        "reply_trace",
        "trace",
    )

    def __init__(
        self,
        layer: BaseChannelLayer,
        reply_channel: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.layer = layer
        self.reply_channel = reply_channel
        #: (is_group, name, encoded payload), in call order.
        self.outbox: list[tuple[bool, str, bytes]] = []
        #: True once something that opens the socket went to the reply channel.
        self.accepted = False
        #: The event loop running the consumer's worker, for blocking calls from threads.
        self.loop = loop
        #: Where the sends are counted.
        self.metrics = metrics
        #: The trace context every send from this consumer carries (tracing on).
        self.trace: dict[str, str] | None = None
        #: What its sends to :attr:`reply_channel` carry: :attr:`trace`, or None for
        #: a trace that is not sampled (the interface would make no span of it, and
        #: a reply goes nowhere further).
        self.reply_trace: dict[str, str] | None = None
        #: A ``chanlite.v1`` socket's re-join, while its connect consumer runs.
        self.rejoin: Rejoin | None = None

    async def flush(self) -> None:
        """Send everything buffered, in order; a full channel is logged, not raised.

        Each send is counted in :attr:`metrics`.
        """
        outbox, self.outbox = self.outbox, []
        metrics = self.metrics
        for is_group, name, payload in outbox:
            try:
                if is_group:
                    await self.layer.group_send_encoded(name, payload)
                else:
                    await self.layer.send_encoded(name, payload)
            except ChannelFull as exc:
                logger.error("dropped a buffered message: %s", exc)
                if metrics is not None:
                    metrics.channel_full(name)
                continue
            if metrics is not None:
                metrics.sent_to(name, is_group)


@dataclass(frozen=True)
class AppServices:
    """What code running for one app finds through the context: the app's settings
    for the session, auth and ordering decorators, its layer and its event loop."""

    #: Signs session keys; None when the app has none (signed values then count
    #: as no session).
    secret_key: str | None = None
    #: A store URL or instance; None uses the same backend as the layer.
    session_store: Any = None
    #: ``user_loader(user_id)``, sync or async; None gives a :class:`chanlite.auth.User`.
    user_loader: Callable[[Any], Any] | None = None
    #: Where a ``Channel`` or ``Group`` without a layer sends outside a consumer;
    #: None: the default layer.
    layer: BaseChannelLayer | None = None
    #: The event loop the app runs on, where blocking calls from its threads go.
    loop: asyncio.AbstractEventLoop | None = None
    #: What the app counts; None outside an app.
    metrics: Metrics | None = None


_scope: ContextVar[ConsumerScope | None] = ContextVar("chanlite_scope", default=None)
_app: ContextVar[AppServices | None] = ContextVar("chanlite_app", default=None)

# The process defaults, for code outside any app. No app sets them.
_default_services: AppServices | None = None
_default_layer: BaseChannelLayer | None = None
_lock = threading.Lock()


# -- the consumer scope -------------------------------------------------------------


def current_scope() -> ConsumerScope | None:
    """The scope of the consumer running in this context, if any."""
    return _scope.get()


def count_sent(name: str, *, group: bool) -> None:
    """Count a send made now (not buffered) in the current consumer's or app's
    metrics, if any."""
    scope = _scope.get()
    services = _app.get()
    metrics = scope.metrics if scope is not None else None
    if metrics is None and services is not None:
        metrics = services.metrics
    if metrics is not None:
        metrics.sent_to(name, group)


def enter_scope(scope: ConsumerScope) -> None:
    """Make ``scope`` current for this context (a worker task, copied into threads)."""
    _scope.set(scope)


# -- the current app ----------------------------------------------------------------


def current_app() -> AppServices | None:
    """The services of the app whose code runs in this context, if any."""
    return _app.get()


def enter_app(services: AppServices) -> Token[AppServices | None]:
    """Make ``services`` the current app's in this context, until :func:`exit_app`
    with the token returned (tasks and threads started meanwhile keep it)."""
    return _app.set(services)


def exit_app(token: Token[AppServices | None]) -> None:
    """Restore the app that was current before :func:`enter_app` gave ``token``."""
    _app.reset(token)


def app_context(services: AppServices) -> Context:
    """A copy of this context with ``services`` as the current app's, for a task
    (``create_task(..., context=...)``) or a call (``.run(...)``) of that app."""
    context = copy_context()
    context.run(_app.set, services)
    return context


def set_app_services(services: AppServices | None) -> None:
    """Set (or clear) the services that code outside any app uses: a script, or a
    worker built without an app. An app's own services reach its code through the
    context and take precedence."""
    global _default_services
    _default_services = services


def app_services() -> AppServices:
    """The current app's services; outside any app, those given to
    :func:`set_app_services`, else the secret key from ``CHANLITE_SECRET_KEY`` and
    defaults for the rest."""
    services = _app.get()
    if services is not None:
        return services
    if _default_services is not None:
        return _default_services
    return AppServices(secret_key=os.environ.get(SECRET_KEY_ENV) or None)


# -- which layer --------------------------------------------------------------------


def resolve_layer(layer: BaseChannelLayer | None = None) -> BaseChannelLayer:
    """The layer to use when ``layer`` is not given (see the module docstring)."""
    if layer is not None:
        return layer
    scope = _scope.get()
    if scope is not None:
        return scope.layer
    services = _app.get()
    if services is not None and services.layer is not None:
        return services.layer
    return default_layer()


def default_layer() -> BaseChannelLayer:
    """The process-wide layer from ``CHANLITE_LAYER``, else ``memory://``."""
    global _default_layer
    if _default_layer is not None:
        return _default_layer
    with _lock:
        if _default_layer is None:
            from .layers import get_layer

            _default_layer = get_layer(os.environ.get(LAYER_ENV) or "memory://")
        return _default_layer
