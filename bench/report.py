"""Results as tables, on the console and in ``docs/benchmarks.md``.

Each suite owns one section of the docs file, between ``<!-- bench:NAME:start -->``
and ``<!-- bench:NAME:end -->``. Writing replaces only the sections of the suites that
ran (appending any that are new) and leaves the rest of the file as it was. A missing
file is created with a short introduction.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .core import Row, Stats, SuiteResult

if TYPE_CHECKING:
    # Only for annotations: bench.compare renders tables without importing chanlite.
    from .environment import Environment

INTRO = """\
# Benchmarks

Micro-benchmarks of chanlite's hot paths, side by side with Django Channels 4 where it
has an equivalent. They are for spotting regressions and comparing designs, not for
capacity planning, and they never run in CI.

Run them from the repository root, with the `bench` extra installed
(`pip install -e ".[bench]"`):

    python -m bench                      # every suite; rewrites its sections below
    python -m bench --only layers        # some suites (comma-separated names)
    python -m bench --quick              # fewer rounds and messages; prints only
    python -m bench --cpu 1              # pin to another core (default: CPU 0)

Every number is a rate in operations per second. Each measurement runs a warm-up
round and then several measured rounds (5 by default) and reports the best and the
median round; where a Channels 4 baseline exists its rounds are interleaved with
chanlite's, so background load hits both alike, and the ratio column is chanlite's
median over Channels 4's. Each round starts from a fresh layer and a collected heap,
and checks afterwards that every message it timed was delivered.

Machine notes: {cores} cores ({cpu}), shared — other processes may run at
the same time. The benchmark pins itself to one core (`--cpu`, default 0). Each
section ends with its own run line — date, command, load average, Python, chanlite and
channels versions, all read at run time — and differences under ~10% are noise.

Each suite writes only its own section, between `<!-- bench:NAME:start -->` and
`<!-- bench:NAME:end -->`; anything else in this file is left alone.
"""

HEADERS = ("Benchmark", "Unit", "chanlite best", "chanlite median")
BASELINE_HEADERS = ("best", "median", "Ratio")
TARGET_HEADERS = ("Target", "Holds")


# -- tables -------------------------------------------------------------------------


def table(result: SuiteResult) -> str:
    """The suite's rows as a padded Markdown table (readable on a console too)."""
    header = list(HEADERS)
    if result.baseline_label:
        header += [f"{result.baseline_label} {name}" for name in BASELINE_HEADERS[:2]]
        header.append(f"{BASELINE_HEADERS[2]} (chanlite / {result.baseline_label})")
    header += TARGET_HEADERS
    body = [_cells(row, bool(result.baseline_label)) for row in result.rows]
    return markdown_table(header, body)


def _cells(row: Row, with_baseline: bool) -> list[str]:
    cells = [row.name, row.unit, _rate(row.chanlite.best), _rate(row.chanlite.median)]
    if with_baseline:
        cells += _baseline_cells(row.baseline, row.ratio)
    cells.append(row.target.describe(row.unit) if row.target else "—")
    cells.append(_holds(row.target_holds))
    return cells


def _baseline_cells(baseline: Stats | None, ratio: float | None) -> list[str]:
    if baseline is None or ratio is None:
        return ["—", "—", "—"]
    return [_rate(baseline.best), _rate(baseline.median), f"{ratio:.2f}x"]


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _holds(value: bool | None) -> str:
    if value is None:
        return "—"
    return "yes" if value else "**no**"


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    """A pipe table; columns whose body cells all start with a digit align right."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    right = [all(row[i][:1].isdigit() for row in body) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.rjust(width) if is_right else cell.ljust(width)
            for cell, width, is_right in zip(cells, widths, right, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        "-" * (width + 1) + ":" if is_right else "-" * (width + 2)
        for width, is_right in zip(widths, right, strict=True)
    ]
    return "\n".join([line(header), "|" + "|".join(rule) + "|", *map(line, body)])


# -- console --------------------------------------------------------------------------


def console(result: SuiteResult) -> str:
    """The suite's title and table, for printing."""
    return f"\n{result.title}\n\n{table(result)}\n"


def summary(results: list[SuiteResult]) -> str:
    """One line per target: which hold and which miss."""
    lines = []
    for result in results:
        for row in result.rows:
            holds = row.target_holds
            if holds is not None and row.target is not None:
                verdict = "holds" if holds else "MISSES"
                goal = row.target.describe(row.unit)
                lines.append(f"  [{result.name}] {row.name}: {goal} — {verdict}")
    return "Targets (on medians):\n" + "\n".join(lines) if lines else ""


# -- docs/benchmarks.md -------------------------------------------------------------


def section(result: SuiteResult, environment: Environment) -> str:
    """The suite's Markdown section, markers included."""
    return "\n".join(
        [
            start_marker(result.name),
            f"## {result.title}",
            "",
            result.description,
            "",
            table(result),
            "",
            environment.describe(),
            end_marker(result.name),
        ]
    )


def start_marker(name: str) -> str:
    """The line that opens suite ``name``'s section."""
    return f"<!-- bench:{name}:start -->"


def end_marker(name: str) -> str:
    """The line that closes suite ``name``'s section."""
    return f"<!-- bench:{name}:end -->"


def write(path: Path, results: list[SuiteResult], environment: Environment) -> None:
    """Replace (or append) each result's section in ``path``, creating it if needed."""
    text = path.read_text(encoding="utf-8") if path.exists() else intro(environment)
    for result in results:
        text = replace_section(text, result.name, section(result, environment))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def intro(environment: Environment) -> str:
    """The opening of a new docs file."""
    return INTRO.format(cores=environment.cpu_count, cpu=environment.cpu_model)


def replace_section(text: str, name: str, new_section: str) -> str:
    """``text`` with suite ``name``'s section replaced, or appended if absent."""
    pattern = re.compile(
        re.escape(start_marker(name)) + r".*?" + re.escape(end_marker(name)), re.DOTALL
    )
    if pattern.search(text):
        return pattern.sub(lambda _: new_section, text, count=1)
    return text.rstrip("\n") + "\n\n" + new_section + "\n"
