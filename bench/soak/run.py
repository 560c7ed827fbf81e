"""One soak run on one layer: start the deployment, sample it while the load
generator holds and drives the sockets, close, sample again, stop."""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .deployment import (
    FD_HEADROOM,
    Deployment,
    process_fd_limit,
    secret_key,
    start_deployment,
    stop_deployment,
)
from .load import LoadSpec, run_load
from .plan import Plan
from .probe import Probe, Sample

#: How long the workers of a Redis deployment may take to answer their first request.
WORKERS_READY_TIMEOUT = 30.0


@dataclass
class SoakRun:
    """Everything one layer's run saw. ``result`` is the load generator's final
    line; ``error`` says why the run stopped early, if it did."""

    layer: str
    plan: Plan
    date: str
    load_average: tuple[float, float, float]
    fd_limits: dict[str, int | None] = field(default_factory=dict)
    processes: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    opened: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    log_problems: list[str] = field(default_factory=list)
    log_dir: str = ""
    wall_seconds: float = 0.0
    load_average_end: tuple[float, float, float] | None = None

    def phase(self, name: str) -> Sample | None:
        """The last sample of phase ``name``."""
        matching = [s for s in self.samples if s.phase == name]
        return matching[-1] if matching else None


#: Called with the run and each sample as it is taken (to print it).
Reporter = Callable[[SoakRun, Sample], None]


def load_spec(plan: Plan, deployment: Deployment) -> LoadSpec:
    """What the load generator does against ``deployment``."""
    return LoadSpec(
        url=f"ws://127.0.0.1:{deployment.port}/room/",
        connections=plan.connections,
        rooms=plan.rooms,
        chatters=plan.chatters,
        interval_s=plan.interval_s,
        duration_s=plan.duration_s,
        report_s=plan.sample_s,
        close_rate=plan.close_rate,
    )


async def run_layer(
    plan: Plan, layer: str, log_dir: Path, report: Reporter, needed_fds: int
) -> SoakRun:
    """Run the soak on ``layer``, calling ``report`` with each sample as it is taken.

    A failure of the run itself (the load generator's, a server process exiting) is
    not raised: it is in ``run.error``, and the deployment is stopped all the same.
    """
    run = SoakRun(
        layer,
        plan,
        datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        os.getloadavg(),
        log_dir=str(log_dir),
    )
    started = time.monotonic()
    with secret_key():
        deployment = await start_deployment(
            layer, workers=plan.workers, cpu=plan.server_cpu, log_dir=log_dir
        )
    probe = Probe(deployment)
    try:
        await probe.open()
        await drive(run, plan, deployment, probe, report, needed_fds)
    except Exception as exc:  # the run's own failure: reported, not raised
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        await probe.close()
        await stop_deployment(deployment)
        run.log_problems = deployment.log_problems()
        run.wall_seconds = time.monotonic() - started
        run.load_average_end = os.getloadavg()
    return run


async def drive(
    run: SoakRun, plan: Plan, deployment: Deployment, probe: Probe, report: Reporter, needed: int
) -> None:
    """Sample idle, run the load (a sample at each of its progress lines), then
    sample once every socket has closed and the server has settled."""
    run.processes = [f"{ref.name} (pid {ref.pid})" for ref in deployment.processes()]
    run.fd_limits = {ref.name: process_fd_limit(ref.pid) for ref in deployment.processes()}
    short = {name: limit for name, limit in run.fd_limits.items() if limit and limit < needed}
    if short:
        raise RuntimeError(f"open-file limits below the {needed:,} needed: {short}")
    if deployment.workers and not await probe.wait_for_workers(WORKERS_READY_TIMEOUT):
        raise RuntimeError(f"the workers did not answer within {WORKERS_READY_TIMEOUT:.0f}s")
    await deployment.settle()
    await take(run, probe, report, "idle")

    async def on_opened(event: dict[str, Any]) -> None:
        run.opened = event

    async def on_progress(event: dict[str, Any]) -> None:
        if deployment.dead():
            raise RuntimeError(f"server processes exited: {', '.join(deployment.dead())}")
        await take(run, probe, report, event["phase"], event["t"], event)

    spec = load_spec(plan, deployment)
    run.result = await run_load(
        spec, cpu=plan.load_cpu, on_opened=on_opened, on_progress=on_progress
    )
    await deployment.settle()
    await take(run, probe, report, "closed")


async def take(
    run: SoakRun,
    probe: Probe,
    report: Reporter,
    phase: str,
    t: float | None = None,
    load: dict[str, Any] | None = None,
) -> None:
    """Take a sample, keep it, and report it."""
    sample = await probe.sample(phase, t, load)
    run.samples.append(sample)
    report(run, sample)


def needed_fds(plan: Plan) -> int:
    """Open files each process needs: one per socket, plus headroom."""
    return plan.connections + FD_HEADROOM
