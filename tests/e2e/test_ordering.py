"""Ordering under stress: real servers, real WebSocket clients, threads and processes.

20 sockets each send 300 numbered frames as fast as they can to an
``@enforce_ordering`` ``def`` consumer that sleeps a random 0-20 ms. The consumer
echoes each number, and a message's replies are flushed before the next message of
its socket runs, so the echoes a client gets are the order in which its frames ran:
they must be exactly 1..300, none lost, none twice. The channels keep their default
capacity, so the interface's backpressure is exercised too; the interface lets a frame
wait for room up to 120 s rather than 5 (``patient_app``): a worker thread that runs
a chain of parked messages holds its thread for the whole chain, so under this load
all threads can be busy longer than 5 s, and the test is about order, not latency.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

from tests.conftest import private_redis_servers, require_redis

from .server import ROOT, serve

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

SOCKETS = 20
FRAMES = 300
TARGET = "tests.apps.accounts:patient_app"
SECRET = {"CHANLITE_SECRET_KEY": "ordering-test-secret-key-0123456789"}


async def _one_socket(url: str, pids: set[str]) -> list[int]:
    async with connect(f"{url}/ordered/", max_queue=None) as ws:

        async def send_all() -> None:
            for number in range(1, FRAMES + 1):
                await ws.send(str(number))

        sender = asyncio.ensure_future(send_all())
        echoes = []
        for _ in range(FRAMES):
            number, pid = str(await ws.recv()).split(":")
            echoes.append(int(number))
            pids.add(pid)
        await sender
        return echoes


async def _stress(url: str) -> set[str]:
    """Run the stress load; the worker process ids that ran the consumer."""
    pids: set[str] = set()
    async with asyncio.timeout(150):
        results = await asyncio.gather(*(_one_socket(url, pids) for _ in range(SOCKETS)))
    expected = list(range(1, FRAMES + 1))
    for echoes in results:
        assert echoes == expected
    return pids


@pytest.mark.slow
async def test_strict_order_with_four_threads() -> None:
    with serve(TARGET, "--threads", "4") as served:
        assert len(await _stress(served.ws)) == 1


@pytest.fixture
def private_redis() -> Iterator[str]:
    require_redis()
    with private_redis_servers() as [server]:
        yield server.url


def _start_worker(layer: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chanlite", "worker", TARGET, "--layer", layer, "--threads", "4"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **SECRET},
    )


def _wait_listening(worker: subprocess.Popen[str]) -> str:
    """Read ``worker``'s output until it says it listens (a worker that has not
    started yet would leave the load to the other, and frames waiting longer than
    the interface's ``receive_full_timeout`` close their sockets); what it read."""
    assert worker.stdout is not None
    lines = []
    while not lines or "worker listening" not in lines[-1]:
        line = worker.stdout.readline()
        if not line:
            pytest.fail(f"a worker exited before it listened:\n{''.join(lines)}")
        lines.append(line)
    return "".join(lines)


@pytest.mark.slow
async def test_strict_order_over_redis_with_two_worker_processes(private_redis: str) -> None:
    workers = [_start_worker(private_redis), _start_worker(private_redis)]
    started = []
    try:
        async with asyncio.timeout(60):
            started = [await asyncio.to_thread(_wait_listening, worker) for worker in workers]
        with serve(TARGET, "--no-worker", "--layer", private_redis, env=SECRET) as served:
            try:
                pids = await _stress(served.ws)
            except Exception:
                _, output = served.terminate()
                pytest.fail(f"the stress failed; the interface said:\n{output}")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        ends = [worker.communicate(timeout=30)[0] for worker in workers]
        outputs = [start + end for start, end in zip(started or ["", ""], ends, strict=True)]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    # Both processes took part, so ordering held across processes, not just threads.
    assert pids == {str(worker.pid) for worker in workers}
    assert all("ERROR" not in output for output in outputs), outputs
