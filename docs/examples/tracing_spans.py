"""Tracing with OpenTelemetry, checked in a test: one trace from the WebSocket
handshake through the consumer to the reply.

Needs ``pip install "chanlite[otel,testing]" opentelemetry-sdk``. Run it with
``pytest docs/examples/tracing_spans.py``, or run this file.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chanlite import Chanlite, Message, Routes
from chanlite.testing import ChanliteTestClient

routes = Routes()


@routes.consumer("websocket.receive", path=r"^/echo/$")
async def echo(message: Message) -> None:
    assert message.reply_channel is not None
    await message.reply_channel.asend({"text": message["text"]})


def test_an_echo_is_one_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # the test's own: the global provider is left alone
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Chanlite(routes, layer="memory://", secret_key="a-test-key-for-docs", tracing=provider)
    with ChanliteTestClient(app) as client, client.websocket_connect("/echo/") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
    # The app has stopped: every span it started has ended.
    spans = {span.name: span for span in exporter.get_finished_spans()}
    handshake = spans["WebSocket /echo/"]  # SERVER, in the interface
    consume = spans["consume websocket.receive"]  # CONSUMER, in the worker
    reply = spans["reply websocket.send"]  # INTERNAL, in the interface
    assert consume.parent is not None and reply.parent is not None
    assert consume.parent.span_id == handshake.context.span_id
    assert reply.parent.span_id == consume.context.span_id
    assert len({handshake.context.trace_id, consume.context.trace_id, reply.context.trace_id}) == 1


if __name__ == "__main__":
    test_an_echo_is_one_trace()
    print("handshake -> consumer -> reply, one trace: ok")
