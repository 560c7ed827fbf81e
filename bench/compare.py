"""Before and after in one run: ``python -m bench.compare --baseline DIR --candidate DIR``.

Both checkouts of chanlite are measured by one harness, the candidate's ``bench``
package copied into a temporary directory. Every round runs each selected suite once
per side as ``python -m bench --only SUITE --rounds 1 --no-write --json FILE`` (the
suites that share one measurement, :data:`SHARED`, in one run), from that directory
and with ``PYTHONPATH=<copy>:<side>``: ``bench`` is the candidate's, and ``chanlite``
is the side's in the bench process and in every server it starts (they inherit the
working directory and the environment; :func:`check_imports` proves it once per side).
The sides take turns to go first, round by round, so that drift on the machine hits
both alike.

Each run's JSON goes to a :class:`bench.comparison.Comparison`, which judges every
row (medians, ratio, whether it holds) and renders the "Before and after" section that
``--write`` puts into ``docs/benchmarks.md``. This process never imports chanlite
itself, so it runs even where a checkout's chanlite is mid-edit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import SUITES
from .comparison import TITLE, CompareError, Comparison, section, timings, write
from .core import DEFAULT_ROUNDS, QUICK_ROUNDS

#: The docs file ``--write`` updates by default (the one ``python -m bench`` writes).
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
#: Suites that read one measurement (:func:`bench.ws.measurements`): run together.
SHARED = ("ws-channels", "ws-starlette")
#: Lines of a failed run's output shown on the console.
TAIL_LINES = 40


# -- checkouts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One checkout under test: its role, its root and its commit."""

    role: str
    root: Path
    commit: str

    @classmethod
    def at(cls, role: str, root: Path) -> Side:
        """The checkout at ``root``; it must hold a ``chanlite`` package."""
        root = root.resolve()
        if not (root / "chanlite" / "__init__.py").is_file():
            raise CompareError(f"--{role} {root}: no chanlite package there")
        return cls(role, root, commit_of(root))


def commit_of(root: Path) -> str:
    """``git rev-parse --short HEAD``, marked if chanlite/ or bench/ has changes."""
    head = git(root, "rev-parse", "--short", "HEAD")
    changed = git(root, "--no-optional-locks", "status", "--porcelain", "--", "chanlite", "bench")
    return f"{head} + uncommitted changes" if changed else head


def git(root: Path, *args: str) -> str:
    """A read-only git command's output in ``root``."""
    command = ["git", "-C", str(root), *args]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise CompareError(f"{' '.join(command)} failed: {completed.stderr.strip()}")
    return completed.stdout.strip()


# -- running ----------------------------------------------------------------------------


@contextmanager
def harness(candidate: Path) -> Iterator[Path]:
    """A temporary directory holding a copy of the candidate's ``bench`` package (its
    Node dependencies linked, not copied, when the candidate has them installed)."""
    with tempfile.TemporaryDirectory(prefix="chanlite-compare-") as tmp:
        copy = Path(tmp) / "bench"
        skip = shutil.ignore_patterns("__pycache__", "node_modules", "results")
        shutil.copytree(candidate / "bench", copy, ignore=skip)
        modules = candidate / "bench" / "node" / "node_modules"
        if modules.is_dir():
            (copy / "node" / "node_modules").symlink_to(modules, target_is_directory=True)
        yield Path(tmp)


def side_env(home: Path, side: Side) -> dict[str, str]:
    """This process's environment with ``PYTHONPATH`` = the harness, then the side."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(home), str(side.root)])}


def check_imports(home: Path, side: Side) -> None:
    """Make sure that, run as the bench and its servers are, ``bench`` comes from the
    harness and ``chanlite`` from the side."""
    code = "import bench, chanlite; print(bench.__file__); print(chanlite.__file__)"
    completed = subprocess.run(
        [sys.executable, "-c", code],
        cwd=home,
        env=side_env(home, side),
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise CompareError(f"{side.role}: cannot import bench and chanlite:\n{completed.stderr}")
    bench_file, chanlite_file = (Path(line).resolve() for line in completed.stdout.splitlines())
    if not bench_file.is_relative_to(home.resolve()):
        raise CompareError(f"{side.role}: bench came from {bench_file}, not the harness")
    if not chanlite_file.is_relative_to(side.root):
        raise CompareError(f"{side.role}: chanlite came from {chanlite_file}, not {side.root}")
    print(f"{side.role} {side.commit}: chanlite from {chanlite_file.parent}", flush=True)


def batches(suites: list[str]) -> list[str]:
    """The ``--only`` value of each run in a round: one suite each, but the
    :data:`SHARED` suites in one run, where the first of them would run."""
    shared = ",".join(suite for suite in suites if suite in SHARED)
    runs = [shared if suite in SHARED else suite for suite in suites]
    return list(dict.fromkeys(runs))


def run_bench(home: Path, side: Side, suites: str, *, quick: bool) -> dict[str, Any]:
    """One ``python -m bench --only SUITES`` run on ``side``: its JSON data."""
    out, log = home / f"{side.role}.json", home / f"{side.role}.log"
    command = [sys.executable, "-m", "bench", "--only", suites, "--rounds", "1", "--no-write"]
    command += ["--json", str(out), *(["--quick"] if quick else [])]
    with log.open("wb") as output:
        completed = subprocess.run(
            command,
            cwd=home,
            env=side_env(home, side),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if completed.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-TAIL_LINES:]
        raise CompareError(f"{suites} on the {side.role} failed:\n" + "\n".join(tail))
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    return data


def measure(sides: list[Side], suites: list[str], rounds: int, *, quick: bool) -> Comparison:
    """Run every batch of suites on both sides each round, the first side alternating."""
    comparison = Comparison()
    with harness(sides[1].root) as home:  # the candidate's bench
        for side in sides:
            check_imports(home, side)
        for index in range(rounds):
            order = sides if index % 2 == 0 else sides[::-1]
            for batch in batches(suites):
                for side in order:
                    print(f"round {index + 1}/{rounds}: {batch} on the {side.role} ... ", end="")
                    sys.stdout.flush()
                    started = time.monotonic()
                    data = run_bench(home, side, batch, quick=quick)
                    elapsed = time.monotonic() - started
                    comparison.seconds.setdefault((batch, side.role), []).append(elapsed)
                    comparison.record(side.role, data)
                    print(f"{elapsed:.0f} s", flush=True)
    return comparison


# -- command line -------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--baseline", type=Path, required=True, metavar="DIR", help="checkout to compare with"
    )
    parser.add_argument(
        "--candidate", type=Path, required=True, metavar="DIR", help="checkout under test"
    )
    parser.add_argument("--only", type=suite_list, default=list(SUITES), metavar="NAME[,NAME]")
    parser.add_argument("--rounds", type=int, help="rounds per side (default: 5, quick: 2)")
    parser.add_argument("--quick", action="store_true", help="each run with --quick")
    parser.add_argument("--write", action="store_true", help="update the docs file")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the Markdown file to update")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS
    elif args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def suite_list(value: str) -> list[str]:
    """Parse ``--only``: comma-separated names of :data:`bench.SUITES`."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SUITES]
    if unknown or not names:
        known = ", ".join(SUITES)
        raise argparse.ArgumentTypeError(f"unknown suite {', '.join(unknown)}; known: {known}")
    return names


def main(argv: list[str] | None = None) -> int:
    """Compare the two checkouts; return the exit status."""
    args = parse_args(argv)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    options = f"--only {','.join(args.only)} --rounds {args.rounds}" + (
        " --quick" if args.quick else ""
    )
    try:
        sides = [Side.at("baseline", args.baseline), Side.at("candidate", args.candidate)]
        comparison = measure(sides, args.only, args.rounds, quick=args.quick)
    except CompareError as exc:
        print(f"\nbench.compare: {exc}", file=sys.stderr)
        return 1
    text = section(comparison, (sides[0].commit, sides[1].commit), options, date)
    print(f"\n{timings(comparison)}\n\n{text}")
    if args.write:
        write(args.docs, text)
        print(f"\nwrote the {TITLE!r} section into {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
