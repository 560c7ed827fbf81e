"""One app's observability: what it counts, its health endpoints and its tracing.

A ``Chanlite`` app holds one :class:`Observability`. Its :class:`~chanlite.metrics.Metrics`
always counts; ``metrics=True`` serves the counts at ``/metrics`` (and times
consumers), ``health=True`` serves ``/healthz`` and ``/readyz``, and either one
starts the layer probe that readiness and ``chanlite_layer_up`` read.
``tracing`` is ``None`` or the app's :class:`~chanlite.tracing.Tracing`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from .health import Endpoints, LayerProbe, Readiness
from .layers.base import BaseChannelLayer
from .metrics import Metrics

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from .tracing import Tracing


class Observability:
    """The metrics, health and tracing settings of one app, and what serves them.

    ``workers_running`` tells readiness whether the app's workers run (True for an
    app that runs none); ``in_flight`` counts their messages.
    """

    def __init__(
        self,
        routed: set[str],
        *,
        metrics: bool,
        health: bool,
        tracing: bool | TracerProvider,
        workers_running: Callable[[], bool],
        in_flight: Callable[[], int],
    ) -> None:
        #: What the app counts.
        self.metrics = Metrics(routed, timed=metrics)
        self.health = health
        self.tracing = tracing_for(tracing)
        self.readiness = Readiness(self.metrics, workers_running)
        self._in_flight = in_flight
        self._probe: LayerProbe | None = None
        self._endpoints: Endpoints | None = None

    def configure(self, *, metrics: bool | None, health: bool | None, tracing: bool | None) -> None:
        """Change settings before start; None keeps one, and ``tracing=True`` keeps a
        tracer provider the app was given."""
        if metrics is not None:
            self.metrics.timed = metrics
        if health is not None:
            self.health = health
        if tracing is not None and tracing != (self.tracing is not None):
            self.tracing = tracing_for(tracing)

    def start(self, layer: BaseChannelLayer) -> None:
        """Start answering the endpoints asked for, and probing ``layer`` for them."""
        self.readiness.stopping = False
        if not (self.metrics.timed or self.health):
            return
        self._probe = LayerProbe(layer, self.metrics)
        self._probe.start()
        self._endpoints = Endpoints.of(
            layer, self.readiness, self._in_flight, metrics=self.metrics.timed, health=self.health
        )

    async def stop(self) -> None:
        """Stop probing; the endpoints answer nothing until the next :meth:`start`."""
        self._endpoints = None
        if self._probe is not None:
            await self._probe.stop()
            self._probe = None

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer an HTTP request for one of the endpoints; True if it did."""
        return self._endpoints is not None and await self._endpoints.asgi(scope, receive, send)


def tracing_for(setting: bool | TracerProvider | None) -> Tracing | None:
    """The tracing an app's ``tracing`` setting asks for; ConfigurationError without
    opentelemetry-api."""
    if setting is None or setting is False:
        return None
    from .tracing import Tracing  # only here: the otel extra is optional

    return Tracing(None if setting is True else setting)
