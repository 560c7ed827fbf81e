"""Suite ``ws-decorators``: what ``@channel_session`` and ``@enforce_ordering`` cost an
``async def`` echo consumer over WebSocket.

Three ``chanlite serve`` processes run side by side in every round, fresh each round,
on ``memory://`` at its defaults and pinned to the server CPU, one per app of
:mod:`bench.apps.chanlite_decorated` (each variant in its own process, so that the
decorators of one app cannot slow another's worker):

* ``undecorated``: the plain echo, the baseline;
* ``channel_session``: the echo reads and increments a counter in
  ``message.channel_session``, so the session is loaded and saved once per message;
* ``enforce_ordering``: the echo under strict ``@enforce_ordering``.

The scenario is :mod:`bench.ws`'s closed-loop echo with 50 clients (the Node ``ws``
load generator pinned to the other CPU), run on each server in turn in an order that
rotates from round to round, with the same warm-up, window and repeat-if-disturbed
rule. Rows: echoes per second, p50 and p99 round-trip latency, and the server's CPU
time per echo, each variant against the undecorated echo of the same rounds.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from .apps.chanlite_decorated import ORDERED_PATH, PLAIN_PATH, SESSION_PATH
from .core import Config, Row
from .ws import (
    ATTEMPTS,
    FD_HEADROOM,
    FULL,
    MAX_OTHERS,
    QUICK,
    Endpoint,
    Metrics,
    Results,
    Round,
    Sizes,
    attempt,
    echo,
    run_note,
    say,
)
from .ws_load import ensure_node
from .ws_rows import Metric, Versus, latency_rows, ratio_target, row
from .ws_servers import LOG_LEVEL, Cpus, ServerSpec, raise_fd_limit, start, stop

NAME = "ws-decorators"
TITLE = "WebSocket echo under chanlite's decorators: channel_session and enforce_ordering"
BASELINE = "undecorated"

#: The app module whose ``plain``, ``session`` and ``ordered`` apps are served.
APP_MODULE = "bench.apps.chanlite_decorated"
#: Closed-loop clients of the echo.
CLIENTS = 50
SCENARIO = f"echo-{CLIENTS}"
#: Variant -> (app attribute, path, row label).
VARIANTS: dict[str, tuple[str, str, str]] = {
    "undecorated": ("plain", PLAIN_PATH, "no decorator"),
    "channel_session": ("session", SESSION_PATH, "`@channel_session` (save per message)"),
    "enforce_ordering": ("ordered", ORDERED_PATH, "`@enforce_ordering` (strict)"),
}
#: Targets from the issue, as ratios to the undecorated echo in the same run.
TARGETS = {"enforce_ordering": 0.65}

SIZES = replace(FULL, echo_clients=(CLIENTS,))
QUICK_SIZES = replace(QUICK, echo_clients=(CLIENTS,))

DESCRIPTION = (
    f"Closed-loop echo with {CLIENTS} clients through three `async def` echo consumers "
    "(`bench/apps/chanlite_decorated.py`): undecorated; under `@channel_session`, reading "
    "and incrementing a counter in `message.channel_session` so the session is loaded "
    "and saved on every message (its connect consumer, also under `@channel_session`, "
    "accepts and sets the counter to 0); and under strict `@enforce_ordering` (with "
    "chanlite's default connect, which is ordered). *Setup.* Each measured round starts "
    "three fresh `chanlite serve` processes, one per variant (an app with any ordered "
    "consumer consults its sequencer for every message, so the baseline gets an app of "
    "its own), all on `memory://` at its defaults (sessions and ordering state in the "
    "default in-memory store) with a fixed `secret_key`, uvicorn's defaults and log "
    "level `warning`, pinned to the benchmark's CPU; the Node `ws` load generator "
    "(`bench/node/load.mjs`, no compression) runs on the other CPU. Each client sends "
    f"{SIZES.payload_bytes} bytes and waits for the echo; after a {SIZES.echo_warmup:g} s "
    f"warm-up, echoes per second and round-trip latency over {SIZES.echo_seconds:g} s. "
    "The variants run in turn in an order that rotates each round; a measurement during "
    f"which other processes took more than {MAX_OTHERS:.0%} of either CPU is repeated, "
    f"up to {ATTEMPTS} times in all, and the least disturbed one counts. *Server CPU per "
    "echo* is the server's CPU time in the window over the echoes in it. Ratio = variant "
    "median / undecorated median (the undecorated row is its own baseline). Latency and "
    "CPU per echo are costs: lower is better, and their best column is the lowest round."
)


# -- servers --------------------------------------------------------------------------


def server_spec(variant: str) -> ServerSpec:
    """``chanlite serve bench.apps.chanlite_decorated:APP`` on ``memory://``."""
    app, _, label = VARIANTS[variant]
    serve = ("serve", f"{APP_MODULE}:{app}", "--host", "127.0.0.1")
    return ServerSpec(variant, label, ("chanlite", "--log-level", LOG_LEVEL, *serve))


def endpoint(variant: str) -> Endpoint:
    """The echo endpoint of ``variant`` (its server and path)."""
    return Endpoint(variant, variant, VARIANTS[variant][1])


# -- running the rounds ---------------------------------------------------------------


async def run(config: Config) -> list[Row]:
    """The echo on every variant, then each variant against the undecorated one."""
    sizes = QUICK_SIZES if config.quick else SIZES
    ensure_node()
    raise_fd_limit(CLIENTS * len(VARIANTS) + FD_HEADROOM)
    return rows(await measure(config, sizes, Cpus.pick()))


async def measure(config: Config, sizes: Sizes, cpus: Cpus) -> Results:
    """Run ``config.rounds`` rounds; each measurement warms up on its own."""
    log_dir = Path(tempfile.mkdtemp(prefix="chanlite-ws-decorators-bench-"))
    results = Results(sizes, config.rounds)
    say(f"{NAME}: servers on CPU {cpus.server}, load on CPU {cpus.load}; logs in {log_dir}")
    started = time.monotonic()
    for index in range(config.rounds):
        say(f"{NAME}: round {index + 1}/{config.rounds}")
        await run_round(Round(index, sizes, cpus, results, {}), log_dir)
    say(f"{NAME}: {config.rounds} round(s) took {time.monotonic() - started:.0f}s")
    note = run_note(results)
    if note:
        say(f"{NAME}: failures and server warnings:\n{note}")
    return results


async def run_round(current: Round, log_dir: Path) -> None:
    """Start a fresh server per variant, echo on each in rotated order, stop them."""
    try:
        for variant in VARIANTS:
            current.servers[variant] = await start(
                server_spec(variant), cpu=current.cpus.server, log_dir=log_dir
            )
        for variant in current.rotated(list(VARIANTS)):
            measure_one = partial(echo_with_cpu_cost, current, variant)
            await attempt(current, SCENARIO, variant, measure_one)
    finally:
        for variant, server in current.servers.items():
            await stop(server)
            current.results.log_problems[variant].extend(server.log_problems())


async def echo_with_cpu_cost(current: Round, variant: str) -> Metrics:
    """:func:`bench.ws.echo` on ``variant``, plus the server's CPU µs per echo."""
    metrics = await echo(current, endpoint(variant), CLIENTS)
    if "server_cpu" in metrics and metrics["rate"] > 0:
        metrics["cpu_us_per_echo"] = metrics["server_cpu"] / metrics["rate"] * 1e6
    return metrics


# -- rows -------------------------------------------------------------------------------


def rows(results: Results) -> list[Row]:
    """Per variant: echo rate (with the target), latency and CPU per echo."""
    table: list[Row] = []
    for variant, (_, _, label) in VARIANTS.items():
        pair = Versus(variant, "undecorated", BASELINE)
        name = f"echo, {CLIENTS} clients, {label}"
        table.append(rate_row(results, pair, name, variant))
        table += latency_rows(results, SCENARIO, name, pair)
        table.append(
            row(
                results,
                f"{name}: server CPU per echo",
                "µs",
                Metric(SCENARIO, "cpu_us_per_echo", cost=True),
                pair,
            )
        )
    return table


def rate_row(results: Results, pair: Versus, name: str, variant: str) -> Row:
    """Echoes per second; sockets the server closed are named and count as failures."""
    closed = results.total(SCENARIO, pair.ours, "closed")
    note = f" (closed by the server: {closed:,})" if closed else ""
    return row(
        results,
        name + note,
        "msg/s",
        Metric(SCENARIO, "rate"),
        pair,
        target=ratio_target(TARGETS.get(variant)),
        failures=closed,
    )
