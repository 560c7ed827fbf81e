"""Samples of a running deployment: what each process holds, and what Redis holds.

A :class:`Sample` reads, for every process, its RSS (``VmRSS`` of
``/proc/PID/status``), open file descriptors (entries of ``/proc/PID/fd``) and CPU
time; asyncio tasks and threads come from the interface's ``GET /debug`` and, on
Redis, from each worker's debug channel (see :mod:`bench.soak.app`). The interface's
``/debug`` also gives connections, group sizes, queued messages and, on
``memory://``, session-store entries. On Redis, ``INFO memory``'s ``used_memory`` and
the keys of the layer's database, counted by kind (``s`` sessions, ``o`` ordering
cursors, ``g`` groups, ``m`` memberships, ``q`` queues). A figure that cannot be read
(a process gone, a request timed out) is ``None``; sampling never raises for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as redis

from chanlite import get_layer
from chanlite.layers.base import BaseChannelLayer

from ..redis_server import process_cpu_seconds
from .app import debug_channel
from .deployment import Deployment, ProcessRef

#: How long one request for figures (HTTP or debug channel) may take.
REQUEST_TIMEOUT = 5.0
#: The roles whose processes count as "the server" in sums (Redis is reported apart).
SERVER_ROLES = ("interface", "worker")
#: Keys per SCAN call when counting Redis keys.
SCAN_COUNT = 1_000


@dataclass(frozen=True)
class ProcessSample:
    """One process at one moment; ``None`` for what could not be read."""

    name: str
    role: str
    pid: int
    rss_kib: int | None
    fds: int | None
    cpu_seconds: float | None
    tasks: int | None = None
    threads: int | None = None
    task_kinds: dict[str, int] | None = None


@dataclass(frozen=True)
class Sample:
    """The deployment at one moment of the run.

    ``phase``: ``idle`` (started, no sockets yet), ``hold`` (sockets open),
    ``drained`` (chatting stopped and deliveries settled, sockets still open) or
    ``closed`` (every socket closed and the server settled). ``t``: seconds since
    every socket was open, for ``hold`` and ``drained``; ``clock``: seconds since the
    deployment started. ``load``: the load generator's progress line, if any.
    """

    phase: str
    t: float | None
    clock: float
    processes: tuple[ProcessSample, ...]
    debug: dict[str, Any] = field(default_factory=dict)
    redis_used: int | None = None
    redis_keys: dict[str, int] | None = None
    load: dict[str, Any] | None = None

    def total(self, attribute: str, roles: tuple[str, ...] = SERVER_ROLES) -> float | None:
        """The sum of ``attribute`` over the processes of ``roles``; ``None`` if any
        of them lacks it."""
        values = [getattr(p, attribute) for p in self.processes if p.role in roles]
        if not values or any(value is None for value in values):
            return None
        return float(sum(values))

    def figure(self, name: str) -> float | None:
        """A number from the interface's ``/debug`` answer, if it gave one."""
        value = self.debug.get(name)
        return float(value) if isinstance(value, int | float) else None

    @property
    def redis_key_count(self) -> int | None:
        """Every key in the layer's Redis database."""
        return None if self.redis_keys is None else sum(self.redis_keys.values())


def rss_kib(pid: int) -> int | None:
    """VmRSS of process ``pid`` in KiB; ``None`` if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def open_fds(pid: int) -> int | None:
    """How many file descriptors process ``pid`` has open; ``None`` if it is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time process ``pid`` has used so far; ``None`` if it is gone."""
    try:
        return process_cpu_seconds(pid)
    except OSError:
        return None


def read_process(ref: ProcessRef, figures: dict[str, Any] | None) -> ProcessSample:
    """What ``/proc`` says of ``ref``, with its tasks and threads from ``figures``."""
    figures = figures or {}
    return ProcessSample(
        ref.name,
        ref.role,
        ref.pid,
        rss_kib(ref.pid),
        open_fds(ref.pid),
        cpu_seconds(ref.pid),
        figures.get("tasks"),
        figures.get("threads"),
        figures.get("task_kinds"),
    )


async def get_json(port: int, path: str) -> dict[str, Any] | None:
    """``GET path`` on 127.0.0.1:``port`` as JSON; ``None`` on any failure."""
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(request.encode("ascii"))
                await writer.drain()
                raw = await reader.read()
            finally:
                writer.close()
                await writer.wait_closed()
    except (OSError, TimeoutError):
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


class Probe:
    """Takes samples of one deployment (open with :meth:`open`, then :meth:`close`)."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.started = asyncio.get_running_loop().time()
        self.layer: BaseChannelLayer | None = None
        self.redis: redis.Redis | None = None
        self.reply = f"soak.reply.{os.getpid()}"

    async def open(self) -> None:
        """Connect to the deployment's Redis, if it has one."""
        if self.deployment.redis is not None:
            self.layer = get_layer(self.deployment.layer_url)
            self.redis = redis.Redis.from_url(self.deployment.layer_url)

    async def close(self) -> None:
        """Close the Redis connections."""
        if self.layer is not None:
            await self.layer.aclose()
        if self.redis is not None:
            await self.redis.aclose()

    async def sample(
        self, phase: str, t: float | None = None, load: dict[str, Any] | None = None
    ) -> Sample:
        """Read everything now."""
        clock = asyncio.get_running_loop().time() - self.started
        debug = await get_json(self.deployment.port, "/debug") or {}
        workers = await self.ask_workers()
        figures_by_pid = {self.deployment.pid: debug, **workers}
        processes = tuple(
            read_process(ref, figures_by_pid.get(ref.pid)) for ref in self.deployment.processes()
        )
        used, keys = await self.redis_figures()
        return Sample(phase, t, clock, processes, debug, used, keys, load)

    async def ask_workers(self) -> dict[int, dict[str, Any]]:
        """Each worker's figures by process id: those that answered in time."""
        names = [worker.name for worker in self.deployment.workers]
        if self.layer is None or not names:
            return {}
        nonce = secrets.token_hex(8)
        answers: dict[int, dict[str, Any]] = {}
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                for name in names:
                    await self.layer.send(
                        debug_channel(name), {"reply_channel": self.reply, "nonce": nonce}
                    )
                while len(answers) < len(names):
                    _, content = await self.layer.receive([self.reply])
                    if content is not None and content.get("nonce") == nonce:
                        answers[int(content["pid"])] = content
        except (TimeoutError, OSError, redis.RedisError, ValueError):
            pass
        return answers

    async def wait_for_workers(self, timeout: float) -> bool:
        """Wait until every worker answers a debug request; False if one has not
        within ``timeout`` seconds."""
        deadline = asyncio.get_running_loop().time() + timeout
        expected = len(self.deployment.workers)
        while asyncio.get_running_loop().time() < deadline:
            if len(await self.ask_workers()) == expected:
                return True
            await asyncio.sleep(0.5)
        return False

    async def redis_figures(self) -> tuple[int | None, dict[str, int] | None]:
        """Redis's ``used_memory`` and the database's keys by kind, if on Redis."""
        if self.redis is None:
            return None, None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                info = await self.redis.info("memory")
                kinds: Counter[str] = Counter()
                async for key in self.redis.scan_iter(count=SCAN_COUNT):
                    kinds[key_kind(key)] += 1
        except (TimeoutError, OSError, redis.RedisError):
            return None, None
        return int(info["used_memory"]), dict(kinds)


def key_kind(key: bytes) -> str:
    """The kind of a chanlite key ``prefix:KIND:name`` (``other`` for any other)."""
    parts = key.split(b":", 2)
    return parts[1].decode("ascii", "replace") if len(parts) == 3 else "other"
