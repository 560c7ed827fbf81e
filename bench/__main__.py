"""Command line: ``python -m bench [--only NAME[,NAME]] [--quick] [--cpu N]``.

Runs the selected suites (all by default) one after another, each in a fresh event
loop, prints each suite's table and a summary of the targets, and rewrites the suites'
sections of ``docs/benchmarks.md`` (not after ``--quick`` unless ``--write``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import SUITES, load_suite
from .core import Config, SuiteResult
from .environment import Environment, pin_to_cpu
from .report import console, summary, write

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        type=suite_names,
        default=list(SUITES),
        metavar="NAME[,NAME]",
        help=f"suites to run (default: all of {', '.join(SUITES)})",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds and messages")
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to (default: 0)")
    parser.add_argument("--rounds", type=positive_int, help="measured rounds (default: 5)")
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="update docs/benchmarks.md (default: yes, except with --quick)",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="the Markdown file to update")
    parser.add_argument("--json", type=Path, help="also save every round's rate as JSON here")
    return parser.parse_args(argv)


def suite_names(value: str) -> list[str]:
    """Parse ``--only``: comma-separated, known suite names."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SUITES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown suite {', '.join(unknown) or '(none)'}; known: {', '.join(SUITES)}"
        )
    return names


def positive_int(value: str) -> int:
    """Parse a positive integer option."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def run_suite(name: str, config: Config) -> SuiteResult:
    """Run one suite in a fresh event loop."""
    try:
        suite = load_suite(name)
    except ModuleNotFoundError as exc:
        raise SystemExit(f"suite {name!r} needs {exc.name!r}: pip install -e '.[bench]'") from None
    rows = asyncio.run(suite.run(config))
    return SuiteResult(suite.NAME, suite.TITLE, suite.DESCRIPTION, suite.BASELINE, rows)


def save_json(path: Path, results: list[SuiteResult], environment: Environment) -> None:
    """Every round's rate, for comparing runs later (``python -m bench.compare`` reads
    it); each row says whether it is a cost, where lower is better."""
    data = {"environment": asdict(environment), "suites": [suite_json(r) for r in results]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def suite_json(result: SuiteResult) -> dict[str, Any]:
    """One suite's result as JSON data, each row marked ``cost`` true or false."""
    data = asdict(result)
    for row, row_data in zip(result.rows, data["rows"], strict=True):
        row_data["cost"] = row.chanlite.cost
    return data


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; return the exit status."""
    args = parse_args(argv)
    pin_to_cpu(args.cpu)
    config = Config.build(quick=args.quick, rounds=args.rounds)
    environment = Environment.capture(
        pinned_cpu=args.cpu, rounds=config.rounds, warmup=config.warmup
    )
    print(environment.describe(), flush=True)
    results = []
    for name in args.only:
        result = run_suite(name, config)
        print(console(result), flush=True)
        results.append(result)
    print(summary(results))
    if args.write if args.write is not None else not args.quick:
        write(args.docs, results, environment)
        print(f"\nwrote {', '.join(r.name for r in results)} into {args.docs}")
    if args.json is not None:
        save_json(args.json, results, environment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
