"""Faults against real processes: a worker SIGKILLed in the middle of traffic.

Two ``chanlite worker`` processes share a private Redis; this test process is the
sender. Every job the workers run leaves its id in a per-process log
(``tests/apps/faults.py``), so the test can tell who ran what, and how often. Redis
failures (a server killed and restarted mid-traffic) are covered by
``tests/layers/test_redis.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from chanlite import get_layer
from chanlite.layers.base import BaseChannelLayer
from chanlite.worker import ASYNC_CONCURRENCY
from tests.apps.faults import DIR_ENV, JOBS, log_path
from tests.conftest import require_redis
from tests.layers.redis_helpers import RedisServer

from .server import ROOT

pytestmark = pytest.mark.anyio

SECRET = {"CHANLITE_SECRET_KEY": "faults-test-secret-key-0123456789abcdef"}
#: How long any one condition may take to come true.
PATIENCE = 15.0
#: Jobs each worker must have run before one is killed: traffic is flowing to both.
BEFORE_KILL = 50
#: Jobs sent after the kill (all of which the surviving worker must run).
AFTER_KILL = 500
#: The sender sends BATCH jobs, then yields for PACE seconds: about 2,000 jobs/s.
BATCH, PACE = 10, 0.005
#: Capacity of the sender's layer: the backlog may grow while a worker is down.
SENDER_CAPACITY = 100_000
#: The most jobs a killed worker can have taken but not run: one per in-flight slot
#: (``chanlite worker`` runs 4 threads; its default routes are async, which adds
#: ASYNC_CONCURRENCY slots) plus one its reader may hold for the next receive.
MAX_LOST = 4 + ASYNC_CONCURRENCY + 1


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A redis-server of our own, killed afterwards."""
    require_redis()
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.kill()


def start_worker(layer: str, log_dir: Path) -> subprocess.Popen[bytes]:
    """``chanlite worker tests.apps.faults:routes``, its output in ``log_dir``."""
    command = [sys.executable, "-m", "chanlite", "worker", "tests.apps.faults:routes"]
    with (log_dir / f"worker-{time.monotonic_ns()}.out").open("wb") as output:
        return subprocess.Popen(
            [*command, "--layer", layer],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SECRET, DIR_ENV: str(log_dir)},
        )


class Sender:
    """Sends numbered jobs (``{"id": n}``, n = 0, 1, ...) at a steady pace until stopped."""

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        #: Sends begun: job ids below this have been (or are being) sent.
        self.started = 0
        #: Sends done: job ids below this are stored in Redis.
        self.sent = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sending; raises whatever made the sender fail."""
        self._stopping = True
        if self._task is not None:
            await self._task

    def sent_at_least(self, count: int) -> bool:
        """True once ``count`` jobs are sent; raises if the sender failed."""
        if self._task is not None and self._task.done():
            self._task.result()
        return self.sent >= count

    async def cancel(self) -> None:
        """Stop at once, whatever state the sender is in (cleanup)."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._stopping:
            for _ in range(BATCH):
                job, self.started = self.started, self.started + 1
                await self.layer.send(JOBS, {"id": job})
                self.sent = job + 1
            await asyncio.sleep(PACE)  # pacing the stream, not waiting for anything


def runs_by_worker(log_dir: Path, workers: list[subprocess.Popen[bytes]]) -> list[list[int]]:
    """The job ids each worker has run so far, in the order it logged them."""
    runs = []
    for worker in workers:
        path = log_path(log_dir, worker.pid)
        text = path.read_text() if path.exists() else ""
        complete = text[: text.rfind("\n") + 1]  # a line being written is not done
        runs.append([int(line) for line in complete.splitlines()])
    return runs


async def wait_until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it is true; fail saying ``what`` after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {PATIENCE:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


def tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process ``pid`` holds (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def redis_client_ports(url: str) -> set[int]:
    """The client ports of every connection the Redis server at ``url`` has open."""
    client = redis.Redis.from_url(url)
    try:
        return {int(entry["addr"].rsplit(":", 1)[1]) for entry in await client.client_list()}
    finally:
        await client.aclose()


async def kill_and_fence(worker: subprocess.Popen[bytes], url: str, sender: Sender) -> int:
    """SIGKILL ``worker`` and wait until Redis has dropped its connections; return the
    first job id sent after that (the sender keeps going throughout).

    The worker is stopped first, so the connections read from /proc are all it has.
    """
    os.kill(worker.pid, signal.SIGSTOP)
    ports = tcp_ports(worker.pid)
    os.kill(worker.pid, signal.SIGKILL)
    await asyncio.to_thread(worker.wait, PATIENCE)

    async def connections_gone() -> bool:
        return not ports & await redis_client_ports(url)

    await wait_until(connections_gone, "Redis to drop the killed worker's connections")
    return sender.started


async def stop_gracefully(worker: subprocess.Popen[bytes]) -> int:
    """SIGTERM ``worker`` and return its exit code."""
    worker.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(worker.wait, PATIENCE)


def stop_all(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


async def test_worker_killed_mid_traffic(
    redis_url: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The survivor runs every job sent after the kill; no job runs twice; only jobs
    the killed worker had in flight may be lost."""
    workers = [start_worker(redis_url, tmp_path), start_worker(redis_url, tmp_path)]
    victim, survivor = workers
    layer = get_layer(redis_url, capacity=SENDER_CAPACITY)
    sender = Sender(layer)
    try:
        sender.start()
        await wait_until(
            lambda: all(len(runs) >= BEFORE_KILL for runs in runs_by_worker(tmp_path, workers)),
            f"both workers to run {BEFORE_KILL} jobs",
        )
        fence = await kill_and_fence(victim, redis_url, sender)
        await wait_until(lambda: sender.sent_at_least(fence + AFTER_KILL), "jobs after the kill")
        await sender.stop()
        after_kill = set(range(fence, sender.sent))

        async def all_run() -> bool:
            run = set(runs_by_worker(tmp_path, [survivor])[0])
            depths = (await layer.stats() or {}).get("channels", {})
            return after_kill <= run and not depths.get(JOBS)

        await wait_until(all_run, "the survivor to run every job sent after the kill")
        assert await stop_gracefully(survivor) == 0
    finally:
        await sender.cancel()
        stop_all(workers)
        await layer.aclose()

    victim_runs, survivor_runs = runs_by_worker(tmp_path, workers)
    counts = Counter(victim_runs + survivor_runs)
    twice = sorted(job for job, count in counts.items() if count > 1)
    lost = sorted(set(range(sender.sent)) - counts.keys())
    record_property("jobs_sent", sender.sent)
    record_property("lost_in_flight", len(lost))
    print(
        f"\nsent {sender.sent} jobs; killed worker ran {len(victim_runs)}, survivor "
        f"{len(survivor_runs)}; lost in flight: {len(lost)} {lost}"
    )
    assert not twice, f"jobs run twice: {twice}"
    assert not set(victim_runs) & after_kill, "the killed worker ran jobs after its death"
    assert all(job < fence for job in lost), f"jobs lost after the kill: {lost}"
    assert len(lost) <= MAX_LOST, f"{len(lost)} jobs lost, more than could be in flight"
