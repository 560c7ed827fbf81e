"""Tracing across processes: ``chanlite serve --no-worker --tracing`` and
``chanlite worker --tracing`` over Redis give one trace, from a WebSocket handshake
through the worker's consumer to the interface's reply.

Each process sets up the SDK on importing ``tests.apps.traced`` and writes its spans
to a file at exit, which a graceful stop (SIGTERM) reaches.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect

from tests.apps.traced import SPANS_ENV
from tests.conftest import REDIS_HOST, REDIS_PORT, require_redis

from .server import ROOT, serve

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

SECRET = {"CHANLITE_SECRET_KEY": "tracing-test-secret-key-0123456789abcdef"}
TARGET = "tests.apps.traced:routes"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
#: Seconds a process may take to start, or to stop after SIGTERM.
PATIENCE = 20.0

Spans = dict[str, dict[str, Any]]


@pytest.fixture
def layer() -> Iterator[str]:
    """A Redis layer URL with a prefix of its own; its keys are deleted afterwards."""
    require_redis()
    prefix = f"tracing-test-{secrets.token_hex(4)}"
    yield f"redis://{REDIS_HOST}:{REDIS_PORT}/0?prefix={prefix}"
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def start_worker(layer: str, spans: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "chanlite", "worker", TARGET, "--layer", layer, "--tracing"],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SECRET, SPANS_ENV: str(spans)},
        )


def wait_for_line(process: subprocess.Popen[bytes], log: Path, fragment: str) -> None:
    """Poll ``log`` until a line holds ``fragment``; fail if the process ends first."""
    deadline = time.monotonic() + PATIENCE
    while fragment not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {fragment!r} from the worker:\n{log.read_text()}")
        time.sleep(0.02)  # poll the log again, up to the deadline


def read_spans(path: Path) -> Spans:
    """The spans a process wrote at exit, by name (each name is expected once)."""
    spans: list[dict[str, Any]] = json.loads(path.read_text())
    return {span["name"]: span for span in spans}


async def test_one_trace_from_the_handshake_through_a_worker_to_the_reply(
    layer: str, tmp_path: Path
) -> None:
    worker_spans, interface_spans = tmp_path / "worker.json", tmp_path / "interface.json"
    log = tmp_path / "worker.out"
    worker = start_worker(layer, worker_spans, log)
    try:
        wait_for_line(worker, log, "worker listening")
        env = {**SECRET, SPANS_ENV: str(interface_spans)}
        with serve(TARGET, "--no-worker", "--tracing", "--layer", layer, env=env) as served:
            headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
            async with connect(f"{served.ws}/echo/", additional_headers=headers) as ws:
                await ws.send("traced")
                assert await ws.recv() == "traced"
            code, output = served.terminate()
        assert code == 0, output
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        worker.wait(PATIENCE)
    assert worker.returncode == 0, log.read_text()

    interface, consumers = read_spans(interface_spans), read_spans(worker_spans)
    handshake = interface["WebSocket /echo/"]
    joined, receive = consumers["consume websocket.connect"], consumers["consume websocket.receive"]
    accept, echo = interface["reply websocket.accept"], interface["reply websocket.send"]
    assert handshake["parent_id"] == PARENT_ID
    assert (joined["parent_id"], receive["parent_id"]) == (handshake["span_id"],) * 2
    assert accept["parent_id"] == joined["span_id"]
    assert echo["parent_id"] == receive["span_id"]
    traced = [handshake, joined, receive, accept, echo]
    assert {span["trace_id"] for span in traced} == {TRACE_ID}
    assert [span["kind"] for span in traced] == [
        "SERVER",
        "CONSUMER",
        "CONSUMER",
        "INTERNAL",
        "INTERNAL",
    ]
    assert receive["attributes"]["chanlite.consumer"] == "tests.apps.basic.echo"
