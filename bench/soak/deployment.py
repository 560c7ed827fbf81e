"""The server side of a soak run: start it, name its processes, stop it.

* ``memory``: one ``chanlite serve bench.soak.app:app --layer memory://`` process,
  with its in-process workers.
* ``redis``: a private redis-server (no persistence, on a free port), ``chanlite
  serve ... --no-worker`` and ``--workers`` ``chanlite worker`` processes, each
  started with ``CHANLITE_SOAK_PROCESS=worker-N`` so that it answers the sampler's
  debug requests (see :mod:`bench.soak.app`).

Every process runs on 127.0.0.1, pinned to the server CPU, at log level ``warning``,
with the open-file limit this process has raised (:func:`raise_fd_limit`), and
writes its output to a log file.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..redis_server import RedisProcess, process_cpu_seconds, start_redis, stop_redis
from ..ws_servers import (
    LOG_LEVEL,
    ROOT,
    STOP_TIMEOUT,
    RunningServer,
    ServerSpec,
    pinned,
    start,
    stop,
)
from .app import PROCESS_ENV

#: The app every process of the run serves.
APP = "bench.soak.app:app"
LAYERS = ("memory", "redis")
#: Open files a process needs beyond one per socket: listeners, logs, Redis, imports.
FD_HEADROOM = 1_000
#: A secret key for the chanlite processes (required across processes; not a secret).
SECRET_KEY = "chanlite-soak-not-a-secret-0123456789"
SECRET_ENV = "CHANLITE_SECRET_KEY"


@dataclass(frozen=True)
class ProcessRef:
    """One process of the deployment: ``name``, ``role`` (``interface``, ``worker``
    or ``redis``) and id."""

    name: str
    role: str
    pid: int


@dataclass
class WorkerProcess:
    """A started ``chanlite worker``."""

    name: str
    process: asyncio.subprocess.Process
    log: Path


class Deployment(RunningServer):
    """The running interface server with its workers and Redis, if any.

    CPU time is summed over all of them, so :meth:`settle` waits until the whole
    deployment is idle.
    """

    def __init__(
        self,
        layer: str,
        server: RunningServer,
        workers: list[WorkerProcess],
        redis: RedisProcess | None,
    ) -> None:
        super().__init__(server.spec, server.process, server.port, server.log)
        self.layer = layer
        self.workers = workers
        self.redis = redis

    @property
    def layer_url(self) -> str:
        """The URL every chanlite process of the deployment uses."""
        return "memory://" if self.redis is None else self.redis.url(0)

    def processes(self) -> list[ProcessRef]:
        """Every process, the interface first and Redis last."""
        refs = [ProcessRef("interface", "interface", self.pid)]
        refs += [ProcessRef(w.name, "worker", w.process.pid) for w in self.workers]
        if self.redis is not None:
            refs.append(ProcessRef("redis-server", "redis", self.redis.pid))
        return refs

    def cpu_seconds(self) -> float:
        """User plus system CPU time of every process of the deployment so far."""
        helpers = [w.process.pid for w in self.workers if w.process.returncode is None]
        if self.redis is not None:
            helpers.append(self.redis.pid)
        return super().cpu_seconds() + sum(process_cpu_seconds(pid) for pid in helpers)

    def dead(self) -> list[str]:
        """The chanlite processes that have exited."""
        gone = [] if self.alive() else ["interface"]
        return gone + [w.name for w in self.workers if w.process.returncode is not None]

    def log_problems(self) -> list[str]:
        """The WARNING/ERROR lines of the server's and the workers' logs."""
        lines = super().log_problems()
        for worker in self.workers:
            text = worker.log.read_text(errors="replace")
            lines += [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
        return lines


def raise_fd_limit(needed: int) -> tuple[int, int]:
    """Raise this process's soft open-file limit, which every process it starts
    inherits, to the hard limit if it is below ``needed``; return (soft, hard).

    Raises SystemExit, saying what to do, if the hard limit is below ``needed``.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"the soak needs {needed:,} open files per process (sockets plus "
            f"{FD_HEADROOM:,}), but the hard limit is {hard:,}: raise it (`ulimit -Hn`, "
            "limits.conf or systemd's LimitNOFILE) or pass fewer --connections"
        )
    new_soft = hard if hard != resource.RLIM_INFINITY else needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    return new_soft, hard


def process_fd_limit(pid: int) -> int | None:
    """The soft open-file limit of process ``pid`` (``None`` if unlimited or gone)."""
    try:
        lines = Path(f"/proc/{pid}/limits").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("Max open files"):
            value = line.split()[3]
            return None if value == "unlimited" else int(value)
    return None


@contextmanager
def secret_key() -> Iterator[None]:
    """``CHANLITE_SECRET_KEY`` set for the processes started meanwhile."""
    saved = os.environ.get(SECRET_ENV)
    os.environ[SECRET_ENV] = SECRET_KEY
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = saved


def serve_spec(layer_url: str, *, workers: bool) -> ServerSpec:
    """``chanlite serve bench.soak.app:app`` on ``layer_url`` (``--no-worker``
    unless ``workers``)."""
    extra = () if workers else ("--no-worker",)
    args = ("serve", APP, "--host", "127.0.0.1", "--layer", layer_url, *extra)
    return ServerSpec("soak", "chanlite serve", ("chanlite", "--log-level", LOG_LEVEL, *args))


async def start_worker(name: str, layer_url: str, cpu: int, log_dir: Path) -> WorkerProcess:
    """One ``chanlite worker`` named ``name`` on ``layer_url``, pinned to ``cpu``."""
    log = log_dir / f"{name}.log"
    command = ["-m", "chanlite", "--log-level", LOG_LEVEL, "worker", APP, "--layer", layer_url]
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=ROOT,
            env={**os.environ, PROCESS_ENV: name},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=pinned(cpu),
        )
    return WorkerProcess(name, process, log)


async def start_deployment(layer: str, *, workers: int, cpu: int, log_dir: Path) -> Deployment:
    """Start the deployment of ``layer`` pinned to ``cpu``; return once it listens.

    Needs :func:`secret_key` in effect. Whatever started is stopped if a later step
    fails.
    """
    if layer == "memory":
        server = await start(serve_spec("memory://", workers=True), cpu=cpu, log_dir=log_dir)
        return Deployment(layer, server, [], None)
    redis = await start_redis(cpu)
    started: list[WorkerProcess] = []
    try:
        for index in range(1, workers + 1):
            started.append(await start_worker(f"worker-{index}", redis.url(0), cpu, log_dir))
        server = await start(serve_spec(redis.url(0), workers=False), cpu=cpu, log_dir=log_dir)
    except BaseException:
        await stop_workers(started)
        await stop_redis(redis)
        raise
    return Deployment(layer, server, started, redis)


async def stop_workers(workers: list[WorkerProcess]) -> None:
    """SIGTERM every worker and wait; SIGKILL those that do not stop in time."""
    for worker in workers:
        if worker.process.returncode is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            await asyncio.wait_for(worker.process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            worker.process.kill()
            await worker.process.wait()


async def stop_deployment(deployment: Deployment) -> None:
    """Stop the interface, then the workers, then Redis."""
    await stop(deployment)
    await stop_workers(deployment.workers)
    if deployment.redis is not None:
        await stop_redis(deployment.redis)
