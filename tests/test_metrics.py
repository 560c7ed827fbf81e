"""What a process counts (chanlite.metrics) and the endpoints that serve it
(chanlite.health), in-process."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chanlite import Chanlite, Channel, Message, Routes, get_layer
from chanlite.health import Endpoints, LayerProbe, Readiness
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.metrics import Histogram, Metrics
from chanlite.testing import ChanliteTestClient

routes = Routes()


@routes.consumer("websocket.receive")
async def echo(message: Message) -> None:
    await message.reply_channel.asend({"text": message["text"]})  # type: ignore[union-attr]


@routes.consumer("http.request", path=r"^/direct/$")
async def sends_directly(message: Message) -> None:
    await Channel("elsewhere").asend({"n": 1}, immediately=True)
    await message.reply_channel.asend(  # type: ignore[union-attr]
        {"status": 200, "headers": [], "content": b"sent"}
    )


def samples_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_histogram_buckets_are_cumulative_and_a_bound_counts_in_its_own_bucket() -> None:
    histogram = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        histogram.observe(value)
    assert histogram.buckets() == [("0.1", 2.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert histogram.total == pytest.approx(2.65)


def test_channel_labels_are_bounded() -> None:
    metrics = Metrics(["chat.message"])
    assert metrics.label("chat.message") == "chat.message"
    assert metrics.label("websocket.receive") == "websocket.receive"  # a protocol channel
    assert metrics.label("interface.abc!def") == "reply"
    assert metrics.label("user-123") == "other"


def test_outages_and_returns_are_counted_once_each() -> None:
    metrics = Metrics()
    for up in (True, False, False, True, True, False):
        metrics.layer_answered(up)
    assert (metrics.layer_up, metrics.layer_outages, metrics.layer_reconnects) == (False, 2, 1)


def test_readiness_says_why_not() -> None:
    running = [True]
    readiness = Readiness(Metrics(), lambda: running[0])
    assert readiness.problem() is None
    running[0] = False
    assert readiness.problem() == "workers not running"
    readiness.metrics.layer_up = False
    assert readiness.problem() == "layer unavailable"
    readiness.stopping = True
    assert readiness.problem() == "shutting down"
    endpoints = Endpoints(readiness=readiness)
    assert endpoints.answer("/readyz") == (
        503,
        "text/plain; charset=utf-8",
        b"not ready: shutting down\n",
    )
    assert endpoints.answer("/healthz") == (200, "text/plain; charset=utf-8", b"ok\n")
    assert endpoints.answer("/metrics") is None  # not served without a registry
    assert endpoints.answer("/other") is None


@pytest.mark.anyio
async def test_probe_reports_a_closed_layer_and_times_an_answer() -> None:
    layer = get_layer("memory://")
    metrics = Metrics()
    probe = LayerProbe(layer, metrics)
    assert await probe.ask() is None
    assert sum(metrics.layer_calls["probe"].counts) == 1
    await layer.aclose()
    assert "closed" in (await probe.ask() or "")


def test_an_app_serves_its_metrics_and_health_only_when_asked() -> None:
    with ChanliteTestClient(Chanlite(routes)) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/readyz").status_code == 404
    with ChanliteTestClient(Chanlite(routes, metrics=True)) as client:
        assert client.get("/metrics").status_code == 200
        assert client.get("/readyz").status_code == 404
        assert client.head("/metrics").content == b""
    with ChanliteTestClient(Chanlite(routes, health=True)) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/readyz").text == "ready\n"


def test_two_apps_in_one_process_count_apart() -> None:
    first, second = Chanlite(routes, metrics=True), Chanlite(routes, metrics=True)
    with ChanliteTestClient(first) as one, ChanliteTestClient(second) as two:
        with one.websocket_connect("/") as ws:
            for number in range(3):
                ws.send_text(f"echo {number}")
                assert ws.receive_text() == f"echo {number}"
        first_samples = samples_of(one.get("/metrics").text)
        second_samples = samples_of(two.get("/metrics").text)
    key = ("chanlite_websocket_frames_received_total", ())
    assert (first_samples[key], second_samples[key]) == (3.0, 0.0)
    timed = ("chanlite_consumer_duration_seconds_count", (("consumer", "tests.test_metrics.echo"),))
    assert first_samples[timed] == 3.0


def test_a_send_made_at_once_counts_as_sent() -> None:
    app = Chanlite(routes, metrics=True)
    with ChanliteTestClient(app) as client:
        assert client.get("/direct/").text == "sent"
        samples = samples_of(client.get("/metrics").text)
    assert samples[("chanlite_messages_sent_total", (("channel", "other"),))] == 1.0
    assert samples[("chanlite_http_requests_total", ())] == 1.0
    assert samples[("chanlite_messages_received_total", (("channel", "http.request"),))] == 1.0


def test_metrics_off_counts_but_times_nothing() -> None:
    app = Chanlite(routes)
    with ChanliteTestClient(app) as client, client.websocket_connect("/") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
    assert app.metrics.frames_received == 1
    assert app.metrics.durations == {}


@pytest.mark.anyio
async def test_memory_layer_counts_the_messages_it_drops_expired() -> None:
    now = [0.0]
    layer = InMemoryChannelLayer(clock=lambda: now[0], expiry=10)
    await layer.send("expiring", {"n": 1})
    await layer.send("expiring", {"n": 2})
    now[0] = 11.0
    assert await layer.receive(["expiring"], timeout=0) == (None, None)
    assert layer.expired_messages == 2


@pytest.mark.anyio
async def test_sqlite_layer_counts_the_messages_it_drops_expired(tmp_path: Path) -> None:
    layer = get_layer(f"sqlite:///{tmp_path / 'layer.db'}", expiry=0.1)
    try:
        await layer.send("expiring", {"n": 1})
        await anyio.sleep(0.2)  # expiry is the behaviour under test: past it
        await layer.send("expiring", {"n": 2})  # a send sweeps what expired
        assert layer.expired_messages == 1
    finally:
        await layer.aclose()
