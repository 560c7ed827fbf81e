"""What ``python -m bench.compare`` measured, and its section of ``docs/benchmarks.md``.

A :class:`Comparison` collects every run's JSON (``python -m bench --json``) by role,
baseline or candidate: each row's values over the rounds, and its failures (lost
deliveries, refused or closed sockets). A row holds when the candidate's median is
within :data:`TOLERANCE` of the baseline's, in the direction that is better for it (a
rate at least 0.95 times, a cost such as latency or memory at most 1.05 times), and
the candidate failed no more often. The section, between
``<!-- bench:compare:start -->`` and ``<!-- bench:compare:end -->``, names the two
commits and never a local path.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import end_marker, markdown_table, replace_section, start_marker

#: The section's marker name (``<!-- bench:compare:start -->``) and heading.
SECTION = "compare"
TITLE = "Before and after"
#: How far the candidate's median may fall behind the baseline's and still hold.
TOLERANCE = 0.05
#: The roles, in the order the first round runs them.
ROLES = ("baseline", "candidate")
#: Units of the cost rows of bench code from before rows were marked ``cost``.
COST_UNITS = ("µs", "bytes")
#: Count notes in row names ("(lost: chanlite 0, Starlette 3)"), which vary per run.
COUNT_NOTE = re.compile(
    r" \((?:lost|refused|closed by the server): [^()]*\)"
    r"|; (?:lost|refused|closed by the server): [^()]*(?=\))"
)


class CompareError(RuntimeError):
    """A checkout, a run or its results were not what a comparison needs."""


@dataclass
class Measured:
    """One row of one suite: every run's value and failures, per role."""

    suite: str
    name: str
    unit: str
    cost: bool
    values: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in ROLES})
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))

    def median(self, role: str) -> float:
        """The median of ``role``'s values over the rounds."""
        return statistics.median(self.values[role])

    @property
    def ratio(self) -> float | None:
        """Candidate median over baseline median; ``None`` if the baseline is 0."""
        baseline = self.median("baseline")
        return self.median("candidate") / baseline if baseline else None

    @property
    def holds(self) -> bool | None:
        """Within :data:`TOLERANCE` in the right direction, failing no more often."""
        ratio = self.ratio
        if ratio is None:
            return None
        close = ratio <= 1 + TOLERANCE if self.cost else ratio >= 1 - TOLERANCE
        return close and self.failures["candidate"] <= self.failures["baseline"]


@dataclass
class Comparison:
    """Every row measured so far, the time each run took, and one run's environment."""

    rows: dict[tuple[str, int], Measured] = field(default_factory=dict)
    seconds: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def record(self, role: str, data: dict[str, Any]) -> None:
        """Add one run's rows; the same row must keep its name and unit."""
        self.environment = self.environment or data["environment"]
        for suite in data["suites"]:
            for index, row in enumerate(suite["rows"]):
                name = COUNT_NOTE.sub("", row["name"])
                cost = bool(row.get("cost", row["unit"] in COST_UNITS))
                key = (suite["name"], index)
                measured = self.rows.setdefault(key, Measured(key[0], name, row["unit"], cost))
                if (measured.name, measured.unit) != (name, row["unit"]):
                    raise CompareError(f"{key[0]} row {index} changed: {name!r}")
                measured.values[role].extend(row["chanlite"]["rates"])
                measured.failures[role] += int(row.get("failures", 0))


# -- reporting -------------------------------------------------------------------------


def table(comparison: Comparison) -> str:
    """Every row: both medians, the ratio and whether it holds."""
    header = ["Suite", "Benchmark", "Unit", "Baseline median", "Candidate median"]
    header += ["Ratio (candidate / baseline)", f"Holds (±{TOLERANCE:.0%})"]
    body = []
    for row in distinct(comparison.rows.values()):
        ratio, holds = row.ratio, row.holds
        body.append(
            [
                row.suite,
                row.name + failure_note(row),
                row.unit,
                f"{row.median('baseline'):,.0f}",
                f"{row.median('candidate'):,.0f}",
                "—" if ratio is None else f"{ratio:.2f}x",
                "—" if holds is None else ("yes" if holds else "**no**"),
            ]
        )
    return markdown_table(header, body)


def distinct(rows: Iterable[Measured]) -> list[Measured]:
    """``rows`` less those with exactly the unit and values of an earlier one: the same
    measurement, reported by two suites (ws-channels and ws-starlette) or against two
    baselines (ws-redis)."""
    seen: set[tuple[object, ...]] = set()
    kept = []
    for row in rows:
        key = (row.unit, *(tuple(row.values[role]) for role in ROLES))
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def failure_note(row: Measured) -> str:
    """`` (failures: baseline N, candidate M)`` if either side failed anything."""
    if not any(row.failures.values()):
        return ""
    counts = ", ".join(f"{role} {row.failures[role]:,}" for role in ROLES)
    return f" (failures: {counts})"


def section(comparison: Comparison, commits: tuple[str, str], options: str, date: str) -> str:
    """The docs section, markers included; ``commits`` are the baseline's and the
    candidate's, ``options`` those of the command line."""
    baseline, candidate = commits
    env = comparison.environment
    about = (
        f"Baseline `{baseline}` against candidate `{candidate}`, both "
        "measured in one run by the candidate's benchmark code (`python -m bench.compare`): "
        "each round runs every suite once per side (`python -m bench --only SUITE "
        "--rounds 1`; ws-channels and ws-starlette share one run), the two sides taking "
        "turns to go first. Medians are over the rounds; ratio = candidate / baseline. "
        "A row holds when the candidate is within "
        f"{TOLERANCE:.0%} of the baseline (a rate at least {1 - TOLERANCE:.2f} times, a "
        f"cost such as latency or memory, where lower is better, at most "
        f"{1 + TOLERANCE:.2f} times) and failed (lost, refused, closed) no more often. "
        "Counts of failures are left out of the row names and given per side where any; "
        "a row with exactly the numbers of an earlier one (the same measurement, in two "
        "suites or against two baselines) is shown once."
    )
    run = (
        f"Run {date} with `python -m bench.compare --baseline DIR --candidate DIR "
        f"{options}`: {env.get('python', 'Python ?')}, {env.get('cpu_count', '?')} cores "
        f"({env.get('cpu_model', '?')}), each run pinned to CPU {env.get('pinned_cpu', '?')}."
    )
    parts = [f"## {TITLE}", "", about, "", table(comparison), "", run]
    return "\n".join([start_marker(SECTION), *parts, end_marker(SECTION)])


def timings(comparison: Comparison) -> str:
    """The median time of one run per batch of suites and role, for the console."""
    lines = [
        f"  {suite}, {role}: {statistics.median(seconds):.0f} s"
        for (suite, role), seconds in comparison.seconds.items()
    ]
    return "Time per run (median over the rounds):\n" + "\n".join(lines)


def write(path: Path, text: str) -> None:
    """Replace (or append) the section in ``path``."""
    existing = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(existing, SECTION, text), encoding="utf-8")
