"""The WebSocket servers of the ``ws-*`` suites: start, watch, stop.

Every server is a child process on a free port of 127.0.0.1, pinned to one CPU,
running uvicorn with its defaults (loop, HTTP and WebSocket implementations ``auto``)
and log level ``warning``: ``chanlite serve`` for chanlite, ``uvicorn`` for raw
Starlette and for Channels 4. Output goes to a log file per server. A server is
"settled" once it has been idle for a moment, so one measurement's leftovers (closing
sockets, disconnect messages) do not run into the next.
"""

from __future__ import annotations

import asyncio
import functools
import os
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: uvicorn's (and chanlite's) log level for every server: access lines would cost time.
LOG_LEVEL = "warning"
#: How long a server may take to start listening, and to stop after SIGTERM.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
#: A server counts as settled after this long using at most SETTLED_CPU of its core.
SETTLE_INTERVAL = 0.25
SETTLED_CPU = 0.05
SETTLE_TIMEOUT = 30.0
#: Clock ticks per second of /proc/PID/stat's CPU times.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server: ``python -m ARGS... --port PORT``, with ``env`` added
    to this process's environment."""

    name: str
    label: str
    module_args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()

    def command(self, port: int) -> list[str]:
        """The command line that starts this server on ``port``."""
        return [sys.executable, "-m", *self.module_args, "--port", str(port)]


def chanlite_server(
    name: str, label: str, layer: str | None = None, *, app: str = "routes"
) -> ServerSpec:
    """``chanlite serve bench.apps.chanlite_echo:APP``, optionally with ``--layer``."""
    layer_args = ("--layer", layer) if layer else ()
    return ServerSpec(
        name,
        label,
        (
            "chanlite",
            "--log-level",
            LOG_LEVEL,
            "serve",
            f"bench.apps.chanlite_echo:{app}",
            "--host",
            "127.0.0.1",
            *layer_args,
        ),
    )


def uvicorn_server(name: str, label: str, target: str) -> ServerSpec:
    """``uvicorn TARGET`` with uvicorn's defaults."""
    return ServerSpec(
        name,
        label,
        ("uvicorn", target, "--host", "127.0.0.1", "--log-level", LOG_LEVEL),
    )


@dataclass(frozen=True)
class Cpus:
    """Where the servers and the load generator run."""

    server: int
    load: int

    @classmethod
    def pick(cls) -> Cpus:
        """The servers on this process's (pinned) CPU, the load on the next free one."""
        server = min(os.sched_getaffinity(0))
        others = [cpu for cpu in range(os.cpu_count() or 1) if cpu != server]
        return cls(server, others[0] if others else server)


def core_busy_seconds(cpu: int) -> float:
    """Time ``cpu`` has spent running anything (user, nice, system, steal) since boot.

    Interrupt and softirq time is left out: loopback traffic makes some of it.
    """
    prefix = f"cpu{cpu} "
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(prefix):
            user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, line.split()[1:9])
            return (user + nice + system + steal) / CLOCK_TICKS
    raise RuntimeError(f"no {prefix.strip()} line in /proc/stat")


class RunningServer:
    """A started server process: its URLs, memory, CPU time and log."""

    def __init__(
        self, spec: ServerSpec, process: asyncio.subprocess.Process, port: int, log: Path
    ) -> None:
        self.spec = spec
        self.process = process
        self.port = port
        self.log = log

    @property
    def pid(self) -> int:
        """The server's process id (the server itself: no reloader, no workers)."""
        return self.process.pid

    def url(self, path: str) -> str:
        """The ``ws://`` URL of ``path`` on this server."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def rss_kib(self) -> int:
        """Resident set size (VmRSS) in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for {self.spec.name} (pid {self.pid})")

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far, all threads."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def alive(self) -> bool:
        """True while the process runs."""
        return self.process.returncode is None

    async def settle(self) -> None:
        """Wait until the server is idle (or SETTLE_TIMEOUT passes)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            before = self.cpu_seconds()
            await asyncio.sleep(SETTLE_INTERVAL)
            busy = (self.cpu_seconds() - before) / SETTLE_INTERVAL
            quiet = quiet + 1 if busy <= SETTLED_CPU else 0

    def log_problems(self) -> list[str]:
        """The log's WARNING/ERROR lines (chanlite's own secret-key notice aside)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [
            line
            for line in lines
            if ("WARNING" in line or "ERROR" in line) and "no secret key is set" not in line
        ]


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit (inherited by children) to its hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"the ws suites need {needed} open files; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cpu: int) -> functools.partial[None]:
    """A ``preexec_fn`` that pins the child (and every thread it starts) to ``cpu``."""
    return functools.partial(os.sched_setaffinity, 0, {cpu})


async def start(spec: ServerSpec, *, cpu: int, log_dir: Path, cwd: Path = ROOT) -> RunningServer:
    """Start ``spec`` in ``cwd`` on a free port pinned to ``cpu``; return once it listens."""
    port = free_port()
    log = log_dir / f"{spec.name}-{port}.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *spec.command(port),
            cwd=cwd,
            env={**os.environ, **dict(spec.env)},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=pinned(cpu),
        )
    server = RunningServer(spec, process, port, log)
    try:
        await wait_listening(server)
    except BaseException:
        await stop(server)
        raise
    return server


async def wait_listening(server: RunningServer) -> None:
    """Poll the port until it accepts a TCP connection."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"{server.spec.name} exited early:\n{server.log.read_text()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"{server.spec.name} did not listen within {START_TIMEOUT:.0f}s")


async def stop(server: RunningServer) -> None:
    """SIGTERM the server and wait for it; SIGKILL it if it does not stop in time."""
    if server.alive():
        server.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(server.process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        server.process.kill()
        await server.process.wait()
