"""Suite ``ws-observability``: what chanlite's metrics and tracing cost a WebSocket app.

Four ``chanlite serve bench.apps.chanlite_observed:app`` processes run side by side in
every round, fresh each round, pinned to the server CPU, one per variant of
:mod:`bench.apps.chanlite_observed` (chosen by its environment variable):

* ``off``: observability off, the baseline;
* ``metrics``: ``metrics=True, health=True``;
* ``tracing``: ``tracing=True`` with the OpenTelemetry SDK sampling every trace
  (parent-based always-on), spans batched and dropped instead of exported;
* ``tracing-sampled``: the same with a parent-based ratio sampler at 0.1.

Each is on ``memory://`` at :data:`bench.ws.BIG_CAPACITY`, as ``ws-channels``' fan-out
server. The scenarios are :mod:`bench.ws`'s: the closed-loop echo with 50 clients
(as ``ws-decorators``) and the fan-out to a room of 1,000 (as ``ws-channels``: light
pace, then flood), each run on every variant in an order that rotates from round to
round. After a round's measurements each server is checked to be the variant it
claims: ``/metrics`` and ``/healthz`` answer on the metrics variant only, and each
tracing variant's exporter saw spans.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from .apps.chanlite_observed import (
    METRICS,
    OFF,
    SAMPLED_RATIO,
    TRACING,
    TRACING_SAMPLED,
    VARIANT_ENV,
)
from .apps.otel_sdk import exported_spans
from .core import Config, Row, check
from .ws import (
    ATTEMPTS,
    BIG_CAPACITY,
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
    fanout,
    run_note,
    say,
)
from .ws_load import ensure_node
from .ws_rows import Metric, Versus, latency_rows, ratio_target, row
from .ws_servers import LOG_LEVEL, Cpus, RunningServer, ServerSpec, raise_fd_limit, start, stop

NAME = "ws-observability"
TITLE = "WebSocket echo and fan-out with chanlite's metrics and tracing on"
BASELINE = "off"

#: The app every server serves; the variant comes from its environment variable.
APP = "bench.apps.chanlite_observed:app"
LAYER = f"memory://?capacity={BIG_CAPACITY}"
#: Closed-loop clients of the echo, and members of the fan-out room.
CLIENTS = 50
MEMBERS = 1_000
ECHO = f"echo-{CLIENTS}"
FANOUT = f"fanout-{MEMBERS}"
#: Variant -> row label.
VARIANTS: dict[str, str] = {
    OFF: "observability off",
    METRICS: "`metrics=True, health=True`",
    TRACING: "`tracing=True`, every trace sampled",
    TRACING_SAMPLED: f"`tracing=True`, {SAMPLED_RATIO:.0%} of traces sampled",
}
#: Targets from the issue, as ratios to the off variant in the same run (echo rate
#: and fan-out deliveries alike).
TARGETS = {METRICS: 0.95, TRACING: 0.85}
#: A metric that the metrics variant's ``/metrics`` must list.
METRIC_NAME = "chanlite_websocket_frames_received_total"

SIZES = replace(FULL, echo_clients=(CLIENTS,), rooms=(MEMBERS,))
QUICK_SIZES = replace(QUICK, echo_clients=(CLIENTS,), rooms=(MEMBERS,))

DESCRIPTION = (
    "One app, `bench/apps/chanlite_observed.py` (the `async def` echo and the "
    "`Group(...).send` rooms of `bench/apps/chanlite_echo.py`), in four variants: "
    "observability off (the baseline); `metrics=True, health=True`; `tracing=True` "
    "with the OpenTelemetry SDK configured in the app module as a deployment would "
    "(`bench/apps/otel_sdk.py`: a `TracerProvider` with the default sampler, "
    "parent-based always-on, and a `BatchSpanProcessor` at its defaults feeding an "
    "exporter that drops every batch, so spans are created, recorded and batched but "
    "export costs nothing); and the same with `ParentBased(TraceIdRatioBased"
    f"({SAMPLED_RATIO}))`. The load generator sends no trace context, so every socket "
    "is a root: the sampled variant samples about one socket in ten, and a fan-out "
    "round, whose broadcasts all come from one socket, is traced all or not at all "
    "(mostly not: that row is mainly the cost of unsampled context). Nothing scrapes "
    "`/metrics` during the timed windows. *Setup.* Each measured round starts four "
    "fresh `chanlite serve` processes, one per variant, all on "
    f"`memory://?capacity={BIG_CAPACITY}` (the fan-out server of ws-channels) with a "
    "fixed `secret_key`, uvicorn's defaults and log level `warning`, pinned to the "
    "benchmark's CPU; the Node `ws` load generator (`bench/node/load.mjs`, no "
    "compression) runs on the other CPU. *Echo*: "
    f"{CLIENTS} closed-loop clients each send {SIZES.payload_bytes} bytes and wait for "
    f"the echo; after a {SIZES.echo_warmup:g} s warm-up, echoes per second and "
    f"round-trip latency over {SIZES.echo_seconds:g} s. *Fan-out* (as in ws-channels): "
    f"a room of {MEMBERS:,} sockets, the first of which sends every broadcast and all "
    "of which receive it; latency from send to each delivery at "
    f"{SIZES.pace:g} broadcasts/s for {SIZES.pace_seconds:g} s, then deliveries per "
    f"second at flood ({SIZES.flood_window} broadcasts in flight, counted over "
    f"{SIZES.flood_seconds:g} s after a {SIZES.flood_warmup:g} s warm-up), and lost "
    "deliveries summed over the rounds. Each scenario runs on the variants in turn, in "
    "an order that rotates each round; a measurement during which other processes "
    f"took more than {MAX_OTHERS:.0%} of either CPU is repeated, up to {ATTEMPTS} "
    "times in all, and the least disturbed one counts. After its measurements each "
    "server is checked: `/metrics` and `/healthz` answer on the metrics variant and "
    "nowhere else, and the tracing variants' exporters saw spans. *Server CPU per "
    "echo* and *per delivery* are the server's CPU time in the timed window over the "
    "echoes or deliveries in it. Ratio = variant median / off median (the off rows are "
    "their own baseline); a row that counts losses or closed sockets meets its target "
    "only if the variant had none. Latency and CPU are costs: lower is better, and "
    "their best column is the lowest round."
)


# -- servers --------------------------------------------------------------------------


def server_spec(variant: str) -> ServerSpec:
    """``chanlite serve bench.apps.chanlite_observed:app`` as ``variant``."""
    serve = ("serve", APP, "--host", "127.0.0.1", "--layer", LAYER)
    return ServerSpec(
        variant,
        VARIANTS[variant],
        ("chanlite", "--log-level", LOG_LEVEL, *serve),
        env=((VARIANT_ENV, variant),),
    )


# -- running the rounds ---------------------------------------------------------------


async def run(config: Config) -> list[Row]:
    """Echo and fan-out on every variant, then each variant against the off one."""
    sizes = QUICK_SIZES if config.quick else SIZES
    ensure_node()
    raise_fd_limit(MEMBERS * 2 + FD_HEADROOM)
    return rows(await measure(config, sizes, Cpus.pick()))


async def measure(config: Config, sizes: Sizes, cpus: Cpus) -> Results:
    """Run ``config.rounds`` rounds; each measurement warms up on its own."""
    log_dir = Path(tempfile.mkdtemp(prefix=f"chanlite-{NAME}-bench-"))
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
    """Start a fresh server per variant, run both scenarios on each in rotated order,
    check that each server is the variant it claims, stop them."""
    try:
        for variant in VARIANTS:
            current.servers[variant] = await start(
                server_spec(variant), cpu=current.cpus.server, log_dir=log_dir
            )
        for variant in current.rotated(list(VARIANTS)):
            await attempt(current, ECHO, variant, partial(echo_with_cpu_cost, current, variant))
        for variant in current.rotated(list(VARIANTS)):
            measure_one = partial(fanout_with_cpu_cost, current, variant)
            await attempt(current, FANOUT, variant, measure_one)
        for variant, server in current.servers.items():
            await check_endpoints(variant, server)
    finally:
        for variant, server in current.servers.items():
            await stop(server)
            current.results.log_problems[variant].extend(server.log_problems())
    for variant in (TRACING, TRACING_SAMPLED):
        check_spans(variant, current.servers[variant])


async def echo_with_cpu_cost(current: Round, variant: str) -> Metrics:
    """:func:`bench.ws.echo` on ``variant``, plus the server's CPU µs per echo."""
    metrics = await echo(current, Endpoint(variant, variant, "/echo/"), CLIENTS)
    return with_cpu_cost(metrics, "rate", "cpu_us_per_echo")


async def fanout_with_cpu_cost(current: Round, variant: str) -> Metrics:
    """:func:`bench.ws.fanout` on ``variant``, plus the server's CPU µs per delivery
    at flood."""
    metrics = await fanout(current, variant, MEMBERS)
    return with_cpu_cost(metrics, "flood_rate", "cpu_us_per_delivery")


def with_cpu_cost(metrics: Metrics, rate: str, name: str) -> Metrics:
    """``metrics`` with ``name``: the window's server CPU µs per ``rate`` operation."""
    if "server_cpu" in metrics and metrics[rate] > 0:
        metrics[name] = metrics["server_cpu"] / metrics[rate] * 1e6
    return metrics


# -- checking the variants --------------------------------------------------------------


async def check_endpoints(variant: str, server: RunningServer) -> None:
    """``/metrics`` (listing :data:`METRIC_NAME`) and ``/healthz`` answer 200 on the
    metrics variant, and neither does anywhere else."""
    switched_on = variant == METRICS
    for path, expected in (("/metrics", METRIC_NAME), ("/healthz", "ok")):
        status, body = await http_get(server, path)
        answered = status == 200 and expected in body
        check(
            answered == switched_on,
            f"{variant}: GET {path} answered {status} {body[:80]!r}; "
            f"expected {'200 with ' + repr(expected) if switched_on else 'no 200'}",
        )


async def http_get(server: RunningServer, path: str) -> tuple[int, str]:
    """The status and body of ``GET path`` on ``server`` (one request, then close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("ascii"))
        response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split(b" ", 2)
    check(len(status_line) > 1, f"GET {path}: no HTTP response ({response[:80]!r})")
    return int(status_line[1]), body.decode(errors="replace")


def check_spans(variant: str, server: RunningServer) -> None:
    """The stopped server's exporter reported spans in its log."""
    spans = exported_spans(server.log.read_text(errors="replace"))
    check(spans is not None, f"{variant}: no span count in {server.log} (killed at stop?)")
    check(bool(spans), f"{variant}: tracing on, but no span was exported")
    say(f"  {variant}: {spans:,} spans exported")


# -- rows -------------------------------------------------------------------------------


def rows(results: Results) -> list[Row]:
    """Echo rows, then fan-out rows, of every variant against the off variant."""
    table: list[Row] = []
    for variant in VARIANTS:
        table += echo_rows(results, variant)
    for variant in VARIANTS:
        table += fanout_rows(results, variant)
    return table


def echo_rows(results: Results, variant: str) -> list[Row]:
    """Echoes per second (sockets the server closed count as failures), latency and
    CPU per echo."""
    pair = Versus(variant, OFF, BASELINE)
    name = f"echo, {CLIENTS} clients, {VARIANTS[variant]}"
    closed = results.total(ECHO, variant, "closed")
    note = f" (closed by the server: {closed:,})" if closed else ""
    rate = row(
        results,
        name + note,
        "msg/s",
        Metric(ECHO, "rate"),
        pair,
        target=ratio_target(TARGETS.get(variant)),
        failures=closed,
    )
    cpu = Metric(ECHO, "cpu_us_per_echo", cost=True)
    return [
        rate,
        *latency_rows(results, ECHO, name, pair),
        row(results, f"{name}: server CPU per echo", "µs", cpu, pair),
    ]


def fanout_rows(results: Results, variant: str) -> list[Row]:
    """Deliveries per second at flood (lost ones count as failures), light-pace
    latency and CPU per delivery."""
    sizes = results.sizes
    pair = Versus(variant, OFF, BASELINE)
    label = f"fan-out to {MEMBERS:,}, {VARIANTS[variant]}"
    lost = results.total(FANOUT, variant, "flood_lost")
    rate = row(
        results,
        f"{label}, flood ({sizes.flood_window} broadcasts in flight; lost: {lost:,})",
        "deliveries/s",
        Metric(FANOUT, "flood_rate"),
        pair,
        target=ratio_target(TARGETS.get(variant)),
        failures=lost,
    )
    light_lost = results.total(FANOUT, variant, "light_lost")
    light = f"{label}, {sizes.pace:.0f} broadcasts/s (lost: {light_lost:,})"
    cpu = Metric(FANOUT, "cpu_us_per_delivery", cost=True)
    return [
        rate,
        *latency_rows(results, FANOUT, light, pair),
        row(results, f"{label}, flood: server CPU per delivery", "µs", cpu, pair),
    ]
