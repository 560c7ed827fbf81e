"""Before and after at once: ``python -m bench.paired --baseline DIR --candidate DIR``.

``bench.compare`` runs one side's suites, then the other's, minutes apart. On a machine
whose speed drifts (a shared host, a CPU that changes its clock), the same commit then
measures several percent apart from one run to the next: more than the difference a
change to the runtime makes. This benchmark measures both sides at the same moment:

* every round starts one ``chanlite serve`` per side, both pinned to this process's
  CPU, and one Node load generator per side (``bench/node/load.mjs``), both on the
  other CPU, started together with the same scenario: a closed-loop echo, a room
  of 1,000 sockets flooded with broadcasts (10 in flight), or 2,000 handshakes (200
  in flight);
* a side's figure is its server's CPU time per echo, per delivery or per handshake,
  over its timed window. The two servers share one CPU, so throughput is not
  compared: each gets about half;
* worker dispatch runs ``bench.dispatch``'s round (50,000 no-op ``async def``
  messages through a ``Worker``) in one process per side, both at once on this
  process's CPU; the figure is the process's CPU time per message;
* the ratio is candidate / baseline within one round; the table gives each side's
  median and the median ratio over the rounds (lower is better: a row holds when the
  candidate costs at most 5% more).

Whatever slows the machine in a round slows both sides alike. As in ``bench.compare``,
``bench`` is the candidate's, copied into a temporary directory, so both sides serve
the same apps; each side's servers import that side's ``chanlite``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .compare import DOCS, Side, check_imports, harness, side_env
from .comparison import TOLERANCE, CompareError
from .environment import cpu_model
from .report import end_marker, markdown_table, replace_section, start_marker
from .ws_load import LoadError, ensure_node, run_load
from .ws_servers import (
    LOG_LEVEL,
    Cpus,
    RunningServer,
    ServerSpec,
    pinned,
    raise_fd_limit,
    start,
    stop,
)

#: The docs section's marker name and heading.
SECTION = "paired"
TITLE = "Before and after, at the same moment: server CPU per echo and per delivery"
DEFAULT_ROUNDS = 5
#: Seconds of warm-up, then of timed window, per round.
WARMUP, WINDOW = 2.0, 6.0
#: Handshakes each load generator keeps in flight while opening its sockets.
SETUP_CONCURRENCY = 50
PAYLOAD_BYTES = 32
#: Client source addresses (127.0.0.N) each load generator spreads its sockets over.
ADDRESSES = 8
#: The fan-out room: its members, and the broadcasts kept in flight.
MEMBERS, FLOOD_WINDOW = 1_000, 10
#: A layer with room for a flood's deliveries (the ws-channels fan-out server's).
FANOUT_LAYER = "memory://?capacity=20000"
#: Handshakes per connects round, and how many are in flight (as in ws-channels).
CONNECTS, CONNECT_CONCURRENCY = 2_000, 200
#: Messages per dispatch round, after a warm-up round of a tenth as many.
DISPATCHED = 50_000
# What a side's dispatch process runs: bench.dispatch's round, timed in CPU time.
_DISPATCH_CODE = """
import asyncio, sys, time
from bench.dispatch import async_noop, dispatch_round
async def main(count):
    await dispatch_round(async_noop, count // 10)
    sample = await dispatch_round(async_noop, count, clock=time.process_time)
    print(sample.seconds / sample.count * 1e6)
asyncio.run(main(int(sys.argv[1])))
"""


@dataclass(frozen=True)
class Scenario:
    """One scenario: what each side serves, where, to how many clients, and its
    ``kind``: ``echo``, ``fanout`` (a flooded room whose every member is a client),
    ``connect`` (``clients`` handshakes) or ``dispatch`` (no server)."""

    label: str
    #: The ``module:attribute`` that ``chanlite serve`` serves.
    target: str
    path: str
    clients: int
    kind: str = "echo"


def _echo(label: str, target: str, path: str) -> list[Scenario]:
    return [
        Scenario(f"echo, {n} client{'s' if n > 1 else ''}, {label}", target, path, n)
        for n in (1, 50, 500)
    ]


_ECHO_APP = "bench.apps.chanlite_echo"
_DECORATED_APP = "bench.apps.chanlite_decorated"
SCENARIOS = (
    *_echo("async", f"{_ECHO_APP}:routes", "/echo/"),
    *_echo("sync", f"{_ECHO_APP}:routes", "/sync-echo/"),
    *_echo("async, connect consumer", f"{_ECHO_APP}:accepting_routes", "/echo/"),
    Scenario(
        "echo, 50 clients, `@channel_session`", f"{_DECORATED_APP}:session", "/session-echo/", 50
    ),
    Scenario(
        "echo, 50 clients, `@enforce_ordering`", f"{_DECORATED_APP}:ordered", "/ordered-echo/", 50
    ),
    Scenario(
        "fan-out to 1,000, flood (µs per delivery)",
        f"{_ECHO_APP}:routes",
        "/room/paired/",
        MEMBERS,
        kind="fanout",
    ),
    Scenario(
        "connects, 2,000 sockets, 200 in flight (µs per handshake)",
        f"{_ECHO_APP}:routes",
        "/echo/",
        CONNECTS,
        kind="connect",
    ),
    Scenario(
        "connects, 2,000 sockets, 200 in flight, connect consumer (µs per handshake)",
        f"{_ECHO_APP}:accepting_routes",
        "/echo/",
        CONNECTS,
        kind="connect",
    ),
    Scenario("worker dispatch, `async def` no-op (µs per message)", "", "", 0, kind="dispatch"),
)


@dataclass
class Outcome:
    """One scenario's figures, round by round: µs of server CPU per echo (or
    delivery), per side."""

    baseline: list[float] = field(default_factory=list)
    candidate: list[float] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        """Candidate / baseline, per round."""
        return [c / b for b, c in zip(self.baseline, self.candidate, strict=True)]

    def row(self, scenario: Scenario) -> list[str]:
        """The scenario's table row."""
        ratio = statistics.median(self.ratios)
        spread = f"{min(self.ratios):.3f} to {max(self.ratios):.3f}"
        holds = "yes" if ratio <= 1 + TOLERANCE else "**no**"
        medians = [f"{statistics.median(side):.1f}" for side in (self.baseline, self.candidate)]
        return [scenario.label, *medians, f"{ratio:.3f}x", spread, holds]


def server_spec(side: Side, home: Path, scenario: Scenario) -> ServerSpec:
    """``chanlite serve TARGET`` importing the harness's ``bench`` and the side's
    ``chanlite``."""
    layer = ("--layer", FANOUT_LAYER) if scenario.kind == "fanout" else ()
    serve = ("serve", scenario.target, "--host", "127.0.0.1", *layer)
    args = ("chanlite", "--log-level", LOG_LEVEL, *serve)
    env = (("PYTHONPATH", side_env(home, side)["PYTHONPATH"]),)
    return ServerSpec(side.role, side.role, args, env)


def load_spec(server: RunningServer, scenario: Scenario) -> dict[str, object]:
    """The load.mjs spec of one side's echo, flooded room or handshakes."""
    common = {"url": server.url(scenario.path), "concurrency": SETUP_CONCURRENCY}
    timing = {"warmup": WARMUP, "duration": WINDOW, "addresses": ADDRESSES}
    if scenario.kind == "connect":
        connects = {"scenario": "connect", "total": scenario.clients}
        return {**common, **connects, "concurrency": CONNECT_CONCURRENCY, "addresses": ADDRESSES}
    if scenario.kind == "echo":
        echo = {"scenario": "echo", "clients": scenario.clients, "payload_bytes": PAYLOAD_BYTES}
        return {**common, **timing, **echo}
    light = {"pace": 20.0, "probe_seconds": 0.5, "pace_seconds": 1.0, "stall_seconds": 3.0}
    room = {"scenario": "fanout", "members": scenario.clients, "window": FLOOD_WINDOW}
    return {**common, **timing, **light, **room, "flood": True}


async def cpu_per_unit(server: RunningServer, scenario: Scenario, cpus: Cpus) -> float:
    """µs of the server's CPU per echo (delivery, handshake) in one timed window."""
    result = await run_load(load_spec(server, scenario), cpus=cpus, server=server)
    values = result.values
    if scenario.kind == "fanout":
        failed, rate = values["flood_lost"] or values["flood_stalled"], values["flood_rate"]
    elif scenario.kind == "connect":
        failed, rate = values["failed"], values["rate"]
    else:
        failed, rate = values["wrong"] or values["stalled"], values["rate"]
    if failed or result.server_cpu is None:
        raise LoadError(f"{server.spec.name}: wrong or lost messages, or stalled: {values}")
    return result.server_cpu / float(rate) * 1e6


async def one_round(
    sides: list[Side], home: Path, scenario: Scenario, cpus: Cpus, log_dir: Path
) -> list[float]:
    """Both sides' µs per echo (delivery, handshake, message), measured at once."""
    if scenario.kind == "dispatch":
        return list(await asyncio.gather(*(dispatch_cpu(side, home, cpus) for side in sides)))
    servers = [
        await start(server_spec(side, home, scenario), cpu=cpus.server, log_dir=log_dir, cwd=home)
        for side in sides
    ]
    try:
        return list(await asyncio.gather(*(cpu_per_unit(s, scenario, cpus) for s in servers)))
    finally:
        for server in servers:
            await stop(server)


async def dispatch_cpu(side: Side, home: Path, cpus: Cpus) -> float:
    """µs of CPU per message of one side's dispatch process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _DISPATCH_CODE,
        str(DISPATCHED),
        cwd=home,
        env=side_env(home, side),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=pinned(cpus.server),
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise LoadError(f"dispatch on the {side.role} failed:\n{err.decode(errors='replace')}")
    return float(out)


async def measure(sides: list[Side], rounds: int) -> dict[Scenario, Outcome]:
    """Every scenario, ``rounds`` times, the sides starting in turn."""
    outcomes = {scenario: Outcome() for scenario in SCENARIOS}
    cpus = Cpus.pick()
    with harness(sides[1].root) as home, tempfile.TemporaryDirectory() as logs:
        for side in sides:
            check_imports(home, side)
        for index in range(rounds):
            for scenario in SCENARIOS:
                order = sides if index % 2 == 0 else sides[::-1]
                figures = await one_round(order, home, scenario, cpus, Path(logs))
                by_role = {side.role: value for side, value in zip(order, figures, strict=True)}
                outcome = outcomes[scenario]
                outcome.baseline.append(by_role["baseline"])
                outcome.candidate.append(by_role["candidate"])
                ratio = by_role["candidate"] / by_role["baseline"]
                print(f"round {index + 1}/{rounds}: {scenario.label}: {ratio:.3f}", flush=True)
    return outcomes


def section(outcomes: dict[Scenario, Outcome], commits: tuple[str, str], rounds: int) -> str:
    """The docs section, markers included."""
    header = [
        "Scenario",
        f"`{commits[0]}` µs",
        f"`{commits[1]}` µs",
        "Ratio (median)",
        "Ratio (range)",
        "Holds",
    ]
    table = markdown_table(header, [outcome.row(s) for s, outcome in outcomes.items()])
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    python = f"{platform.python_implementation()} {platform.python_version()}"
    about = (
        f"Baseline `{commits[0]}` against candidate `{commits[1]}`, both served at the same "
        "moment on one CPU and loaded together from the other (`bench/paired.py` says "
        "how). µs: the server's CPU time per echo (per delivery, per handshake; for "
        "dispatch, the process's per message), median over the rounds; ratio = "
        f"candidate / baseline within each round (a row holds at most {1 + TOLERANCE:.2f})."
    )
    run = (
        f"Run {date} with `python -m bench.paired --baseline DIR --candidate DIR --rounds "
        f"{rounds}`: {python}, {os.cpu_count()} cores ({cpu_model()}), servers on CPU "
        f"{Cpus.pick().server}, uvicorn's defaults, the memory layer at its defaults (at "
        f"`{FANOUT_LAYER}` for the fan-out)."
    )
    parts = [f"## {TITLE}", "", about, "", table, "", run]
    return "\n".join([start_marker(SECTION), *parts, end_marker(SECTION)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.paired", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--baseline", type=Path, required=True, metavar="DIR")
    parser.add_argument("--candidate", type=Path, required=True, metavar="DIR")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--write", action="store_true", help="update the docs file")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the Markdown file to update")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure both checkouts at once; return the exit status."""
    args = parse_args(argv)
    ensure_node()
    raise_fd_limit(4 * max(s.clients for s in SCENARIOS))
    try:
        sides = [Side.at("baseline", args.baseline), Side.at("candidate", args.candidate)]
        outcomes = asyncio.run(measure(sides, args.rounds))
    except (CompareError, LoadError) as exc:
        print(f"\nbench.paired: {exc}", file=sys.stderr)
        return 1
    text = section(outcomes, (sides[0].commit, sides[1].commit), args.rounds)
    print(f"\n{text}")
    if args.write:
        existing = args.docs.read_text(encoding="utf-8")
        args.docs.write_text(replace_section(existing, SECTION, text), encoding="utf-8")
        print(f"\nwrote the {TITLE!r} section into {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
