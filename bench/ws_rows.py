"""Table rows of the ``ws-*`` suites, from :class:`bench.ws.Results`.

Rows compare one chanlite target with one baseline target. Latency and memory are
costs: :class:`CostStats` makes the lowest round the best, and a :class:`Ceiling`
target holds when chanlite's median is at most a multiple of the baseline's. A
:class:`WsRow`'s target also needs chanlite to have lost or refused nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .core import BenchmarkError, Row, Stats, Target
from .ws import (
    ATTEMPTS,
    BIG_CAPACITY,
    FULL,
    MAX_OTHERS,
    MEMORY_WARMUP_SOCKETS,
    QUICK,
    SERVERS,
    Results,
    Sizes,
)


@dataclass(frozen=True)
class CostStats(Stats):
    """Stats of a cost (latency, memory): the best round is the lowest."""

    cost: ClassVar[bool] = True

    @property
    def best(self) -> float:
        """The lowest value: the least disturbed round."""
        return min(self.rates)


@dataclass(frozen=True)
class Ceiling(Target):
    """A goal on a cost: chanlite's median at most ``maximum`` times the baseline's."""

    maximum: float = 1.0

    def describe(self, unit: str) -> str:
        """The goal as a table cell."""
        return f"ratio ≤ {self.maximum:.2f}"


def ceiling(maximum: float) -> Ceiling:
    """A :class:`Ceiling` target."""
    return Ceiling(minimum=0.0, on_ratio=True, maximum=maximum)


@dataclass(frozen=True)
class WsRow(Row):
    """A row whose target also needs chanlite to have failed nothing (no lost
    deliveries, no refused connections) in any round; costs take a :class:`Ceiling`."""

    failures: int = 0

    @property
    def target_holds(self) -> bool | None:
        """Whether the target holds on medians, with no chanlite failures."""
        if self.target is None:
            return None
        if isinstance(self.target, Ceiling):
            ratio = self.ratio
            holds = ratio is not None and ratio <= self.target.maximum
        else:
            holds = bool(super().target_holds)
        return holds and self.failures == 0


@dataclass(frozen=True)
class Metric:
    """Where a row's numbers come from: a scenario and a metric of it."""

    scenario: str
    name: str
    cost: bool = False


def stats(results: Results, metric: Metric, target: str) -> Stats | None:
    """The rounds' values of ``metric`` for ``target``; ``None`` if it has none."""
    values = tuple(results.values(metric.scenario, target, metric.name))
    if not values:
        return None
    return CostStats(values) if metric.cost else Stats(values)


@dataclass(frozen=True)
class Versus:
    """A chanlite target, the baseline target it is compared with, and the baseline's
    name in row labels."""

    ours: str
    theirs: str
    label: str

    def count_note(self, results: Results, scenario: str, metric: str) -> str:
        """``chanlite N, <baseline> M``: a count summed over the rounds."""
        ours = results.total(scenario, self.ours, metric)
        theirs = results.total(scenario, self.theirs, metric)
        return f"chanlite {ours:,}, {self.label} {theirs:,}"


def row(
    results: Results,
    name: str,
    unit: str,
    metric: Metric,
    pair: Versus,
    *,
    target: Target | None = None,
    failures: int = 0,
) -> Row:
    """A chanlite-vs-baseline row; raises if chanlite has no value for it."""
    chanlite = stats(results, metric, pair.ours)
    if chanlite is None:
        errors = results.failures.get((metric.scenario, pair.ours), ["no successful round"])
        raise BenchmarkError(f"{pair.ours} has no {metric.name} in {metric.scenario}: {errors[-1]}")
    baseline = stats(results, metric, pair.theirs)
    return WsRow(name, unit, chanlite, baseline, target, failures)


def ratio_target(goal: float | None) -> Target | None:
    """A minimum-ratio target, or none."""
    return Target(goal, on_ratio=True) if goal else None


def latency_rows(results: Results, scenario: str, label: str, pair: Versus) -> list[Row]:
    """p50 and p99 latency rows (µs, lower is better)."""
    return [
        row(
            results,
            f"{label}: {quantile} latency",
            "µs",
            Metric(scenario, f"{quantile}_us", cost=True),
            pair,
        )
        for quantile in ("p50", "p99")
    ]


def echo_rows(results: Results, pair: Versus, kind: str, targets: dict[int, float]) -> list[Row]:
    """Rate and latency rows of every echo client count. Sockets the server closed
    mid-run (chanlite closes with 1013 a frame that waited 5 s for room on a full
    channel) are named in the rate row when there were any."""
    rows: list[Row] = []
    for clients in results.sizes.echo_clients:
        scenario = f"echo-{clients}"
        label = f"echo, {clients:,} client{'s' if clients > 1 else ''}, {kind}"
        closed = results.total(scenario, pair.ours, "closed")
        baseline_closed = results.total(scenario, pair.theirs, "closed")
        note = (
            f" (closed by the server: {pair.count_note(results, scenario, 'closed')})"
            if closed or baseline_closed
            else ""
        )
        rows.append(
            row(
                results,
                label + note,
                "msg/s",
                Metric(scenario, "rate"),
                pair,
                target=ratio_target(targets.get(clients)),
                failures=closed,
            )
        )
        rows += latency_rows(results, scenario, label, pair)
    return rows


def fanout_rows(results: Results, pair: Versus, targets: dict[int, float]) -> list[Row]:
    """Flood rate and light-pace latency rows of every room size."""
    sizes = results.sizes
    rows: list[Row] = []
    for members in sizes.rooms:
        scenario = f"fanout-{members}"
        lost = pair.count_note(results, scenario, "flood_lost")
        rows.append(
            row(
                results,
                f"fan-out to {members:,}, flood ({sizes.flood_window} broadcasts in flight; "
                f"lost: {lost})",
                "deliveries/s",
                Metric(scenario, "flood_rate"),
                pair,
                target=ratio_target(targets.get(members)),
                failures=results.total(scenario, pair.ours, "flood_lost"),
            )
        )
        light = pair.count_note(results, scenario, "light_lost")
        label = f"fan-out to {members:,}, {sizes.pace:.0f} broadcasts/s (lost: {light})"
        rows += latency_rows(results, scenario, label, pair)
    return rows


def default_capacity_row(results: Results, pair: Versus) -> Row:
    """How much of a light-pace fan-out to the largest room chanlite's default
    capacity delivers, next to the baseline."""
    members = max(results.sizes.rooms)
    return row(
        results,
        f"fan-out to {members:,} at chanlite's default capacity (100), "
        f"{results.sizes.pace:.0f} broadcasts/s: delivered",
        "%",
        Metric(f"fanout-{members}", "light_delivered_pct"),
        pair,
    )


def connect_rows(results: Results, pairs: list[Versus], goal: float | None) -> list[Row]:
    """Connects per second, one row per chanlite server."""
    sizes = results.sizes
    rows: list[Row] = []
    for pair in pairs:
        refused = pair.count_note(results, "connect", "failed")
        rows.append(
            row(
                results,
                f"connects, {sizes.connects:,} sockets, {sizes.connect_concurrency} in flight, "
                f"{SERVERS[pair.ours].label} (refused: {refused})",
                "conn/s",
                Metric("connect", "rate"),
                pair,
                target=ratio_target(goal),
                failures=results.total("connect", pair.ours, "failed"),
            )
        )
    return rows


def memory_row(results: Results, pair: Versus, target: Target | None = None) -> Row:
    """Idle memory per connection (bytes, lower is better)."""
    return row(
        results,
        f"idle memory per connection, {results.sizes.idle:,} sockets (RSS delta / sockets)",
        "bytes",
        Metric("memory", "bytes_per_connection", cost=True),
        pair,
        target=target,
    )


def method(sizes: Sizes = FULL, quick: Sizes = QUICK) -> str:
    """How the ws suites measure, for their sections of docs/benchmarks.md."""
    setup = (
        "*Setup.* Each measured round starts fresh server processes, all pinned to the "
        "benchmark's CPU, with uvicorn's defaults (`loop`, `http`, `ws` = `auto`; log "
        "level `warning`): `chanlite serve bench.apps.chanlite_echo:routes` (`memory://` "
        "at its defaults), a second chanlite with `--layer "
        f"memory://?capacity={BIG_CAPACITY}` (*capacity {BIG_CAPACITY:,}*), raw Starlette "
        "(`bench/apps/starlette_echo.py`) and Channels 4 with `InMemoryChannelLayer` "
        "(`bench/apps/channels_echo.py`), both under `uvicorn`. The load comes from Node "
        "and the `ws` package (`bench/node/load.mjs`, no compression) pinned to the other "
        "CPU. Every scenario runs on every server in turn, in an order that rotates each "
        "round; each number is per round, then best and median over the rounds (the run "
        "line's warm-up round is not run here: each measurement warms up on its own). "
        "A measurement during which other processes took more than "
        f"{MAX_OTHERS:.0%} of either CPU is repeated, up to {ATTEMPTS} times in all, and "
        "the least disturbed one counts; the console output shows every measurement's "
        "CPU use (server, load generator, other processes)."
    )
    scenarios = (
        f"*Echo*: N closed-loop clients each send {sizes.payload_bytes} bytes and wait "
        f"for the echo; after a {sizes.echo_warmup:g} s warm-up, echoes per second and "
        f"round-trip latency over {sizes.echo_seconds:g} s. *Fan-out*: a room of N "
        "sockets, the first of which sends every broadcast and all of which (the sender "
        "too) receive it; latency from send to each delivery at "
        f"{sizes.pace:g} broadcasts/s for {sizes.pace_seconds:g} s, then deliveries per "
        "second at flood (a new broadcast as soon as one has reached every member, "
        f"{sizes.flood_window} in flight, counted over {sizes.flood_seconds:g} s after "
        f"a {sizes.flood_warmup:g} s warm-up), and lost deliveries (expected minus "
        "received once traffic settles) summed over the rounds. chanlite's fan-out runs "
        f"at capacity {BIG_CAPACITY:,}, and the *default capacity* row checks the light "
        "pace on the default server too: a broadcast to all of a process's sockets needs "
        "no room in any channel (on `memory://` replies go straight to the interface; on "
        "other layers the reply queue `interface.*!` has a built-in capacity of "
        f"100,000). *Connects*: open {sizes.connects:,} sockets with "
        f"{sizes.connect_concurrency} handshakes in flight, then close them; refused "
        "handshakes are counted (a connect that meets a full `websocket.connect` waits "
        "for room, first come first served, and is refused with 503 only if it still "
        "does not fit after `websocket_connect_timeout`). *Idle memory*: VmRSS of the "
        "fresh server "
        f"before (after a {MEMORY_WARMUP_SOCKETS}-socket warm-up) and while holding "
        f"{sizes.idle:,} idle sockets, divided by the sockets. `--quick`: "
        f"{quick.echo_seconds:g} s windows and {quick.connects:,} sockets."
    )
    reading = (
        "*Reading the table.* Latency and memory are costs: lower is better, the best "
        "column is the lowest round, and their target is a ceiling on the ratio. A row "
        "that counts losses, refusals or closed sockets meets its target only if "
        "chanlite had none. Where the load generator's own CPU use nears a full core "
        "(raw Starlette's fan-out floods can get there), that number is a lower bound "
        "for the server."
    )
    return "\n\n".join((setup, scenarios, reading))
