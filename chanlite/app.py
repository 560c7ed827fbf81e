"""``Chanlite``: the ASGI app that ties interface server, layer and workers together.

Its lifespan starts the layer's reply reader and, unless ``workers=False``,
in-process workers. With ``app=host_app`` every request no chanlite route takes goes
to the host app unchanged, and the host's lifespan runs inside chanlite's. When
mounted under another Starlette app (whose ``Mount`` does not forward lifespan
events), chanlite starts on its first request instead.

Each app keeps its layer, secret key, session store and user loader (its
:class:`~chanlite.runtime.AppServices`) to itself and makes them current for the code
it runs: its workers, the requests it passes to its host app, the host's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ._logging import follow_uvicorn
from .app_setup import AppSetup, layer_options
from .config import (
    CONSUMER_TIMEOUT,
    LAYER_ENV,
    InterfaceSettings,
    check_consumer_timeout,
    normalize_origins,
)
from .default_routes import served_routes
from .host_lifespan import HostLifespan, serve_lifespan
from .layers.base import BaseChannelLayer
from .observability import Observability
from .presence import PresenceTiming
from .presence_keeper import PresenceKeeper
from .routing import Routes
from .runtime import AppServices, app_context, enter_app, exit_app
from .server import InterfaceServer
from .stores import SessionStore
from .worker import Worker

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

logger = logging.getLogger("chanlite")


class Chanlite(AppSetup):
    """The chanlite ASGI app: interface server, channel layer and workers.

    Serve it with ``chanlite serve module:app`` or any ASGI server. Its lifespan starts
    the layer, the reply reader and, unless ``workers=False``, in-process workers.

    Parameters:
        routes: The routing table: a ``Routes``, a list of ``route()``, ``include()``
            and ``@consumer`` functions, or a ``"module:attr"`` string.
        app: A host ASGI app that gets every request no chanlite route takes (every
            HTTP request without an ``http.request`` consumer); its lifespan runs too.
        layer: A layer URL or instance; by default ``CHANLITE_LAYER``, else
            ``memory://``.
        secret_key: Signs session keys; by default ``CHANLITE_SECRET_KEY``. Required
            when the app spans processes; placeholders are refused unless ``debug``.
        session_store: A store URL or ``SessionStore``; by default the layer's backend.
        user_loader: ``user_loader(user_id)``, sync or async: what ``message.user`` is.
        allowed_origins: Full origins (``"https://example.com"``) or ``["*"]``. When
            set, a WebSocket whose ``Origin`` is missing or not listed is refused (403).
        workers: Run workers in this process.
        threads: Threads that run ``def`` consumers.
        http_timeout: Seconds to wait for an ``http.request`` reply, then 503.
        consumer_timeout: Seconds a consumer may run before the worker gives up on it
            (one ERROR line): an ``async def`` consumer is cancelled; a ``def``
            consumer's thread cannot be stopped and keeps its worker thread until it
            returns. ``None``: no limit.
        websocket_connect_timeout: Seconds to wait for a ``websocket.connect`` verdict,
            then 403.
        receive_full_timeout: Seconds a frame may wait for room on a full channel,
            then the socket is closed with 1013.
        max_frame_size: Largest WebSocket frame in bytes; a larger one closes with 1009.
        metrics: Serve Prometheus metrics at ``/metrics`` (and time consumers); see
            ``docs/observability.md``.
        health: Serve ``/healthz`` (alive) and ``/readyz`` (the layer answers, the
            workers run, no graceful stop has begun).
        debug: Accept placeholder secret keys (development only).
        tracing: Trace requests, sockets and consumers with OpenTelemetry (needs the
            ``chanlite[otel]`` extra, else ConfigurationError): ``True`` uses the
            global tracer provider; a ``TracerProvider`` instance, only that one.
        group_history: ``{glob: N}``: groups whose name matches keep their last N
            messages (``Group.history()``); given to the layer built from a URL.
        history_ttl: Seconds a message of such a group is kept (the layer's default
            is 300); given to the layer built from a URL.
        group_presence: Globs of the groups that keep presence
            (``Group.add(channel, presence=...)``); given to the layer built from a URL.
        presence_grace: Seconds a closed socket's presence waits for its client to
            re-join (the layer's default is 5); given to the layer built from a URL.
        presence_timing: How often this process's interface beats and sweeps for
            presence (:class:`~chanlite.presence.PresenceTiming`; by default every 10 s,
            a beat living 30 s).
    """

    def __init__(
        self,
        routes: Any = None,
        *,
        app: ASGIApp | None = None,
        layer: str | BaseChannelLayer | None = None,
        secret_key: str | None = None,
        session_store: str | SessionStore | None = None,
        user_loader: Callable[[Any], Any] | None = None,
        allowed_origins: Sequence[str] | None = None,
        workers: bool = True,
        threads: int = 4,
        http_timeout: float = 60,
        consumer_timeout: float | None = CONSUMER_TIMEOUT,
        websocket_connect_timeout: float = 5,
        receive_full_timeout: float = 5,
        max_frame_size: int = 1024 * 1024,
        metrics: bool = False,
        health: bool = False,
        debug: bool = False,
        tracing: bool | TracerProvider = False,
        group_history: Mapping[str, int] | None = None,
        history_ttl: float | None = None,
        group_presence: Sequence[str] | None = None,
        presence_grace: float | None = None,
        presence_timing: PresenceTiming | None = None,
    ) -> None:
        self.routes = routes if isinstance(routes, Routes) else Routes(routes or [])
        self.host_app = app
        self.layer_setting = layer or os.environ.get(LAYER_ENV) or "memory://"
        #: Options for the layer built from a URL (a layer instance has its own).
        self.layer_options = layer_options(
            group_history, history_ttl, group_presence, presence_grace
        )
        self.presence_timing = presence_timing or PresenceTiming()
        self.secret_key_setting = secret_key
        self.session_store = self._store_setting = session_store
        # A store built here (from a URL, or the layer's default) is closed with the app.
        self._owns_store = not isinstance(session_store, SessionStore)
        self.user_loader = user_loader
        self.workers, self.threads, self.debug = workers, threads, debug
        self.consumer_timeout = check_consumer_timeout(consumer_timeout)
        self.settings = InterfaceSettings(
            http_timeout,
            websocket_connect_timeout,
            receive_full_timeout,
            max_frame_size,
            allowed_origins=normalize_origins(allowed_origins),
        )
        #: What this app counts, its health endpoints and its tracing.
        self.observability = self._observe(metrics, health, tracing)
        self.metrics = self.observability.metrics
        self._not_started()

    def _observe(
        self, metrics: bool, health: bool, tracing: bool | TracerProvider
    ) -> Observability:
        return Observability(
            self.routes.channels,
            metrics=metrics,
            health=health,
            tracing=tracing,
            workers_running=self._workers_running,
            in_flight=self._in_flight,
        )

    def _not_started(self) -> None:
        """What :meth:`startup` fills in (and :meth:`check`, the layer and key)."""
        self.secret_key: str | None = None
        self.layer: BaseChannelLayer | None = None
        self._services: AppServices | None = None
        self.interface: InterfaceServer | None = None
        self.worker: Worker | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._presence: PresenceKeeper | None = None
        self._start_lock: asyncio.Lock | None = None
        self._started = False

    def _in_flight(self) -> int:
        return self.worker.in_flight if self.worker is not None else 0

    # -- lifecycle --------------------------------------------------------------

    async def startup(self) -> None:
        """Start the layer, the reply reader and the in-process workers."""
        if self._started:
            return
        follow_uvicorn()
        if self.layer is None or self.secret_key is None:
            self.check()
        assert self.layer is not None
        loop = asyncio.get_running_loop()
        context = app_context(self.run_on(loop))
        self.interface = InterfaceServer(
            self.layer,
            served_routes(self.routes),
            self.settings,
            local_workers=self.workers,
            metrics=self.metrics,
            tracing=self.observability.tracing,
        )
        # Its tasks, like the worker's, are this app's even when another app's request
        # (a site that mounts this one) started it.
        context.run(self.interface.start)
        if self.layer.presence_globs:
            self._presence = PresenceKeeper(self.layer, self.interface.prefix, self.presence_timing)
            await context.run(self._presence.start)
        if self.workers:
            # The worker, and each consumer it runs, find this app in the context of
            # its task: another app in the process has a task of its own.
            self.worker = context.run(self._new_worker, self.layer)
            self._worker_task = loop.create_task(self.worker.run(), context=context)
        self.observability.start(self.layer)
        self._started = True

    def _workers_running(self) -> bool:
        """True if this app's workers run (or it runs none)."""
        if not self.workers:
            return True
        return self._worker_task is not None and not self._worker_task.done()

    async def drain(self) -> None:
        """Stop taking messages, let in-flight consumers finish, deliver their
        replies, then close every socket with 1001 (idempotent). ``/readyz`` answers
        503 from now on."""
        self.observability.readiness.stopping = True
        if self.worker is not None and self._worker_task is not None:
            self.worker.stop()
            await self._worker_task
            self.worker = self._worker_task = None
        if self.interface is not None:
            await self.interface.drain_replies()
            await self.interface.close_all()

    async def shutdown(self) -> None:
        """Graceful stop: :meth:`drain`, then stop the reply reader and close the
        session store and the layer.

        Each of those steps runs even if an earlier one fails, and a failure is raised
        once they all have, so no reader task or connection outlives a failed stop.
        """
        if not self._started:
            return
        self._started = False
        async with contextlib.AsyncExitStack() as stopping:  # unwinds last-pushed first
            stopping.callback(self._forget_closed)
            if self.layer is not None:
                stopping.push_async_callback(self.layer.aclose)
            stopping.push_async_callback(self.close_store)
            if self.interface is not None:
                stopping.push_async_callback(self.interface.stop)
            stopping.push_async_callback(self.observability.stop)
            stopping.push_async_callback(self._stop_presence)
            await self.drain()

    async def _stop_presence(self) -> None:
        keeper, self._presence = self._presence, None
        if keeper is not None:
            await keeper.stop()

    async def _ensure_started(self) -> None:
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            await self.startup()

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Wrap ``app``, a site that mounts this app, so that its views and middleware
        find this app's layer, secret key, session store and user loader, as a host
        app given as ``Chanlite(routes, app=site)`` does.

        Add it last, so it runs first: ``site.add_middleware(chan.middleware)``. It
        starts this app on the first request if the site's lifespan has not.
        """

        async def within_app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] not in ("http", "websocket"):
                await app(scope, receive, send)
                return
            await self._ensure_started()
            await self._as_current(app, scope, receive, send)

        return within_app

    # -- ASGI -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self._ensure_started()
        assert self.interface is not None
        if scope["type"] == "websocket":
            # The interface runs no user code: a socket needs no app made current,
            # and its connection, held open for long, no frame more to keep.
            await self.interface.handle_websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._as_current(self._serve_http, scope, receive, send)

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.interface is not None
        if await self.observability.answer(scope, receive, send):
            return
        await self.interface.handle_http(scope, receive, send, self._fallback)

    async def _as_current(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Call ``app`` with this app current, for the host app's views and middleware
        (and the threads of sync views, which copy the context)."""
        token = enter_app(self.services())
        try:
            await app(scope, receive, send)
        finally:
            exit_app(token)

    async def _fallback(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.host_app is not None:
            await self.host_app(scope, receive, send)
        else:
            await PlainTextResponse("Not Found", 404)(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        host = HostLifespan(self.host_app, scope) if self.host_app is not None else None
        await serve_lifespan(self.startup, self.shutdown, host, self.services, receive, send)

    def __repr__(self) -> str:
        return f"<Chanlite routes={len(self.routes)} layer={self.layer_setting!r}>"
