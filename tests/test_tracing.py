"""OpenTelemetry tracing, in-process: one trace from a request or handshake through
the consumer to the reply, and the trace key that neither user code nor a client sees.

Each test gives its app a ``TracerProvider`` of its own (``Chanlite(tracing=provider)``)
whose spans go to an ``InMemorySpanExporter``; nothing sets the global provider.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, StatusCode

from chanlite import Chanlite, Channel, ConsumeLater, Group, Message, Routes
from chanlite.exceptions import ConfigurationError
from chanlite.protocol import TRACE_KEY
from chanlite.testing import ChanliteTestClient
from tests.apps import basic

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
#: A context another process's consumer might have sent a reply with.
FOREIGN = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
#: How long a test waits for spans to end (they end on the app's thread).
SPAN_TIMEOUT = 5.0

routes = Routes()
#: The content each consumer of ``routes`` saw, by channel.
SEEN: dict[str, list[dict[str, Any]]] = {}


@routes.consumer("websocket.connect", path=r"^/keys/$")
@routes.consumer("websocket.receive", path=r"^/keys/$")
async def keys(message: Message) -> None:
    """Replies with the keys of the content it saw (accepting the socket)."""
    SEEN.setdefault(message.channel.name, []).append(dict(message.content))
    await message.reply_channel.asend({"text": " ".join(sorted(message.content))})  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=r"^/foreign/$")
async def foreign(message: Message) -> None:
    """Replies with a trace key of its own, as a traced worker elsewhere would."""
    reply = {"text": message["text"], TRACE_KEY: FOREIGN}
    await message.reply_channel.asend(reply)  # type: ignore[union-attr]


@routes.consumer("websocket.connect", path=r"^/crowd/$")
async def join(message: Message) -> None:
    await message.reply_channel.asend({"accept": True})  # type: ignore[union-attr]
    await Group("crowd").aadd(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer("websocket.receive", path=r"^/crowd/$")
async def shout(message: Message) -> None:
    """Sends to the group with a trace key of its own (as a traced worker would)."""
    await Group("crowd").asend({"text": message["text"], TRACE_KEY: FOREIGN})


@routes.consumer("websocket.receive", path=r"^/forward/$")
def forward(message: Message) -> None:
    """A ``def`` consumer that passes the frame on to a channel nobody consumes."""
    Channel("forwarded").send({"text": message["text"]})


@routes.consumer("websocket.receive", path=r"^/fail/$")
async def fail(message: Message) -> None:
    raise RuntimeError("consumer failed on purpose")


@routes.consumer("probe")
async def probe(message: Message) -> None:
    SEEN.setdefault("probe", []).append(dict(message.content))


@routes.consumer("later")
async def later(message: Message) -> None:
    """Asks to run again once, then replies on the channel its message names."""
    SEEN.setdefault("later", []).append(dict(message.content))
    if len(SEEN["later"]) == 1:
        raise ConsumeLater
    await Channel(message["answer"]).asend({"done": True})


@routes.consumer("relay")
async def relay(message: Message) -> None:
    """Replies on its reply channel, and sends on to the channel its message names."""
    await message.reply_channel.asend({"replied": True})  # type: ignore[union-attr]
    await Channel(message["onward"]).asend({"relayed": True})


@pytest.fixture(autouse=True)
def _forget_seen() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def traced_client(table: Routes, provider: TracerProvider | None) -> ChanliteTestClient:
    app = Chanlite(table, tracing=provider or False, websocket_connect_timeout=2)
    return ChanliteTestClient(app)


def wait_for_spans(exporter: InMemorySpanExporter, *names: str) -> dict[str, ReadableSpan]:
    """The finished spans by name, once one of each of ``names`` has ended (they end
    on the app's event loop, a moment after the client has what they wrote)."""
    deadline = time.monotonic() + SPAN_TIMEOUT
    while True:
        spans = {span.name: span for span in exporter.get_finished_spans()}
        if all(name in spans for name in names):
            return spans
        if time.monotonic() > deadline:
            raise AssertionError(f"spans {names} did not all end; ended: {sorted(spans)}")
        time.sleep(0.005)  # poll: the condition is checked again, up to the deadline


def assert_child(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.parent is not None, child.name
    assert child.parent.span_id == parent.context.span_id, (child.name, parent.name)
    assert child.context.trace_id == parent.context.trace_id, (child.name, parent.name)


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


# -- one trace ------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "consumer"), [("/echo/", "echo"), ("/sync-echo/", "sync_echo")])
def test_a_websocket_echo_is_one_trace(
    path: str, consumer: str, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with traced_client(basic.routes, provider) as client:
        with client.websocket_connect(path) as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "hello"
        spans = wait_for_spans(
            exporter,
            f"WebSocket {path}",
            "consume websocket.receive",
            "reply websocket.send",
            "consume websocket.disconnect",
        )
    server = spans[f"WebSocket {path}"]
    consume = spans["consume websocket.receive"]
    reply = spans["reply websocket.send"]
    assert server.parent is None
    assert [server.kind, consume.kind, reply.kind] == [
        SpanKind.SERVER,
        SpanKind.CONSUMER,
        SpanKind.INTERNAL,
    ]
    assert_child(consume, server)
    assert_child(reply, consume)
    assert_child(spans["consume websocket.disconnect"], server)
    assert server.attributes == {"url.path": path, "chanlite.websocket.accepted": True}
    assert consume.attributes == {
        "messaging.system": "chanlite",
        "messaging.destination.name": "websocket.receive",
        "chanlite.consumer": f"tests.apps.basic.{consumer}",
    }


def test_a_traceparent_on_the_handshake_is_the_parent(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with traced_client(basic.routes, provider) as client:
        with client.websocket_connect("/accept/", headers={"traceparent": TRACEPARENT}):
            pass
        spans = wait_for_spans(
            exporter, "WebSocket /accept/", "consume websocket.connect", "reply websocket.accept"
        )
    server = spans["WebSocket /accept/"]
    assert server.parent is not None and server.parent.is_remote
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert hex_ids(server)[0] == TRACE_ID
    assert_child(spans["consume websocket.connect"], server)
    assert_child(spans["reply websocket.accept"], spans["consume websocket.connect"])


def test_an_http_request_is_one_trace_with_its_status(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with traced_client(basic.routes, provider) as client:
        response = client.get("/hello/", headers={"traceparent": TRACEPARENT})
        assert response.status_code == 200
        spans = wait_for_spans(
            exporter, "HTTP GET /hello/", "consume http.request", "reply http.response"
        )
    server = spans["HTTP GET /hello/"]
    assert hex_ids(server)[0] == TRACE_ID
    assert server.attributes is not None
    assert server.attributes["http.request.method"] == "GET"
    assert server.attributes["http.response.status_code"] == 200
    assert_child(spans["consume http.request"], server)
    assert_child(spans["reply http.response"], spans["consume http.request"])


def test_a_request_without_a_reply_is_a_server_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    app = Chanlite(basic.routes, tracing=provider, http_timeout=0.2)
    with ChanliteTestClient(app) as client:
        assert client.get("/never/").status_code == 503
        spans = wait_for_spans(exporter, "HTTP GET /never/")
    assert spans["HTTP GET /never/"].status.status_code is StatusCode.ERROR


def test_sends_from_a_def_consumer_carry_its_context(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with traced_client(routes, provider) as client:
        with client.websocket_connect("/forward/") as ws:
            ws.send_text("on")
            forwarded = client.channel_receive("forwarded")
        spans = wait_for_spans(exporter, "consume websocket.receive")
    assert forwarded is not None
    _, trace_id, span_id, _ = forwarded[TRACE_KEY]["traceparent"].split("-")
    assert (trace_id, span_id) == hex_ids(spans["consume websocket.receive"])


def test_a_failing_consumer_span_is_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with traced_client(routes, provider) as client, client.websocket_connect("/fail/") as ws:
        ws.send_text("boom")
        spans = wait_for_spans(exporter, "consume websocket.receive")
    assert spans["consume websocket.receive"].status.status_code is StatusCode.ERROR


def test_a_message_run_again_later_stays_in_its_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with traced_client(routes, provider) as client:
        client.channel_send("later", {"answer": "answers"})
        assert client.channel_receive("answers") is not None
        client.run_until_idle()
    first, second = (span for span in exporter.get_finished_spans() if span.name == "consume later")
    assert_child(second, first)
    assert [sorted(content) for content in SEEN["later"]] == [["answer"], ["answer"]]


# -- the trace key --------------------------------------------------------------------


def test_the_trace_key_reaches_neither_the_consumer_nor_the_client(
    provider: TracerProvider,
) -> None:
    with traced_client(routes, provider) as client, client.websocket_connect("/keys/") as ws:
        connect_keys = ws.receive_text()
        ws.send_text("hi")
        frame_keys = ws.receive_text()
    assert TRACE_KEY not in connect_keys and "reply_channel" in connect_keys
    assert frame_keys == "order path reply_channel text"
    assert all(TRACE_KEY not in content for seen in SEEN.values() for content in seen)


@pytest.mark.parametrize("provider_or_none", ["traced", "untraced"])
def test_a_reply_with_the_key_reaches_the_client_without_it(
    provider_or_none: str, provider: TracerProvider
) -> None:
    """As when the worker traces and this interface does not (a socket refuses a
    reply with a key it does not know, so a reply with the key would be dropped)."""
    chosen = provider if provider_or_none == "traced" else None
    with traced_client(routes, chosen) as client, client.websocket_connect("/foreign/") as ws:
        ws.send_text("plain")
        assert ws.receive_text() == "plain"


def test_a_group_reply_with_the_key_reaches_every_member_without_it() -> None:
    """One decoded reply goes to every local member: each gets it without the key."""
    with (
        traced_client(routes, None) as client,
        client.websocket_connect("/crowd/") as first,
        client.websocket_connect("/crowd/") as second,
    ):
        first.send_text("all of you")
        assert first.receive_text() == "all of you"
        assert second.receive_text() == "all of you"


def test_a_worker_without_tracing_removes_the_key() -> None:
    with traced_client(routes, None) as client:
        client.channel_send("probe", {"text": "x", TRACE_KEY: FOREIGN})
        client.run_until_idle()
    assert SEEN["probe"] == [{"text": "x"}]


def test_a_malformed_carrier_starts_a_new_trace(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    with traced_client(routes, provider) as client:
        client.channel_send("probe", {"text": "x", TRACE_KEY: {"traceparent": 7}})
        client.run_until_idle()
        spans = wait_for_spans(exporter, "consume probe")
    assert spans["consume probe"].parent is None
    assert SEEN["probe"] == [{"text": "x"}]


# -- settings -------------------------------------------------------------------------


def test_without_an_sdk_the_request_context_passes_through() -> None:
    """``tracing=True`` with no SDK configured (the API's no-op tracer): no spans,
    but messages still carry the request's context on to other processes."""
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    app = Chanlite(routes, tracing=True)
    with (
        ChanliteTestClient(app) as client,
        client.websocket_connect("/forward/", headers={"traceparent": TRACEPARENT}) as ws,
    ):
        ws.send_text("on")
        forwarded = client.channel_receive("forwarded")
    assert forwarded is not None
    assert forwarded[TRACE_KEY]["traceparent"] == TRACEPARENT


def test_tracing_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "chanlite.tracing", raising=False)
    with pytest.raises(ConfigurationError, match=r"pip install 'chanlite\[otel\]'"):
        Chanlite(routes, tracing=True)
    with pytest.raises(ConfigurationError, match=r"pip install 'chanlite\[otel\]'"):
        Chanlite(routes).configure(tracing=True)
    assert Chanlite(routes).observability.tracing is None


def test_tracing_refuses_what_is_not_a_tracer_provider() -> None:
    with pytest.raises(ConfigurationError, match="TracerProvider"):
        Chanlite(routes, tracing="yes")  # type: ignore[arg-type]


def test_configure_keeps_the_apps_tracer_provider(provider: TracerProvider) -> None:
    app = Chanlite(routes, tracing=provider)
    tracing = app.observability.tracing
    app.configure(tracing=True)
    assert app.observability.tracing is tracing
    app.configure(tracing=False)
    assert app.observability.tracing is None


def test_a_message_whose_trace_was_not_sampled_makes_no_span(
    exporter: InMemorySpanExporter,
) -> None:
    """A message whose carried trace is not sampled (flags 00) runs without a span,
    even under a sampler that would record one, and its sends carry the trace on."""
    provider = TracerProvider(sampler=ALWAYS_ON)  # not parent-based
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    unsampled = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
    try:
        with traced_client(routes, provider) as client:
            client.channel_send("later", {"answer": "answers", TRACE_KEY: unsampled})
            answer = client.channel_receive("answers")
            client.channel_send("probe", {"text": "sampled"})
            wait_for_spans(exporter, "consume probe")
    finally:
        provider.shutdown()
    assert [span.name for span in exporter.get_finished_spans()] == ["consume probe"]
    assert SEEN["later"][1] == {"answer": "answers"}  # run again later, still no key
    assert answer == {"done": True, TRACE_KEY: unsampled}


def test_the_reply_of_a_trace_not_sampled_carries_no_context(provider: TracerProvider) -> None:
    """A reply goes nowhere further, and the interface makes no span for a trace that
    is not sampled: the reply is sent without the context (and the interface skips
    removing it). What goes to other channels carries it on."""
    unsampled = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}
    sampled = {"traceparent": TRACEPARENT}
    with traced_client(routes, provider) as client:
        for carrier in (unsampled, sampled):
            content = {"reply_channel": "replies!one", "onward": "onward", TRACE_KEY: carrier}
            client.channel_send("relay", content)
            reply = client.channel_receive("replies!")
            onward = client.channel_receive("onward")
            if carrier is unsampled:
                assert reply == {"replied": True}
                assert onward == {"relayed": True, TRACE_KEY: unsampled}
            else:
                assert reply[TRACE_KEY]["traceparent"].startswith(f"00-{TRACE_ID}-")
                assert onward[TRACE_KEY] == reply[TRACE_KEY]
