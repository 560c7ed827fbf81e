"""Measurement primitives shared by every suite: run settings, samples, statistics.

A suite times *rounds*. A round is an async function that does its own untimed setup,
times its hot part with :class:`Sample.since`, checks what it did, and returns the
sample. :func:`compare` runs warm-up rounds, then interleaves the measured rounds of
two implementations so that background load hits both alike.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

#: Measured rounds and warm-up rounds of a normal run.
DEFAULT_ROUNDS = 5
DEFAULT_WARMUP = 1
#: Measured rounds of a ``--quick`` run.
QUICK_ROUNDS = 2
#: A round that takes longer than this is a hang (a lost message), not a result.
ROUND_TIMEOUT = 120.0


@dataclass(frozen=True)
class Config:
    """How much work each suite does: rounds, warm-up, and full or quick sizes."""

    rounds: int = DEFAULT_ROUNDS
    warmup: int = DEFAULT_WARMUP
    quick: bool = False

    @classmethod
    def build(cls, *, quick: bool, rounds: int | None = None) -> Config:
        """Settings for a normal or ``--quick`` run, with an optional round override."""
        default = QUICK_ROUNDS if quick else DEFAULT_ROUNDS
        return cls(rounds=rounds or default, warmup=DEFAULT_WARMUP, quick=quick)

    def size(self, full: int, quick: int) -> int:
        """``quick`` in a quick run, else ``full``."""
        return quick if self.quick else full


@dataclass(frozen=True)
class Sample:
    """``count`` operations done in ``seconds``."""

    count: int
    seconds: float

    @classmethod
    def since(cls, start: float, count: int) -> Sample:
        """The sample of ``count`` operations since ``start`` (a perf_counter value)."""
        return cls(count, time.perf_counter() - start)

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.count / self.seconds


@dataclass(frozen=True)
class Stats:
    """The rates (operations per second) of the measured rounds."""

    #: Whether lower is better: a cost (latency, memory), not a rate.
    cost: ClassVar[bool] = False

    rates: tuple[float, ...]

    @property
    def best(self) -> float:
        """The highest rate: the least disturbed round."""
        return max(self.rates)

    @property
    def median(self) -> float:
        """The median rate: the typical round."""
        return statistics.median(self.rates)


@dataclass(frozen=True)
class Target:
    """A goal on the median: a minimum rate, or a minimum ratio to the baseline."""

    minimum: float
    on_ratio: bool = False

    def describe(self, unit: str) -> str:
        """The goal as a table cell."""
        if self.on_ratio:
            return f"ratio ≥ {self.minimum:.2f}"
        return f"≥ {self.minimum:,.0f} {unit}"


@dataclass(frozen=True)
class Row:
    """One benchmark's result: chanlite, an optional baseline, an optional target."""

    name: str
    unit: str
    chanlite: Stats
    baseline: Stats | None = None
    target: Target | None = None

    @property
    def ratio(self) -> float | None:
        """chanlite's median over the baseline's median, if there is a baseline."""
        if self.baseline is None:
            return None
        return self.chanlite.median / self.baseline.median

    @property
    def target_holds(self) -> bool | None:
        """Whether the target holds on medians; ``None`` without a target."""
        if self.target is None:
            return None
        if self.target.on_ratio:
            ratio = self.ratio
            return ratio is not None and ratio >= self.target.minimum
        return self.chanlite.median >= self.target.minimum


@dataclass(frozen=True)
class SuiteResult:
    """What one suite measured, ready to print and to write into the docs."""

    name: str
    title: str
    description: str
    baseline_label: str
    rows: list[Row]


class Suite(Protocol):
    """What a suite module provides (see :data:`bench.SUITES`)."""

    NAME: str
    TITLE: str
    DESCRIPTION: str
    BASELINE: str

    async def run(self, config: Config) -> list[Row]:
        """Measure everything the suite measures."""
        ...


Round = Callable[[], Awaitable[Sample]]


async def measure(round_fn: Round, config: Config) -> Stats:
    """Warm up, then time ``config.rounds`` rounds of ``round_fn``."""
    for _ in range(config.warmup):
        await run_round(round_fn)
    return Stats(tuple([(await run_round(round_fn)).rate for _ in range(config.rounds)]))


async def compare(ours: Round, theirs: Round, config: Config) -> tuple[Stats, Stats]:
    """Measure two implementations with their rounds interleaved: ours, theirs, ..."""
    for _ in range(config.warmup):
        await run_round(ours)
        await run_round(theirs)
    our_rates: list[float] = []
    their_rates: list[float] = []
    for _ in range(config.rounds):
        our_rates.append((await run_round(ours)).rate)
        their_rates.append((await run_round(theirs)).rate)
    return Stats(tuple(our_rates)), Stats(tuple(their_rates))


async def run_round(round_fn: Round) -> Sample:
    """One round from a clean heap, failing (not hanging) if a message goes missing."""
    gc.collect()
    async with asyncio.timeout(ROUND_TIMEOUT):
        return await round_fn()


class BenchmarkError(AssertionError):
    """A round did not do what it claims to have timed."""


def check(condition: bool, what: str) -> None:
    """Raise :class:`BenchmarkError` saying ``what`` went wrong unless ``condition``."""
    if not condition:
        raise BenchmarkError(what)
