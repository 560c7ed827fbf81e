"""The OpenTelemetry SDK as the tracing variants of :mod:`bench.apps.chanlite_observed`
configure it: what an app with ``tracing=True`` sets up itself (chanlite depends only
on opentelemetry-api).

:func:`install` sets a global ``TracerProvider`` with the given sampler and a
``BatchSpanProcessor`` at the SDK's defaults (a queue of 2,048 spans, exported in
batches of 512 by a background thread) feeding :class:`DroppingExporter`. Spans are
created, recorded, ended and batched as in a deployment; only the export, which
depends on the collector and the network, is left out.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Sampler

#: What the exporter prints to stderr (the server's log) at shutdown, before the count.
SPANS_LINE = "bench.apps.otel_sdk: spans exported:"


class DroppingExporter(SpanExporter):
    """Takes every batch and keeps nothing but a count of its spans, which it prints at
    shutdown (the provider shuts down at exit) so the benchmark can check that spans
    were made at all."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Count the batch and drop it."""
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Print how many spans were exported."""
        print(f"{SPANS_LINE} {self.spans}", file=sys.stderr, flush=True)


def install(sampler: Sampler) -> None:
    """Make a provider with ``sampler`` and a batching, dropping pipeline the global one."""
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    trace.set_tracer_provider(provider)


def exported_spans(log: str) -> int | None:
    """The count :class:`DroppingExporter` printed into a server's ``log``, if any."""
    for line in reversed(log.splitlines()):
        if line.startswith(SPANS_LINE):
            return int(line.removeprefix(SPANS_LINE))
    return None
