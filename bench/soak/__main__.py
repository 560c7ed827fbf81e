"""Command line: ``python -m bench.soak [--layer memory,redis] [--connections 10000]
[--minutes 10] [--chatting 0.01] [--no-write]``.

Runs the soak on each layer in turn (both by default): starts the server, opens the
sockets, holds them for ``--minutes`` while ``--chatting`` of them chat, samples the
server every ``--sample`` seconds, then closes everything and judges. Prints every
sample as it is taken and each layer's tables at its end, saves every sample as JSON
under ``bench/results/``, and rewrites the layer's block of the "Soak and leaks"
section of ``docs/reliability.md`` (unless ``--no-write``). Exits 0 if every layer
passed, 1 if one did not.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..ws_load import ensure_node
from ..ws_servers import ROOT
from .deployment import LAYERS, raise_fd_limit
from .plan import Plan
from .probe import Sample
from .report import console_line, console_summary, passed, save_json, write_docs
from .run import SoakRun, needed_fds, run_layer

DOCS = ROOT / "docs" / "reliability.md"
RESULTS = ROOT / "bench" / "results"
#: The warm-up of a long run, in minutes; a short run warms up for a fifth of it.
WARMUP_MINUTES = 2.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--layer", type=layer_names, default=",".join(LAYERS), help="layers, comma-separated")
    add("--connections", type=positive(int), default=10_000, help="sockets held")
    add("--room-size", type=positive(int), default=100, help="sockets per room")
    add("--minutes", type=positive(float), default=10.0, help="how long they are held")
    add("--chatting", type=fraction, default=0.01, help="the share of sockets that chat")
    add(
        "--interval", type=positive(float), default=5.0, help="seconds between a chatter's messages"
    )
    add("--sample", type=positive(float), default=10.0, help="seconds between samples")
    add(
        "--warmup",
        type=non_negative,
        default=argparse.SUPPRESS,
        help=f"minutes not judged (default: {WARMUP_MINUTES:g}, or a fifth of --minutes if less)",
    )
    add(
        "--tolerance",
        type=fraction,
        default=0.05,
        help="how far from its post-warm-up value a series may go",
    )
    add("--workers", type=positive(int), default=2, help="chanlite worker processes on Redis")
    add(
        "--close-rate",
        type=non_negative,
        default=1_000.0,
        help="sockets closed a second at the end (0: all at once)",
    )
    add("--server-cpu", type=int, default=0, help="the CPU of every server process")
    add(
        "--load-cpu",
        type=int,
        default=1,
        help="the CPU of the load generator (and of this process)",
    )
    add("--write", action=argparse.BooleanOptionalAction, default=True, help="update the docs file")
    add("--docs", type=Path, default=DOCS, help="the Markdown file to update")
    add("--results", type=Path, default=RESULTS, help="where each layer's samples go, as JSON")
    return parser.parse_args(argv)


def layer_names(value: str) -> list[str]:
    """Parse ``--layer``: comma-separated names of known layers."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in LAYERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown layer {', '.join(unknown) or '(none)'}; known: {', '.join(LAYERS)}"
        )
    return names


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """A parser of positive numbers of ``kind``."""

    def parse(value: str) -> int | float:
        number = kind(value)
        if number <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {value}")
        return number

    parse.__name__ = kind.__name__
    return parse


def non_negative(value: str) -> float:
    """Parse a number that is zero or more."""
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def fraction(value: str) -> float:
    """Parse a fraction between 0 and 1."""
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def build_plan(args: argparse.Namespace, argv: list[str]) -> Plan:
    """The plan the options describe, with the CPUs checked."""
    allowed = os.sched_getaffinity(0)
    for option, cpu in (("--server-cpu", args.server_cpu), ("--load-cpu", args.load_cpu)):
        if cpu not in allowed:
            raise SystemExit(f"{option} {cpu}: this process may only use CPUs {sorted(allowed)}")
    warmup = getattr(args, "warmup", min(WARMUP_MINUTES, args.minutes / 5))
    return Plan(
        command=" ".join(["python -m bench.soak", *argv]),
        connections=args.connections,
        room_size=args.room_size,
        chatting=args.chatting,
        interval_s=args.interval,
        minutes=args.minutes,
        sample_s=args.sample,
        warmup_s=warmup * 60,
        tolerance=args.tolerance,
        workers=args.workers,
        close_rate=args.close_rate,
        server_cpu=args.server_cpu,
        load_cpu=args.load_cpu,
    )


def print_sample(run: SoakRun, sample: Sample) -> None:
    """Print a sample as it is taken."""
    print(console_line(run, sample), flush=True)


def run_one(plan: Plan, layer: str, args: argparse.Namespace, needed: int) -> bool:
    """Run, print, save and write one layer's soak; True if it passed."""
    log_dir = Path(tempfile.mkdtemp(prefix=f"chanlite-soak-{layer}-"))
    print(f"\nsoak on {layer}: {plan.describe()}; logs in {log_dir}", flush=True)
    run = asyncio.run(run_layer(plan, layer, log_dir, print_sample, needed))
    print(console_summary(run), flush=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    json_path = args.results / f"soak-{layer}-{stamp}.json"
    save_json(json_path, run)
    print(f"samples saved to {json_path}")
    if args.write and run.result is not None:
        write_docs(args.docs, run)
        print(f"wrote the {layer} results into {args.docs}")
    return passed(run)


def main(argv: list[str] | None = None) -> int:
    """Run the soak on every selected layer; return the exit status."""
    arguments = sys.argv[1:] if argv is None else argv
    args = parse_args(arguments)
    plan = build_plan(args, arguments)
    ensure_node()
    needed = needed_fds(plan)
    soft, hard = raise_fd_limit(needed)
    print(f"open-file limit: {soft:,} (hard {hard:,}); each process needs {needed:,}")
    os.sched_setaffinity(0, {plan.load_cpu})
    results = [run_one(plan, layer, args, needed) for layer in args.layer]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
