"""Health and readiness, and the endpoints that serve them with the metrics.

* ``GET /healthz`` answers 200 ``ok`` while the process runs.
* ``GET /readyz`` answers 200 ``ready``, or 503 with one line saying why not:
  ``shutting down`` (a graceful stop has begun), ``layer unavailable`` (the layer's
  last probe failed) or ``workers not running``.
* ``GET /metrics`` answers the Prometheus text format (:mod:`chanlite.metrics`).

A :class:`LayerProbe` asks the layer (:meth:`~chanlite.layers.base.BaseChannelLayer.ping`)
every :data:`PROBE_INTERVAL` seconds, giving up on an answer after
:data:`PROBE_TIMEOUT`: an outage makes ``/readyz`` answer 503 within
``PROBE_INTERVAL + PROBE_TIMEOUT`` seconds, and the layer's return makes it answer 200
again within ``PROBE_INTERVAL``.

A ``Chanlite`` app answers these paths itself (before its routes and host app) when
``metrics=True`` or ``health=True``; ``chanlite worker --metrics-port`` serves them from
a small HTTP server in a thread of its own (:func:`serve_in_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socketserver
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from .exceptions import ConfigurationError
from .layers.base import BaseChannelLayer
from .metrics import CONTENT_TYPE, Metrics, MetricsCollector, clock, exposition, new_registry

logger = logging.getLogger("chanlite")

#: Seconds between two probes of the layer.
PROBE_INTERVAL = 1.0
#: Seconds a probe waits for the layer's answer before counting it as down.
PROBE_TIMEOUT = 1.0
_TEXT = "text/plain; charset=utf-8"


class LayerProbe:
    """Asks ``layer`` every :data:`PROBE_INTERVAL` seconds whether it answers, and
    records the answer in ``metrics`` (``layer_up``, outages, returns, round trip)."""

    def __init__(self, layer: BaseChannelLayer, metrics: Metrics) -> None:
        self.layer = layer
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start probing, on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop probing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            self._record(await self.ask())
            await asyncio.sleep(PROBE_INTERVAL)

    async def ask(self) -> str | None:
        """Probe once; None if the layer answered, else what went wrong."""
        started = clock()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.layer.ping()
        except TimeoutError:
            return f"no answer within {PROBE_TIMEOUT:g}s"
        except Exception as exc:  # a LayerError, or a layer's own bug: either way, down
            return str(exc) or type(exc).__name__
        self.metrics.layer_call("probe", clock() - started)
        return None

    def _record(self, problem: str | None) -> None:
        was_up = self.metrics.layer_up
        self.metrics.layer_answered(problem is None)
        if was_up and problem is not None:
            logger.warning("the channel layer stopped answering: %s", problem)
        elif not was_up and problem is None:
            logger.info("the channel layer answers again")


@dataclass
class Readiness:
    """Whether a process should get traffic: its layer answers, its workers run, and
    it is not stopping."""

    metrics: Metrics
    #: Whether the process's workers run; None for a process without workers.
    workers_running: Callable[[], bool] | None = None
    #: Set once a graceful stop begins.
    stopping: bool = False

    def problem(self) -> str | None:
        """Why the process is not ready, or None."""
        if self.stopping:
            return "shutting down"
        if not self.metrics.layer_up:
            return "layer unavailable"
        if self.workers_running is not None and not self.workers_running():
            return "workers not running"
        return None


class Endpoints:
    """The answers to ``/metrics`` (when ``registry`` is given) and to ``/healthz`` and
    ``/readyz`` (when ``readiness`` is)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, readiness: Readiness | None = None
    ) -> None:
        self.registry = registry
        self.readiness = readiness

    @classmethod
    def of(
        cls,
        layer: BaseChannelLayer,
        readiness: Readiness,
        in_flight: Callable[[], int],
        *,
        metrics: bool,
        health: bool,
    ) -> Endpoints:
        """The endpoints of a process on ``layer`` whose counts and readiness are
        ``readiness``'s (``in_flight`` counts its workers' messages): ``/metrics`` if
        ``metrics``, the health paths if ``health``."""
        registry = None
        if metrics:
            collector = MetricsCollector(readiness.metrics, layer)
            collector.in_flight = in_flight
            registry = new_registry(collector)
        return cls(registry, readiness if health else None)

    @property
    def paths(self) -> frozenset[str]:
        """The paths answered."""
        paths = {"/metrics"} if self.registry is not None else set()
        if self.readiness is not None:
            paths |= {"/healthz", "/readyz"}
        return frozenset(paths)

    def answer(self, path: str) -> tuple[int, str, bytes] | None:
        """``(status, content type, body)`` for ``path``, or None if not answered."""
        if path == "/metrics" and self.registry is not None:
            return 200, CONTENT_TYPE, exposition(self.registry)
        if self.readiness is None:
            return None
        if path == "/healthz":
            return 200, _TEXT, b"ok\n"
        if path == "/readyz":
            problem = self.readiness.problem()
            if problem is None:
                return 200, _TEXT, b"ready\n"
            return 503, _TEXT, f"not ready: {problem}\n".encode()
        return None

    async def asgi(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer an HTTP request if its path is one of :attr:`paths`; True if it did."""
        found = self.answer(scope["path"]) if scope["method"] in ("GET", "HEAD") else None
        if found is None:
            return False
        status, content_type, body = found
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})
        return True

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The same answers as a WSGI app (404 for any other path)."""
        found = self.answer(environ.get("PATH_INFO", ""))
        status, content_type, body = found or (404, _TEXT, b"not found\n")
        reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
        start_response(
            f"{status} {reason}",
            [("Content-Type", content_type), ("Content-Length", str(len(body)))],
        )
        return [body]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not worth a log line each."""


@contextlib.asynccontextmanager
async def worker_endpoints(
    layer: BaseChannelLayer,
    metrics: Metrics,
    *,
    in_flight: Callable[[], int],
    running: Callable[[], bool],
    address: tuple[str, int],
) -> AsyncIterator[Readiness]:
    """Serve a worker process's ``/metrics``, ``/healthz`` and ``/readyz`` on
    ``address`` while the block runs, probing ``layer``; yields the readiness, whose
    ``stopping`` the caller sets when a graceful stop begins.

    Raises ConfigurationError if the address cannot be bound.
    """
    readiness = Readiness(metrics, running)
    endpoints = Endpoints.of(layer, readiness, in_flight, metrics=True, health=True)
    host, port = address
    try:
        stop_serving = serve_in_thread(endpoints, host, port)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None
    probe = LayerProbe(layer, metrics)
    probe.start()
    try:
        yield readiness
    finally:
        readiness.stopping = True
        await probe.stop()
        stop_serving()


def serve_in_thread(endpoints: Endpoints, host: str, port: int) -> Callable[[], None]:
    """Serve ``endpoints`` over HTTP on ``host:port`` from a daemon thread; returns
    the function that stops it. Raises OSError if the port cannot be bound."""
    server = make_server(
        host, port, endpoints.wsgi, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="chanlite-metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop
