"""Metrics and health of real ``chanlite serve`` and ``chanlite worker`` processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.apps.observed import ORIGIN
from tests.conftest import private_redis_servers, require_redis
from tests.e2e.server import ROOT, Served, free_port, serve

pytestmark = pytest.mark.anyio

SECRET = {"CHANLITE_SECRET_KEY": "observability-tests-secret-key"}
APP = "tests.apps.observed:app"
#: How long a test waits for a count or a state it expects.
PATIENCE = 15.0

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text scrape, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (nothing counted yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def scrape_until(url: str, done: Callable[[Samples], bool]) -> Samples:
    """Scrape ``url`` until ``done`` holds for what it shows (or fail after PATIENCE)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        samples = await scrape(url)
        if done(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def exchange(base: str, path: str, frames: int, replies: int) -> None:
    """Open a socket on ``path``, send ``frames`` frames, read ``replies`` replies."""
    async with connect(f"{base}{path}", origin=ORIGIN) as ws:  # type: ignore[arg-type]
        for number in range(frames):
            await ws.send(f"frame {number}")
        for _ in range(replies):
            await asyncio.wait_for(ws.recv(), timeout=PATIENCE)


async def known_traffic(base: str, metrics_url: str) -> None:
    """Echo 5 frames, make one consumer raise, one time out and one fill a channel,
    and try one socket from a refused origin; wait until the consumers have run."""
    await exchange(base, "/echo/", frames=5, replies=5)
    await exchange(base, "/boom/", frames=1, replies=0)
    await exchange(base, "/slow/", frames=1, replies=0)
    await exchange(base, "/fill/", frames=1, replies=0)
    with pytest.raises(InvalidStatus):
        async with connect(f"{base}/echo/", origin="http://evil.example"):  # type: ignore[arg-type]
            pass

    def consumers_done(samples: Samples) -> bool:
        return (
            value(samples, "chanlite_consumer_timeouts_total", consumer="tests.apps.observed.slow")
            == 1
            and value(samples, "chanlite_channel_full_total", channel="other") == 1
        )

    await scrape_until(metrics_url, consumers_done)


def assert_worker_counts(samples: Samples, accepts: int) -> None:
    """What the workers that ran :func:`known_traffic`'s messages counted; ``accepts``:
    how many connects a consumer accepted (the interface answers them itself when
    only the default consumer would, with workers in its process)."""
    consumer = "tests.apps.observed.{}".format
    assert value(samples, "chanlite_messages_received_total", channel="websocket.receive") == 8
    assert (
        value(samples, "chanlite_consumer_duration_seconds_count", consumer=consumer("echo")) == 5
    )
    assert value(samples, "chanlite_consumer_failures_total", consumer=consumer("boom")) == 1
    assert value(samples, "chanlite_consumer_failures_total", consumer=consumer("echo")) == 0
    assert value(samples, "chanlite_consumer_timeouts_total", consumer=consumer("slow")) == 1
    assert value(samples, "chanlite_channel_full_total", channel="other") == 1
    assert value(samples, "chanlite_messages_sent_total", channel="other") == 100
    assert value(samples, "chanlite_messages_sent_total", channel="reply") == 5 + accepts


def assert_interface_counts(samples: Samples) -> None:
    """What the interface that served :func:`known_traffic`'s sockets counted."""
    assert value(samples, "chanlite_websocket_connections_total", outcome="accepted") == 4
    assert value(samples, "chanlite_websocket_connections_total", outcome="origin") == 1
    assert value(samples, "chanlite_websocket_connections_total", outcome="rejected") == 0
    assert value(samples, "chanlite_websocket_frames_received_total") == 8
    assert value(samples, "chanlite_websocket_frames_sent_total") == 5
    assert value(samples, "chanlite_messages_sent_total", channel="websocket.receive") == 8
    assert value(samples, "chanlite_websocket_closes_total", code="1000") == 4
    assert value(samples, "chanlite_websocket_connections_open") == 0


def all_closed(samples: Samples) -> bool:
    return value(samples, "chanlite_websocket_closes_total", code="1000") == 4


async def test_serve_metrics_count_known_traffic_exactly() -> None:
    with serve(APP, "--metrics", "--health") as server:
        metrics_url = f"{server.http}/metrics"
        await known_traffic(server.ws, metrics_url)
        samples = await scrape_until(
            metrics_url,
            lambda s: (
                all_closed(s)
                and value(s, "chanlite_messages_received_total", channel="websocket.disconnect")
                == 4
            ),
        )
        assert_interface_counts(samples)
        assert_worker_counts(samples, accepts=0)
        assert value(samples, "chanlite_layer_up") == 1
        assert value(samples, "chanlite_layer_outages_total") == 0
        assert value(samples, "chanlite_worker_messages_in_flight") == 0
        assert value(samples, "chanlite_layer_operation_seconds_count", operation="probe") >= 1
        assert value(samples, "process_cpu_seconds_total") > 0
        async with httpx.AsyncClient(base_url=server.http) as client:
            assert (await client.get("/healthz")).text == "ok\n"
            assert (await client.get("/readyz")).text == "ready\n"


async def test_without_the_switches_the_paths_belong_to_the_app() -> None:
    with serve(APP) as server:
        async with httpx.AsyncClient(base_url=server.http) as client:
            for path in ("/metrics", "/healthz", "/readyz"):
                assert (await client.get(path)).status_code == 404


@contextmanager
def worker_process(
    target: str, layer: str, port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """A ``chanlite worker --metrics-port`` process, SIGTERMed afterwards."""
    command = [sys.executable, "-m", "chanlite", "worker", target, "--layer", layer]
    process = subprocess.Popen(
        [*command, "--metrics-port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **SECRET, **(env or {})},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)


async def until_answers(url: str, expected: int, process: subprocess.Popen[str]) -> str:
    """GET ``url`` until it answers ``expected``; its body."""
    deadline = time.monotonic() + PATIENCE
    async with httpx.AsyncClient() as client:
        while True:
            assert process.poll() is None, "the process ended"
            try:
                response = await client.get(url)
                if response.status_code == expected:
                    return response.text
            except httpx.TransportError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"{url} never answered {expected}"
            await asyncio.sleep(0.05)


async def test_worker_serves_the_metrics_of_the_messages_it_ran() -> None:
    require_redis()
    layer = f"redis://127.0.0.1:6379/0?prefix=obs{uuid.uuid4().hex[:8]}"
    port = free_port()
    with (
        worker_process(APP, layer, port) as worker,
        serve(APP, "--no-worker", "--layer", layer, "--metrics", env=SECRET) as server,
    ):
        worker_metrics = f"http://127.0.0.1:{port}/metrics"
        assert await until_answers(f"http://127.0.0.1:{port}/readyz", 200, worker) == "ready\n"
        await known_traffic(server.ws, worker_metrics)
        samples = await scrape_until(
            worker_metrics,
            lambda s: (
                value(s, "chanlite_messages_received_total", channel="websocket.disconnect") == 4
            ),
        )
        assert_worker_counts(samples, accepts=4)
        assert value(samples, "chanlite_messages_received_total", channel="websocket.connect") == 4
        assert value(samples, "chanlite_websocket_frames_received_total") == 0
        interface = await scrape_until(f"{server.http}/metrics", all_closed)
        assert_interface_counts(interface)
        assert (
            value(interface, "chanlite_messages_received_total", channel="websocket.receive") == 0
        )
        assert value(interface, "chanlite_messages_sent_total", channel="websocket.connect") == 4
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=20)
    assert worker.returncode == 0, output


def test_worker_metrics_port_in_use_is_one_line_and_exit_2() -> None:
    require_redis()
    with serve(APP) as busy:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "chanlite", "worker", APP),
                *("--layer", "redis://127.0.0.1:6379/0", "--metrics-port", str(busy.port)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **SECRET},
        )
    assert result.returncode == 2
    assert f"cannot serve metrics on 127.0.0.1:{busy.port}" in result.stderr
    assert "Traceback" not in result.stderr


def series(samples: Samples) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The chanlite series of a scrape (process and GC series vary by themselves)."""
    return {key for key in samples if key[0].startswith("chanlite_")}


async def churn(base: str, sockets: int, at_once: int = 50) -> None:
    """Open ``sockets`` sockets, ``at_once`` at a time, each echoing one frame."""
    for start in range(0, sockets, at_once):
        count = min(at_once, sockets - start)
        await asyncio.gather(*(exchange(base, "/echo/", 1, 1) for _ in range(count)))


@pytest.mark.slow
async def test_series_do_not_grow_with_the_sockets() -> None:
    with serve(APP, "--metrics", log_level="warning") as server:
        metrics_url = f"{server.http}/metrics"
        await churn(server.ws, 50)
        before = series(await scrape_until(metrics_url, lambda s: closed_count(s) == 50))
        await churn(server.ws, 2_000)
        after = await scrape_until(metrics_url, lambda s: closed_count(s) == 2_050)
    assert value(after, "chanlite_websocket_frames_sent_total") == 2_050
    assert series(after) == before


def closed_count(samples: Samples) -> float:
    return value(samples, "chanlite_websocket_closes_total", code="1000")


async def poll_ready(server: Served, expected: int) -> str:
    return await until_answers(f"{server.http}/readyz", expected, server.process)


async def test_readiness_follows_a_redis_outage_and_its_return() -> None:
    with private_redis_servers() as (redis,):
        layer = f"{redis.url}?prefix=ready"
        with serve(APP, "--health", "--metrics", "--layer", layer, env=SECRET) as server:
            assert await poll_ready(server, 200) == "ready\n"
            redis.kill()
            assert await poll_ready(server, 503) == "not ready: layer unavailable\n"
            redis.start()
            assert await poll_ready(server, 200) == "ready\n"
            samples = await scrape(f"{server.http}/metrics")
    assert value(samples, "chanlite_layer_outages_total") == 1
    assert value(samples, "chanlite_layer_reconnects_total") == 1
    assert value(samples, "chanlite_layer_up") == 1


async def test_readiness_is_503_once_a_graceful_stop_begins(tmp_path: Path) -> None:
    release = tmp_path / "release"
    env = {"LINGER_RELEASE": str(release)}
    with serve("tests.apps.observed:lingering", "--health", "--metrics", env=env) as server:
        metrics_url = f"{server.http}/metrics"
        async with (
            httpx.AsyncClient(base_url=server.http) as client,
            connect(f"{server.ws}/linger/", origin=ORIGIN) as ws,  # type: ignore[arg-type]
        ):
            assert (await client.get("/readyz")).status_code == 200  # the connection stays open
            await ws.send("hold the worker")
            await scrape_until(
                metrics_url, lambda s: value(s, "chanlite_worker_messages_in_flight") == 1
            )
            server.process.send_signal(signal.SIGTERM)
            answer = await until_ok(lambda: client.get("/readyz"), 503)
            assert answer == "not ready: shutting down\n"
            release.touch()
            assert await asyncio.wait_for(ws.recv(), timeout=PATIENCE) == "released"
            # The server closes the socket (1001) before the client does: a client's
            # close racing uvicorn's own shutdown makes uvicorn raise InvalidState.
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=PATIENCE)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        code, output = server.terminate()
    assert code == 0, output


async def until_ok(get: Callable[[], Awaitable[httpx.Response]], expected: int) -> str:
    deadline = time.monotonic() + PATIENCE
    while True:
        response = await get()
        if response.status_code == expected:
            return response.text
        assert time.monotonic() < deadline, f"never answered {expected}"
        await asyncio.sleep(0.05)
