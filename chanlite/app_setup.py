"""What a ``Chanlite`` app is set up with (:class:`AppSetup`, a part of
:class:`~chanlite.app.Chanlite`): its settings, and the layer, secret key, session
store and worker they resolve to when it is checked or started."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .config import resolve_secret_key
from .default_routes import served_routes
from .exceptions import ConfigurationError
from .layers import get_layer
from .layers.base import BaseChannelLayer
from .metrics import Metrics
from .observability import Observability
from .routing import Routes
from .runtime import AppServices, app_context
from .stores import SessionStore, get_session_store
from .worker import Worker

logger = logging.getLogger("chanlite")


class AppSetup:
    """Settings and the services they resolve to (``Chanlite.__init__`` sets them)."""

    routes: Routes
    #: The layer URL or instance the app was given (or ``CHANLITE_LAYER``).
    layer_setting: str | BaseChannelLayer
    #: Options for the layer built from a URL (a layer instance has its own).
    layer_options: dict[str, Any]
    secret_key_setting: str | None
    session_store: Any
    user_loader: Callable[[Any], Any] | None
    workers: bool
    threads: int
    consumer_timeout: float | None
    debug: bool
    observability: Observability
    metrics: Metrics
    #: The layer and key :meth:`check` resolved (None before).
    layer: BaseChannelLayer | None
    secret_key: str | None
    _services: AppServices | None
    _store_setting: Any
    _owns_store: bool
    _started: bool

    def configure(
        self,
        *,
        layer: str | None = None,
        workers: bool | None = None,
        threads: int | None = None,
        metrics: bool | None = None,
        health: bool | None = None,
        tracing: bool | None = None,
    ) -> None:
        """Override settings before start (the CLI's ``--layer`` and friends); None
        keeps the app's own, and ``tracing=True`` a tracer provider it was given."""
        if self._started:
            raise ConfigurationError("a running Chanlite app cannot be reconfigured")
        if layer is not None:
            self.layer_setting = layer
        if workers is not None:
            self.workers = workers
        if threads is not None:
            self.threads = threads
        self.observability.configure(metrics=metrics, health=health, tracing=tracing)

    def check(self) -> None:
        """Validate the configuration without starting: layer, key, worker settings.

        Raises ConfigurationError naming the problem.
        """
        layer = get_layer(self.layer_setting, **self.layer_options)
        key, generated = resolve_secret_key(
            self.secret_key_setting, spans_processes=self.spans_processes(layer), debug=self.debug
        )
        if generated and self.secret_key is not None:
            key, generated = self.secret_key, False  # a restart keeps its random key
        self.layer, self.secret_key = layer, key
        self._services = None
        if generated:
            logger.warning(
                "no secret key is set; using a random key for this process only. "
                "Set CHANLITE_SECRET_KEY (or Chanlite(secret_key=...)) to keep sessions "
                "across restarts and processes."
            )
        services = self.services()  # a bad session_store setting fails here, before serving
        if self.workers:
            app_context(services).run(self._new_worker, layer)

    def services(self) -> AppServices:
        """This app's layer, secret key, session store and user loader, as the code it
        runs finds them (after :meth:`check`; with its event loop once started)."""
        if self._services is None:
            assert self.layer is not None
            if not isinstance(self.session_store, SessionStore):
                self.session_store = get_session_store(self.session_store, self.layer)
            self._services = AppServices(
                self.secret_key,
                self.session_store,
                self.user_loader,
                layer=self.layer,
                metrics=self.metrics,
            )
        return self._services

    def run_on(self, loop: asyncio.AbstractEventLoop) -> AppServices:
        """Record the event loop this app runs on (where blocking calls from its
        threads go) and return its services (after :meth:`check`)."""
        self._services = dataclasses.replace(self.services(), loop=loop)
        return self._services

    async def close_store(self) -> None:
        """Close the session store if the app built it (from a URL, or as its layer's
        default store); a store instance passed in stays open."""
        if self._owns_store and isinstance(self.session_store, SessionStore):
            await self.session_store.aclose()

    def _new_worker(self, layer: BaseChannelLayer) -> Worker:
        return Worker(
            served_routes(self.routes),
            layer,
            threads=self.threads,
            consumer_timeout=self.consumer_timeout,
            metrics=self.metrics,
            tracing=self.observability.tracing,
        )

    def spans_processes(self, layer: BaseChannelLayer) -> bool:
        """True when this app shares its layer with other processes."""
        return not self.workers or not layer.process_local

    def _forget_closed(self) -> None:
        """Let a later :meth:`startup` build a fresh layer and session store in place of
        those :meth:`shutdown` closed (a layer or store instance passed in stays: it is
        the caller's, and closed)."""
        if isinstance(self.layer_setting, str):
            self.layer = None
        if self._owns_store:
            self.session_store = self._store_setting
        self._services = None


def layer_options(
    group_history: Mapping[str, int] | None,
    history_ttl: float | None,
    group_presence: Sequence[str] | None,
    presence_grace: float | None,
) -> dict[str, Any]:
    """The layer options an app was given (those not left at None)."""
    options = {
        "group_history": group_history,
        "history_ttl": history_ttl,
        "group_presence": group_presence,
        "presence_grace": presence_grace,
    }
    return {name: value for name, value in options.items() if value is not None}
