"""``basic``'s routing table, for a ``chanlite serve`` or ``chanlite worker`` process
that traces: importing it sets up the OpenTelemetry SDK with an in-memory exporter
when ``CHANLITE_TEST_SPANS`` names a file, and the process writes the spans it
finished to that file, as JSON, when it exits."""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.apps.basic import routes as routes

#: The environment variable that names the file the spans go to.
SPANS_ENV = "CHANLITE_TEST_SPANS"

_exporter = InMemorySpanExporter()


def _write_spans(path: Path) -> None:
    spans = [
        {
            "name": span.name,
            "kind": span.kind.name,
            "trace_id": format(span.context.trace_id, "032x"),
            "span_id": format(span.context.span_id, "016x"),
            "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
            "attributes": dict(span.attributes or {}),
        }
        for span in _exporter.get_finished_spans()
        if span.context is not None
    ]
    path.write_text(json.dumps(spans))


if os.environ.get(SPANS_ENV):
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(_provider)
    atexit.register(_write_spans, Path(os.environ[SPANS_ENV]))
