"""Drive ``bench/node/soak.mjs``, the Node + ``ws`` load generator of the soak run.

:func:`run_load` starts it pinned to the load CPU and follows its JSON lines: the
``opened`` line and every ``progress`` line go to callbacks (the sampler samples the
server at each progress line, so load and server figures line up); once the
``drained`` line's callback has returned, a line on its stdin lets it close the
sockets; the final ``result`` is returned. A run that outlives its time budget is
killed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..ws_load import LINE_LIMIT, NODE_DIR, LoadError
from ..ws_servers import pinned

SOAK_SCRIPT = NODE_DIR / "soak.mjs"
#: Beyond opening, the hold, the drain and the closes: time to start and to exit.
MARGIN_SECONDS = 120.0
#: How long closing the sockets may take beyond their pace (soak.mjs terminates
#: stragglers at 15 s).
CLOSE_SECONDS = 20.0

Callback = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class LoadSpec:
    """What soak.mjs does (see the script's header); times in seconds."""

    url: str
    connections: int
    rooms: int
    chatters: int
    interval_s: float
    duration_s: float
    report_s: float
    payload_bytes: int = 64
    concurrency: int = 100
    addresses: int = 8
    open_timeout_s: float = 300.0
    drain_s: float = 15.0
    overdue_s: float = 10.0
    release_timeout_s: float = 60.0
    close_rate: float = 1_000.0

    @property
    def budget(self) -> float:
        """The longest a healthy run can take, in seconds."""
        closing = CLOSE_SECONDS + (self.connections / self.close_rate if self.close_rate else 0)
        waits = self.open_timeout_s + self.drain_s + self.release_timeout_s + closing
        return self.duration_s + waits + MARGIN_SECONDS


async def run_load(
    spec: LoadSpec, *, cpu: int, on_opened: Callback, on_progress: Callback
) -> dict[str, Any]:
    """Run soak.mjs with ``spec`` on ``cpu``; return its result. Raises LoadError
    if it fails, and TimeoutError (after killing it) if it outlives its budget."""
    process = await asyncio.create_subprocess_exec(
        "node",
        str(SOAK_SCRIPT),
        json.dumps(asdict(spec)),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=LINE_LIMIT,
        preexec_fn=pinned(cpu),
    )
    try:
        async with asyncio.timeout(spec.budget):
            return await follow(process, on_opened, on_progress)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def follow(
    process: asyncio.subprocess.Process, on_opened: Callback, on_progress: Callback
) -> dict[str, Any]:
    """Hand each event line to its callback until the process exits; its result."""
    assert process.stdout is not None and process.stderr is not None
    assert process.stdin is not None
    stderr = asyncio.create_task(process.stderr.read())
    result: dict[str, Any] | None = None
    async for line in process.stdout:
        event = json.loads(line)
        kind = event.pop("event")
        if kind == "opened":
            await on_opened(event)
        elif kind == "progress":
            await on_progress(event)
            if event["phase"] == "drained":
                process.stdin.write(b"close\n")
                await process.stdin.drain()
        elif kind == "result":
            result = event
    status = await process.wait()
    errors = (await stderr).decode(errors="replace").strip()
    if status != 0 or result is None:
        raise LoadError(errors or f"soak.mjs exited with status {status} and no result")
    return result
