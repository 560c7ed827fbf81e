"""Suite ``ws-redis``: WebSocket servers over Redis, chanlite against Channels 4 +
channels_redis.

Four servers run side by side in every round, each on its own database of one
private redis-server, all (Redis included) pinned to the server CPU; the Node load
generator runs on the other CPU, as in the other ``ws-*`` suites:

* ``chanlite-redis``: ``chanlite serve bench.apps.chanlite_echo:routes`` with its
  in-process workers on ``redis://``;
* ``chanlite-split``: the same with ``--no-worker``, plus two ``chanlite worker``
  processes on the same layer;
* ``channels-redis``: Channels 4 with channels_redis's ``RedisChannelLayer``;
* ``channels-pubsub``: Channels 4 with ``RedisPubSubChannelLayer``
  (``bench.apps.channels_redis_echo``, under uvicorn).

Scenarios (closed-loop echo at 50 and 500 clients, fan-out to rooms of 100 and 1,000)
and the way each is measured are those of :mod:`bench.ws`, whose round machinery this
suite reuses. A server's CPU time counts its helper processes too (its workers, and
Redis, which only the server being measured uses at that moment), so "other
processes" in the disturbance check means processes outside the deployment.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from .apps.channels_redis_echo import CORE_ENV, PUBSUB_ENV
from .core import Config, Row
from .redis_server import RedisProcess, process_cpu_seconds, start_redis, stop_redis
from .ws import (
    ATTEMPTS,
    BIG_CAPACITY,
    FD_HEADROOM,
    FULL,
    MAX_OTHERS,
    QUICK,
    Endpoint,
    Results,
    Round,
    Sizes,
    attempt,
    echo,
    fanout,
    run_note,
    say,
)
from .ws_load import ensure_node
from .ws_rows import Metric, Versus, latency_rows, ratio_target, row
from .ws_servers import (
    LOG_LEVEL,
    ROOT,
    STOP_TIMEOUT,
    Cpus,
    RunningServer,
    ServerSpec,
    pinned,
    raise_fd_limit,
    start,
    stop,
)

NAME = "ws-redis"
TITLE = "WebSocket servers over Redis: chanlite vs Channels 4 + channels_redis, on uvicorn"
BASELINE = "Channels 4"

#: The chanlite app every chanlite process serves.
CHANLITE_APP = "bench.apps.chanlite_echo:routes"
#: Worker processes beside the ``--no-worker`` interface.
WORKERS = 2
#: A secret key for the chanlite processes (required across processes; not a secret).
SECRET_KEY = "chanlite-bench-not-a-secret-0123456789"
#: One database per server on the private Redis.
DATABASES = {"chanlite-redis": 1, "chanlite-split": 2, "channels-redis": 3, "channels-pubsub": 4}
LABELS = {
    "chanlite-redis": "chanlite serve (in-process workers)",
    "chanlite-split": f"chanlite serve --no-worker + {WORKERS} workers",
    "channels-redis": "RedisChannelLayer",
    "channels-pubsub": "RedisPubSubChannelLayer",
}
CHANLITE = ("chanlite-redis", "chanlite-split")
CHANNELS = ("channels-redis", "channels-pubsub")
#: The baseline latency rows are given against.
LATENCY_BASELINE = "channels-redis"
#: Targets from the issue, as ratios to Channels 4 + channels_redis in the same run.
ECHO_TARGETS = {50: 1.0}
FANOUT_TARGETS = {1_000: 4.0}

SIZES = replace(FULL, echo_clients=(50, 500))
QUICK_SIZES = replace(QUICK, echo_clients=(50, 500))

DESCRIPTION = (
    "chanlite's `async def` echo consumer and `Group(...).send` rooms "
    "(`bench/apps/chanlite_echo.py`) on `redis://`, against Channels 4's "
    "`AsyncWebsocketConsumer` echo and `group_send` rooms (`bench/apps/channels_echo.py`) "
    "on channels_redis (`bench/apps/channels_redis_echo.py`). chanlite runs twice: "
    "*chanlite serve* with its in-process workers, and *--no-worker + 2 workers* (an "
    "interface process and two `chanlite worker` processes). Channels 4 runs with "
    "`RedisChannelLayer` and with `RedisPubSubChannelLayer`, each at channels_redis's "
    "defaults. *Setup.* Each measured round starts the four deployments fresh, each on "
    "its own database of one private redis-server (no persistence); every process of "
    "every deployment, Redis included, is pinned to the benchmark's CPU, and the Node "
    "`ws` load generator (`bench/node/load.mjs`) to the other one, so a deployment of "
    "several processes gains no extra core. chanlite's layers run at capacity "
    f"{BIG_CAPACITY:,}, so that no channel of a scenario is ever full (500 echo clients "
    "can have 500 frames waiting on `websocket.receive`). Scenarios, warm-ups, "
    "windows and the repeat-if-disturbed rule are those of the other ws suites: "
    "*echo*: N closed-loop clients each send 32 bytes and wait for the echo; echoes per "
    "second and round-trip latency over 5 s after a 1 s warm-up. *Fan-out*: a room of N "
    "sockets, the first of which sends every broadcast and all of which receive it; "
    "latency at 20 broadcasts/s for 5 s, then deliveries per second at flood (10 "
    "broadcasts in flight, 5 s), and lost deliveries summed over the rounds. A "
    "deployment's CPU counts all its processes and Redis, so a measurement is repeated "
    f"(up to {ATTEMPTS} times) only when processes outside it took more than "
    f"{MAX_OTHERS:.0%} of either CPU. Ratio = chanlite median / Channels 4 median; "
    "a row that counts losses or closed sockets meets its target only if chanlite had "
    "none. Latency is a cost: lower is better, the best column is the lowest round."
)


# -- deployments ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentSpec:
    """A server to start, and how many ``chanlite worker`` processes go with it."""

    server: ServerSpec
    layer: str | None = None
    workers: int = 0


class Deployment(RunningServer):
    """A running server with its helpers: worker processes, and the Redis it uses.

    CPU time is the sum over all of them, so a settled deployment is one whose workers
    and Redis are idle too, and a window's server CPU is the whole deployment's.
    """

    def __init__(
        self,
        server: RunningServer,
        workers: list[tuple[asyncio.subprocess.Process, Path]],
        redis: RedisProcess,
    ) -> None:
        super().__init__(server.spec, server.process, server.port, server.log)
        self.workers = workers
        self.redis = redis

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the server, its workers and Redis."""
        helpers = [process.pid for process, _ in self.workers if process.returncode is None]
        pids = [*helpers, self.redis.pid]
        return super().cpu_seconds() + sum(process_cpu_seconds(pid) for pid in pids)

    def log_problems(self) -> list[str]:
        """WARNING/ERROR lines of the server's and the workers' logs."""
        lines = super().log_problems()
        for _, log in self.workers:
            text = log.read_text(errors="replace")
            lines += [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
        return lines


def chanlite_args(layer: str, *extra: str) -> tuple[str, ...]:
    """``python -m`` arguments of ``chanlite serve`` on ``layer``."""
    serve = ("serve", CHANLITE_APP, "--host", "127.0.0.1", "--layer", layer, *extra)
    return ("chanlite", "--log-level", LOG_LEVEL, *serve)


def channels_args(factory: str) -> tuple[str, ...]:
    """``python -m`` arguments of uvicorn serving a channels_redis_echo factory."""
    target = f"bench.apps.channels_redis_echo:{factory}"
    return ("uvicorn", target, "--factory", "--host", "127.0.0.1", "--log-level", LOG_LEVEL)


def deployment_specs(redis: RedisProcess) -> dict[str, DeploymentSpec]:
    """The four deployments of a round, each on its database of ``redis``."""

    def layer(name: str) -> str:
        return f"{redis.url(DATABASES[name])}?capacity={BIG_CAPACITY}"

    def server(name: str, args: tuple[str, ...]) -> ServerSpec:
        return ServerSpec(name, LABELS[name], args)

    split = layer("chanlite-split")
    return {
        "chanlite-redis": DeploymentSpec(
            server("chanlite-redis", chanlite_args(layer("chanlite-redis")))
        ),
        "chanlite-split": DeploymentSpec(
            server("chanlite-split", chanlite_args(split, "--no-worker")), split, WORKERS
        ),
        "channels-redis": DeploymentSpec(server("channels-redis", channels_args("core"))),
        "channels-pubsub": DeploymentSpec(server("channels-pubsub", channels_args("pubsub"))),
    }


@contextmanager
def environment(redis: RedisProcess) -> Iterator[None]:
    """The variables the servers read, set for this suite's child processes."""
    values = {
        "CHANLITE_SECRET_KEY": SECRET_KEY,
        CORE_ENV: redis.url(DATABASES["channels-redis"]),
        PUBSUB_ENV: redis.url(DATABASES["channels-pubsub"]),
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def start_deployment(
    spec: DeploymentSpec, *, cpu: int, log_dir: Path, redis: RedisProcess
) -> Deployment:
    """Start the server and its workers pinned to ``cpu``; return once it listens."""
    workers = [await start_worker(spec, index, cpu, log_dir) for index in range(spec.workers)]
    try:
        server = await start(spec.server, cpu=cpu, log_dir=log_dir)
    except BaseException:
        await stop_workers(workers)
        raise
    return Deployment(server, workers, redis)


async def start_worker(
    spec: DeploymentSpec, index: int, cpu: int, log_dir: Path
) -> tuple[asyncio.subprocess.Process, Path]:
    """One ``chanlite worker`` process on the deployment's layer."""
    assert spec.layer is not None
    log = log_dir / f"{spec.server.name}-worker{index}-{time.monotonic_ns()}.log"
    command = ["-m", "chanlite", "--log-level", LOG_LEVEL, "worker", CHANLITE_APP]
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            "--layer",
            spec.layer,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=pinned(cpu),
        )
    return process, log


async def stop_deployment(deployment: RunningServer) -> None:
    """Stop the server, then its workers (SIGTERM; SIGKILL if they hang)."""
    await stop(deployment)
    if isinstance(deployment, Deployment):
        await stop_workers(deployment.workers)


async def stop_workers(workers: list[tuple[asyncio.subprocess.Process, Path]]) -> None:
    for process, _ in workers:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    for process, _ in workers:
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()


# -- running the rounds ---------------------------------------------------------------


async def run(config: Config) -> list[Row]:
    """Every scenario on every deployment, then chanlite against each baseline."""
    sizes = QUICK_SIZES if config.quick else SIZES
    ensure_node()
    raise_fd_limit(max(sizes.rooms) * 2 + FD_HEADROOM)
    cpus = Cpus.pick()
    redis = await start_redis(cpus.server)
    try:
        with environment(redis):
            results = await measure(config, sizes, cpus, redis)
    finally:
        await stop_redis(redis)
    return rows(results)


async def measure(config: Config, sizes: Sizes, cpus: Cpus, redis: RedisProcess) -> Results:
    """Run ``config.rounds`` rounds; each measurement warms up on its own."""
    log_dir = Path(tempfile.mkdtemp(prefix="chanlite-ws-redis-bench-"))
    results = Results(sizes, config.rounds)
    where = f"servers and Redis on CPU {cpus.server}, load on CPU {cpus.load}"
    say(f"ws-redis: {where}; logs in {log_dir}")
    started = time.monotonic()
    for index in range(config.rounds):
        say(f"ws-redis: round {index + 1}/{config.rounds}")
        await run_round(Round(index, sizes, cpus, results, {}), log_dir, redis)
    say(f"ws-redis: {config.rounds} round(s) took {time.monotonic() - started:.0f}s")
    note = run_note(results)
    if note:
        say(f"ws-redis: failures and server warnings:\n{note}")
    return results


async def run_round(current: Round, log_dir: Path, redis: RedisProcess) -> None:
    """Start fresh deployments on emptied databases, run every scenario, stop them."""
    try:
        for name, spec in deployment_specs(redis).items():
            await redis.flush_db(DATABASES[name])
            current.servers[name] = await start_deployment(
                spec, cpu=current.cpus.server, log_dir=log_dir, redis=redis
            )
        for clients in current.sizes.echo_clients:
            await echo_phase(current, clients)
        for members in current.sizes.rooms:
            await fanout_phase(current, members)
    finally:
        for name, server in current.servers.items():
            await stop_deployment(server)
            current.results.log_problems[name].extend(server.log_problems())


async def echo_phase(current: Round, clients: int) -> None:
    """Closed-loop echo with ``clients`` clients on every deployment's ``/echo/``."""
    for server in current.rotated(list(DATABASES)):
        measure_one = partial(echo, current, Endpoint(server, server, "/echo/"), clients)
        await attempt(current, f"echo-{clients}", server, measure_one)


async def fanout_phase(current: Round, members: int) -> None:
    """Fan-out to a room of ``members`` on every deployment."""
    for server in current.rotated(list(DATABASES)):
        measure_one = partial(fanout, current, server, members)
        await attempt(current, f"fanout-{members}", server, measure_one)


# -- rows -------------------------------------------------------------------------------


def rows(results: Results) -> list[Row]:
    """Echo then fan-out rows: every chanlite deployment against every baseline."""
    pairs = [Versus(ours, theirs, BASELINE) for ours in CHANLITE for theirs in CHANNELS]
    table: list[Row] = []
    for clients in results.sizes.echo_clients:
        table += [echo_row(results, pair, clients) for pair in pairs]
        table += latency(results, f"echo-{clients}", f"echo, {clients:,} clients")
    for members in results.sizes.rooms:
        table += [fanout_row(results, pair, members) for pair in pairs]
        light = f"fan-out to {members:,}, {results.sizes.pace:.0f} broadcasts/s"
        table += latency(results, f"fanout-{members}", light, lost="light_lost")
    return table


def versus(pair: Versus) -> str:
    """``<chanlite deployment> vs <baseline layer>``, for row labels."""
    return f"{LABELS[pair.ours]} vs {LABELS[pair.theirs]}"


def echo_row(results: Results, pair: Versus, clients: int) -> Row:
    """Echoes per second; sockets the server closed are named and count as failures."""
    scenario = f"echo-{clients}"
    closed = results.total(scenario, pair.ours, "closed")
    baseline_closed = results.total(scenario, pair.theirs, "closed")
    note = (
        f" (closed by the server: {pair.count_note(results, scenario, 'closed')})"
        if closed or baseline_closed
        else ""
    )
    return row(
        results,
        f"echo, {clients:,} clients, {versus(pair)}{note}",
        "msg/s",
        Metric(scenario, "rate"),
        pair,
        target=ratio_target(ECHO_TARGETS.get(clients)),
        failures=closed,
    )


def fanout_row(results: Results, pair: Versus, members: int) -> Row:
    """Deliveries per second at flood, with lost deliveries counted as failures."""
    scenario = f"fanout-{members}"
    lost = pair.count_note(results, scenario, "flood_lost")
    return row(
        results,
        f"fan-out to {members:,}, flood, {versus(pair)} (lost: {lost})",
        "deliveries/s",
        Metric(scenario, "flood_rate"),
        pair,
        target=ratio_target(FANOUT_TARGETS.get(members)),
        failures=results.total(scenario, pair.ours, "flood_lost"),
    )


def latency(results: Results, scenario: str, label: str, lost: str | None = None) -> list[Row]:
    """p50 and p99 rows of each chanlite deployment against :data:`LATENCY_BASELINE`."""
    table: list[Row] = []
    for ours in CHANLITE:
        pair = Versus(ours, LATENCY_BASELINE, BASELINE)
        note = f" (lost: {pair.count_note(results, scenario, lost)})" if lost else ""
        table += latency_rows(results, scenario, f"{label}, {versus(pair)}{note}", pair)
    return table
