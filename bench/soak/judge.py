"""Verdicts on a soak run: flat series, delivered traffic, nothing left behind.

*Flat*: a series (RSS, fds, tasks, Redis memory and keys) is taken from the samples
while the sockets are held. Its *reference* is the first sample at or after the
warm-up; it is flat if every later sample stays within ``tolerance`` (a fraction) of
the reference. A series with fewer than two samples after the warm-up cannot be
judged (``flat`` is ``None``).

*Delivered*: no socket failed to open or was closed by the server, and every message
reached every member of its room exactly once (none lost, none unexpected).

*Left behind*: after every socket has closed and the server has settled, nothing that
belongs to a socket is left: no connection, no group member, no channel session or
ordering cursor, no more Redis keys than before the sockets opened, and in no process
more than :data:`STARTED_ON_FIRST_USE` more tasks of one kind (coroutine) than before:
a helper that starts on first use and stays, such as the Redis layer's connection
multiplexer, is one task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .probe import Sample

#: The samples taken while sockets are held.
HELD = ("hold", "drained")
#: More tasks of one kind after the sockets than before that are not left behind.
STARTED_ON_FIRST_USE = 1

Reader = Callable[[Sample], float | None]


@dataclass(frozen=True)
class Series:
    """A figure to judge: its name, unit, scale (divides raw values) and reader."""

    name: str
    unit: str
    read: Reader
    scale: float = 1.0
    judged: bool = True


@dataclass(frozen=True)
class Flatness:
    """A series over the held samples, and whether it stayed flat."""

    series: Series
    first: float
    minimum: float
    maximum: float
    last: float
    reference: float | None
    drift: float | None
    flat: bool | None


def held(samples: Sequence[Sample]) -> list[Sample]:
    """The samples taken while the sockets were open, in order."""
    return [s for s in samples if s.phase in HELD and s.t is not None]


def flatness(
    series: Series, samples: Sequence[Sample], warmup_s: float, tolerance: float
) -> Flatness | None:
    """Judge ``series`` over the held ``samples``; ``None`` if it was never read."""
    points = [(s.t, value) for s in held(samples) if (value := series.read(s)) is not None]
    if not points:
        return None
    values = [value for _, value in points]
    after = [value for t, value in points if t is not None and t >= warmup_s]
    reference = after[0] if after else None
    drift = None
    if reference is not None and len(after) >= 2:
        drift = max(abs(value - reference) for value in after) / max(abs(reference), 1.0)
    flat = None if drift is None or not series.judged else drift <= tolerance
    return Flatness(series, values[0], min(values), max(values), values[-1], reference, drift, flat)


def traffic_problems(result: dict[str, Any]) -> list[str]:
    """What went wrong with the traffic, from the load generator's result."""
    problems = []
    for key, what in (
        ("failed", "sockets failed to open"),
        ("closed_by_server", "sockets were closed by the server"),
        ("lost", "deliveries were lost"),
        ("unexpected", "deliveries were unexpected (duplicates)"),
    ):
        if result.get(key):
            problems.append(f"{result[key]:,} {what}")
    return problems


def left_behind(idle: Sample | None, closed: Sample | None) -> list[str]:
    """What the sockets left in the server once they had all closed."""
    if closed is None:
        return ["no sample after closing"]
    problems = []
    for name in ("connections", "members", "sessions", "cursors"):
        value = closed.figure(name)
        baseline = idle.figure(name) if idle is not None else None
        if value is not None and value > (baseline or 0):
            problems.append(f"{name}: {value:,.0f}")
    keys, idle_keys = closed.redis_key_count, idle.redis_key_count if idle is not None else None
    if keys is not None and keys > (idle_keys or 0):
        problems.append(f"Redis keys: {keys:,} {closed.redis_keys}")
    grown = task_growth(idle, closed)
    problems += [
        f"{count:,} more {kind} tasks in {name}"
        for (name, kind), count in grown.items()
        if count > STARTED_ON_FIRST_USE
    ]
    return problems


def task_growth(idle: Sample | None, closed: Sample) -> dict[tuple[str, str], int]:
    """(process, task kind) -> how many more tasks of that kind the process ran
    after the sockets than before them, where it ran more. A process that did not
    report its kinds counts as one kind, ``all tasks``."""
    before = {p.name: p for p in idle.processes} if idle is not None else {}
    grown: dict[tuple[str, str], int] = {}
    for process in closed.processes:
        earlier = before.get(process.name)
        if process.tasks is None or earlier is None or earlier.tasks is None:
            continue
        if process.task_kinds is None or earlier.task_kinds is None:
            counts = {"all tasks": (earlier.tasks, process.tasks)}
        else:
            kinds = process.task_kinds.keys() | earlier.task_kinds.keys()
            counts = {
                k: (earlier.task_kinds.get(k, 0), process.task_kinds.get(k, 0)) for k in kinds
            }
        for kind, (was, now) in sorted(counts.items()):
            if now > was:
                grown[process.name, kind] = now - was
    return grown
