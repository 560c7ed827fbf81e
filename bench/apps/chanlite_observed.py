"""The echo and rooms of :mod:`bench.apps.chanlite_echo` with observability switched
on or off, for ``ws-observability``: ``chanlite serve bench.apps.chanlite_observed:app``.

The variant comes from the environment variable ``CHANLITE_BENCH_OBSERVABILITY`` (read
at import, so each server process serves one):

* ``off`` (the default): no metrics, no health checks, no tracing: the baseline;
* ``metrics``: ``metrics=True`` and ``health=True`` (``/metrics``, ``/healthz``,
  ``/readyz``);
* ``tracing``: ``tracing=True``, with the OpenTelemetry SDK's default sampler,
  parent-based always-on (:mod:`bench.apps.otel_sdk`);
* ``tracing-sampled``: ``tracing=True``, parent-based with a root sampled at
  :data:`SAMPLED_RATIO`, as deployments that sample run.

The SDK is configured here, at import, as an app configures it before serving; for
the other variants this module does not import OpenTelemetry.
"""

from __future__ import annotations

import os

from chanlite import Chanlite

from .chanlite_echo import routes

#: The environment variable naming the variant.
VARIANT_ENV = "CHANLITE_BENCH_OBSERVABILITY"
OFF = "off"
METRICS = "metrics"
TRACING = "tracing"
TRACING_SAMPLED = "tracing-sampled"
VARIANTS = (OFF, METRICS, TRACING, TRACING_SAMPLED)
#: The share of root spans (sockets, HTTP requests) the ``tracing-sampled`` variant keeps.
SAMPLED_RATIO = 0.1
#: Not a secret: the benchmark's servers only need a stable key.
SECRET_KEY = "chanlite-bench-not-a-secret-0123456789"


def variant() -> str:
    """The variant named by :data:`VARIANT_ENV` (``off`` if unset)."""
    name = os.environ.get(VARIANT_ENV, OFF)
    if name not in VARIANTS:
        raise ValueError(f"{VARIANT_ENV}={name!r}: expected one of {', '.join(VARIANTS)}")
    return name


def configure_tracing(name: str) -> None:
    """Install the SDK with the variant's sampler (only tracing variants import it)."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

    from .otel_sdk import install

    root = ALWAYS_ON if name == TRACING else TraceIdRatioBased(SAMPLED_RATIO)
    install(ParentBased(root))


VARIANT = variant()
if VARIANT in (TRACING, TRACING_SAMPLED):
    configure_tracing(VARIANT)

app = Chanlite(
    routes,
    secret_key=SECRET_KEY,
    metrics=VARIANT == METRICS,
    health=VARIANT == METRICS,
    tracing=VARIANT in (TRACING, TRACING_SAMPLED),
)
