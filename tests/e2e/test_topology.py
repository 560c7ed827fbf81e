"""Interface and workers as separate processes, over SQLite, over sharded Redis and
over a Redis Cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.conftest import private_redis_servers, require_redis, require_redis_server
from tests.layers.cluster_helpers import cluster_deployment

from .server import ROOT, run_cli, serve

pytestmark = pytest.mark.anyio

SECRET = {"CHANLITE_SECRET_KEY": "topology-test-secret-key-0123456789"}


def start_worker(layer: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chanlite", "worker", "tests.apps.basic:routes", "--layer", layer],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **SECRET},
    )


async def test_interface_and_two_workers_over_sqlite(tmp_path: Path) -> None:
    layer = f"sqlite:///{tmp_path / 'layer.db'}"
    workers = [start_worker(layer), start_worker(layer)]
    try:
        with serve(
            "tests.apps.basic:routes", "--no-worker", "--layer", layer, env=SECRET
        ) as served:
            async with connect(f"{served.ws}/echo/") as ws:
                for text in ("one", "two", "three"):
                    await ws.send(text)
                    assert await ws.recv() == text
            async with connect(f"{served.ws}/watch/") as watcher:
                sent = run_cli("send", "jobs", '{"text": "from the CLI"}', "--layer", layer)
                assert sent.returncode == 0, sent.stderr
                assert await watcher.recv() == "job:from the CLI"
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=20)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    assert all("worker stopped" in output for output in outputs)
    # Each closed its SQLite session store, so nothing was left to fail at exit.
    assert not any("Traceback" in output for output in outputs), outputs


def test_stats_and_flush_commands(tmp_path: Path) -> None:
    layer = f"sqlite:///{tmp_path / 'layer.db'}"
    assert run_cli("send", "jobs", '{"text": "waiting"}', "--layer", layer).returncode == 0
    stats = run_cli("stats", "--layer", layer)
    assert stats.returncode == 0, stats.stderr
    assert "jobs" in stats.stdout and stats.stdout.split("jobs")[1].split()[0] == "1"
    assert run_cli("flush", "--layer", layer).returncode == 0
    after = run_cli("stats", "--layer", layer)
    assert "jobs" not in after.stdout


@pytest.fixture(params=["two redis shards", "redis cluster"])
def redis_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A layer URL of two redis-server processes of our own as shards, or of a Redis
    Cluster of our own (three masters, three replicas)."""
    require_redis()
    if request.param == "two redis shards":
        with private_redis_servers(2) as servers:
            yield ",".join(server.url for server in servers)
    else:
        require_redis_server()
        with cluster_deployment(tmp_path) as cluster:
            yield cluster.url()


async def test_two_interfaces_two_workers_over_redis(redis_url: str) -> None:
    workers = [start_worker(redis_url), start_worker(redis_url)]
    args = ("--no-worker", "--layer", redis_url)
    try:
        with (
            serve("tests.apps.basic:routes", *args, env=SECRET) as left,
            serve("tests.apps.basic:routes", *args, env=SECRET) as right,
        ):
            members = [
                await connect(f"{left.ws}/room/shared/"),
                await connect(f"{left.ws}/room/shared/"),
                await connect(f"{right.ws}/room/shared/"),
                await connect(f"{right.ws}/room/shared/"),
            ]
            for index, sender in enumerate(members):
                await sender.send(f"m{index}")
                for member in members:
                    assert await member.recv() == f"shared:m{index}"
            async with connect(f"{right.ws}/watch/") as watcher:
                sent = run_cli("send", "jobs", '{"text": "over redis"}', "--layer", redis_url)
                assert sent.returncode == 0, sent.stderr
                assert await watcher.recv() == "job:over redis"
            for member in members:
                await member.close()
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=20)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs


def test_stats_and_flush_over_redis(redis_url: str) -> None:
    for name in ("waiting.one", "waiting.two", "waiting.two"):
        assert run_cli("send", name, '{"text": "x"}', "--layer", redis_url).returncode == 0
    stats = run_cli("stats", "--layer", redis_url)
    assert stats.returncode == 0, stats.stderr
    depths = {
        line.split()[0]: line.split()[1]
        for line in stats.stdout.splitlines()
        if line.strip().startswith("waiting.")
    }
    assert depths == {"waiting.one": "1", "waiting.two": "2"}, stats.stdout
    assert run_cli("flush", "--layer", redis_url).returncode == 0
    after = run_cli("stats", "--layer", redis_url)
    assert after.returncode == 0 and "waiting." not in after.stdout, after.stdout
