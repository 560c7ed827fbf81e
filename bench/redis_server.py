"""A private ``redis-server`` for the Redis suites (``redis-layers``, ``ws-redis``).

Each suite starts its own server on a free port of 127.0.0.1, pinned to one CPU, with
no persistence, so no other user of a shared Redis disturbs the numbers and its CPU
time can be read from ``/proc``. Every library under test uses the same server;
:func:`flush_db` empties one database between rounds.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import redis.asyncio as redis

from .ws_servers import CLOCK_TICKS, free_port, pinned

#: How long a started redis-server may take to answer PING.
START_TIMEOUT = 10.0
#: How long it may take to exit after SIGTERM.
STOP_TIMEOUT = 10.0


class RedisProcess:
    """A running private redis-server."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, cpu: int) -> None:
        self.process = process
        self.port = port
        self.cpu = cpu

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def url(self, db: int) -> str:
        """The ``redis://`` URL of database ``db`` on this server."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used so far."""
        return process_cpu_seconds(self.pid)

    async def flush_db(self, db: int) -> None:
        """Empty database ``db`` (untimed set-up of a round)."""
        client = redis.Redis.from_url(self.url(db))
        try:
            await client.flushdb()
        finally:
            await client.aclose()


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used so far, all threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def start_redis(cpu: int) -> RedisProcess:
    """Start redis-server on a free port pinned to ``cpu``; return once it answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("the Redis suites need redis-server on PATH")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        binary,
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        *("--loglevel", "warning"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        preexec_fn=pinned(cpu),
    )
    server = RedisProcess(process, port, cpu)
    try:
        await wait_answering(server)
    except BaseException:
        await stop_redis(server)
        raise
    return server


async def wait_answering(server: RedisProcess) -> None:
    """Poll until the server answers PING."""
    deadline = time.monotonic() + START_TIMEOUT
    client = redis.Redis(port=server.port)
    try:
        while True:
            if server.process.returncode is not None:
                raise RuntimeError(f"redis-server on port {server.port} exited early")
            try:
                await client.ping()
                return
            except (redis.ConnectionError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def stop_redis(server: RedisProcess) -> None:
    """SIGTERM the server and wait; SIGKILL it if it does not stop in time."""
    if server.process.returncode is None:
        server.process.terminate()
    try:
        await asyncio.wait_for(server.process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        server.process.kill()
        await server.process.wait()
