"""OpenTelemetry tracing (the ``chanlite[otel]`` extra): chanlite's spans, and the
trace context that messages carry from process to process.

Everything that touches OpenTelemetry is here, and this module is imported only by an
app built with tracing on (``Chanlite(tracing=...)``, ``--tracing``). The interface,
the worker and ``Channel``/``Group`` call it through a few hooks; with tracing off
they pay at most a dict lookup per message.

* Only ``opentelemetry-api`` is used: the application configures the SDK (a tracer
  provider and its exporters). The tracer is named ``chanlite``. The trace context of
  a request or handshake is read from its headers with the global propagator (W3C
  trace context by default).
* A message carries its sender's trace context under the reserved content key
  :data:`~chanlite.protocol.TRACE_KEY`, as a W3C carrier dict
  (``{"traceparent": ..., "tracestate": ...}``), written and read with OpenTelemetry's
  W3C propagator whatever the global one is: only chanlite reads it, and baggage does
  not travel in messages. Neither user code nor a client ever sees it: the worker
  removes it before building the ``Message``, the interface before writing a reply,
  whether or not tracing is on in their process.
* A message whose trace is not sampled makes no span: its context travels on as it
  came, except on the consumer's replies to its own reply channel (they go nowhere
  further, and would make no reply span), which carry none. (OpenTelemetry's default
  sampler, ``ParentBased``, would record no span for it anyway; skipping the span
  makes the unsampled share of a deployment cost a cached lookup, measured in
  ``docs/benchmarks.md``.) A trace is sampled or not where it starts: at the request
  or handshake.
* Interface: a SERVER span per HTTP request (``HTTP <METHOD> <path>``) or WebSocket
  handshake (``WebSocket <path>``), child of the context in the request's headers.
  Every message the interface sends for that request or socket carries that span's
  context, computed once (no span per frame).
* Worker: a CONSUMER span ``consume <channel>`` per message, child of the context it
  carries (a new trace when it carries none), current while the consumer runs (spans
  the consumer makes are its children). Its ``Channel`` and ``Group`` sends carry it.
* Interface again: a reply that carries a context is handed to its connections
  inside an INTERNAL span ``reply <kind>`` (``websocket.accept``,
  ``websocket.send``, ``http.response``), child of that context.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, cast

from starlette.types import Message as ASGIMessage
from starlette.types import Scope, Send

from .exceptions import ConfigurationError

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:
    raise ConfigurationError(
        f"tracing needs opentelemetry-api, which cannot be imported ({exc}): "
        "pip install 'chanlite[otel]'"
    ) from exc

if TYPE_CHECKING:
    from .runtime import ConsumerScope

#: The tracer's name (its instrumentation scope).
TRACER_NAME = "chanlite"

#: A W3C trace-context carrier: header names to values.
Carrier = dict[str, str]
# The propagator of the context that messages carry.
_W3C = TraceContextTextMapPropagator()
# How many carriers' contexts are kept: the sockets sending at once, with room.
_CARRIED_CACHE = 4096


class Tracing:
    """Makes chanlite's spans with the ``chanlite`` tracer of ``provider``, by
    default of the global tracer provider (whichever is set, even later)."""

    __slots__ = ("_tracer",)

    def __init__(self, provider: trace.TracerProvider | None = None) -> None:
        from . import __version__

        if provider is None:
            self._tracer = trace.get_tracer(TRACER_NAME, __version__)
        elif isinstance(provider, trace.TracerProvider):
            self._tracer = provider.get_tracer(TRACER_NAME, __version__)
        else:
            raise ConfigurationError(
                f"tracing must be True, False or an OpenTelemetry TracerProvider, got {provider!r}"
            )

    def server_span(self, scope: Scope, path: str) -> ServerSpan:
        """A started SERVER span for the request or handshake of ``scope`` (routed
        as ``path``), child of the context its headers carry; use it as a context
        manager."""
        parent = propagate.extract(_headers(scope))
        attributes = {"url.path": path}
        if scope["type"] == "http":
            attributes["http.request.method"] = method = scope["method"]
            name = f"HTTP {method} {path}"
        else:
            name = f"WebSocket {path}"
        span = self._tracer.start_span(name, parent, SpanKind.SERVER, attributes)
        return ServerSpan(span, _inject(_within(span, parent)))

    def consumer_span(
        self, channel: str, consumer: str, carrier: object, scope: ConsumerScope
    ) -> ConsumerSpan | None:
        """Start the CONSUMER span of one message on ``channel``, child of the
        context in ``carrier`` (the value its content had under the trace key, if
        any), and make it current; the sends of ``scope`` carry its context from now
        on. End it with :meth:`ConsumerSpan.end`, in the same task. None (and the
        sends carry ``carrier`` on) when the trace is not sampled."""
        parent, sampled = _extract(carrier)
        if sampled is False:
            scope.trace = cast(Carrier, carrier)  # a valid carrier, as _extract found
            scope.reply_trace = None  # the reply's span would not be made either
            return None
        attributes = {
            "messaging.system": TRACER_NAME,
            "messaging.destination.name": channel,
            "chanlite.consumer": consumer,
        }
        span = self._tracer.start_span(f"consume {channel}", parent, SpanKind.CONSUMER, attributes)
        context = _within(span, parent)
        scope.trace = scope.reply_trace = _inject(context)
        return ConsumerSpan(span, otel_context.attach(context))

    def reply(self, carrier: object, reply: dict[str, Any], hand: Callable[[], None]) -> None:
        """Call ``hand``, which hands ``reply`` to its connections, inside one
        INTERNAL ``reply <kind>`` span, child of the context in ``carrier``; without
        a valid context, no span."""
        parent, sampled = _extract(carrier)
        if not sampled:
            hand()
            return
        span = self._tracer.start_span(f"reply {_reply_kind(reply)}", parent, SpanKind.INTERNAL)
        try:
            hand()
        finally:
            span.end()


class ServerSpan:
    """The SERVER span of one HTTP request or WebSocket handshake, ended when the
    ``with`` block that holds it exits (an exception marks it as an error)."""

    __slots__ = ("_span", "carrier")

    def __init__(self, span: Span, carrier: Carrier | None) -> None:
        self._span = span
        #: What every message sent for this request or socket carries (None when
        #: the span has no valid context: an API without an SDK, and no parent).
        self.carrier = carrier

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, Exception):
            self._span.record_exception(error)
            self._span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self._span.end()

    def opened(self, accepted: bool) -> None:
        """Record the handshake's verdict."""
        self._span.set_attribute("chanlite.websocket.accepted", accepted)

    def watch(self, send: Send) -> Send:
        """``send``, recording the response status it starts (5xx is an error)."""

        async def watched(message: ASGIMessage) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                self._span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    self._span.set_status(Status(StatusCode.ERROR))
            await send(message)

        return watched


class ConsumerSpan:
    """The CONSUMER span of one message, current until :meth:`end`."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span, token: Token[Context]) -> None:
        self._span = span
        self._token = token

    def end(self, failed: bool) -> None:
        """Stop it being current and end it; ``failed``: the consumer raised (or
        denied the connection) or ran past ``consumer_timeout``."""
        otel_context.detach(self._token)
        if failed:
            self._span.set_status(Status(StatusCode.ERROR, "the consumer failed"))
        self._span.end()


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers for the propagator (of repeated ones, the last)."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }


#: A carried context, and whether it continues a sampled trace (None: it continues
#: no trace, so a span made in it starts one).
Carried = tuple[Context, bool | None]
_NO_TRACE: Carried = (Context(), None)


def _extract(carrier: object) -> Carried:
    """The context in a message's carrier; an empty one (so a new trace) if it
    carries none or something that is not a carrier."""
    if not isinstance(carrier, dict):  # not Mapping: an ABC check costs ten times as much
        return _NO_TRACE
    traceparent, tracestate = carrier.get("traceparent"), carrier.get("tracestate")
    if type(traceparent) is not str or type(tracestate) not in (str, type(None)):
        return _NO_TRACE
    return _carried(traceparent, tracestate)


@functools.lru_cache(maxsize=_CARRIED_CACHE)
def _carried(traceparent: str, tracestate: str | None) -> Carried:
    """The context of a W3C carrier, and whether its trace is sampled. Cached: every
    frame of a socket carries the same one, and a context is immutable."""
    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    context = _W3C.extract(carrier, Context())
    parent = trace.get_current_span(context).get_span_context()
    return context, parent.trace_flags.sampled if parent.is_valid else None


def _within(span: Span, parent: Context) -> Context:
    """``parent`` with ``span`` current, or ``parent`` as it is when ``span`` has no
    valid context (some API versions' no-op tracer, when no SDK is configured), so
    that the parent's context still travels on."""
    if span.get_span_context().is_valid:
        return trace.set_span_in_context(span, parent)
    return parent


def _inject(context: Context) -> Carrier | None:
    """A carrier for ``context``; None if it has no valid span context."""
    carrier: Carrier = {}
    _W3C.inject(carrier, context)
    return carrier or None


def _reply_kind(reply: dict[str, Any]) -> str:
    """What a reply does, for its span's name."""
    if "status" in reply or "content" in reply or "more_content" in reply:
        return "http.response"
    if "accept" in reply:
        return "websocket.accept"
    return "websocket.send"
