"""Drive ``bench/node/load.mjs``, the Node + ``ws`` load generator of the ``ws-*`` suites.

:func:`ensure_node` installs the generator's dependencies with ``npm ci`` the first
time. :func:`run_load` runs one scenario pinned to the load CPU and follows its JSON
lines: it samples the server's CPU time at the timed window's start and end marks,
calls back when idle sockets are held open (so memory can be read), and returns the
final result.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ws_servers import Cpus, RunningServer, core_busy_seconds, pinned

NODE_DIR = Path(__file__).resolve().parent / "node"
LOAD_SCRIPT = NODE_DIR / "load.mjs"
#: A scenario that runs longer than this is hung, not slow.
LOAD_TIMEOUT = 600.0
#: Lines a scenario may print (JSON events) can be long: error maps, latencies.
LINE_LIMIT = 1 << 20


class LoadError(RuntimeError):
    """The load generator failed (its stderr says why)."""


@dataclass
class LoadResult:
    """A scenario's final JSON object, plus CPU use in its timed window (fractions of
    one core): the server's, and what other processes took on either CPU."""

    values: dict[str, Any]
    server_cpu: float | None = None
    server_core_others: float | None = None
    load_core_others: float | None = None


@dataclass
class _Marks:
    """CPU times at the window's start and end marks."""

    cpus: Cpus
    server: RunningServer
    samples: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)

    def record(self, name: str) -> None:
        self.samples[name] = (
            time.monotonic(),
            self.server.cpu_seconds(),
            core_busy_seconds(self.cpus.server),
            core_busy_seconds(self.cpus.load),
        )

    def complete(self, values: dict[str, Any]) -> LoadResult:
        """The result, with the window's CPU use if both marks were seen."""
        if not {"start", "end"} <= self.samples.keys():
            return LoadResult(values)
        start, end = self.samples["start"], self.samples["end"]
        elapsed, server, server_core, load_core = (b - a for a, b in zip(start, end, strict=True))
        if elapsed <= 0:
            return LoadResult(values)
        load_cpu = float(values.get("load_cpu", 0.0))
        return LoadResult(
            values,
            server_cpu=server / elapsed,
            server_core_others=max(0.0, (server_core - server) / elapsed),
            load_core_others=max(0.0, load_core / elapsed - load_cpu),
        )


def ensure_node() -> None:
    """Check for ``node`` and install ``ws`` under bench/node if it is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit("the ws suites need Node.js 18+ and npm on PATH")
    if (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        return
    print(f"installing the load generator's dependencies (npm ci in {NODE_DIR})", flush=True)
    command = [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"npm ci failed:\n{completed.stdout}{completed.stderr}")


async def run_load(
    spec: Mapping[str, Any],
    *,
    cpus: Cpus,
    server: RunningServer,
    on_hold: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> LoadResult:
    """Run one load.mjs scenario against ``server``; raise LoadError if it fails."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(LOAD_SCRIPT),
        json.dumps(spec),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
        preexec_fn=pinned(cpus.load),
    )
    try:
        async with asyncio.timeout(LOAD_TIMEOUT):
            return await _follow(process, _Marks(cpus, server), on_hold)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _follow(
    process: asyncio.subprocess.Process,
    marks: _Marks,
    on_hold: Callable[[dict[str, Any]], Awaitable[None]] | None,
) -> LoadResult:
    assert process.stdout is not None and process.stdin is not None
    assert process.stderr is not None
    stderr = asyncio.create_task(process.stderr.read())
    result: dict[str, Any] | None = None
    async for line in process.stdout:
        event = json.loads(line)
        kind = event.pop("event")
        if kind == "mark":
            marks.record(event["name"])
        elif kind == "holding":
            if on_hold is not None:
                await on_hold(event)
            process.stdin.write(b"release\n")
            await process.stdin.drain()
        elif kind == "result":
            result = event
    status = await process.wait()
    errors = (await stderr).decode(errors="replace").strip()
    if status != 0 or result is None:
        raise LoadError(errors or f"load.mjs exited with status {status} and no result")
    return marks.complete(result)
