"""The machine and software a run measured: CPU, pinning, load, versions."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata

import chanlite


@dataclass(frozen=True)
class Environment:
    """Everything a reader needs to judge a set of numbers."""

    command: str
    date: str
    cpu_model: str
    cpu_count: int
    pinned_cpu: int
    load_average: tuple[float, float, float]
    python: str
    chanlite_version: str
    channels_version: str
    rounds: int
    warmup: int

    @classmethod
    def capture(cls, *, pinned_cpu: int, rounds: int, warmup: int) -> Environment:
        """Read the environment of this process now."""
        return cls(
            command=" ".join(["python -m bench", *sys.argv[1:]]),
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            cpu_model=cpu_model(),
            cpu_count=os.cpu_count() or 1,
            pinned_cpu=pinned_cpu,
            load_average=os.getloadavg(),
            python=f"{platform.python_implementation()} {platform.python_version()}",
            chanlite_version=chanlite.__version__,
            channels_version=package_version("channels"),
            rounds=rounds,
            warmup=warmup,
        )

    def describe(self) -> str:
        """A one-paragraph Markdown note on how the numbers were taken."""
        load = ", ".join(f"{value:.2f}" for value in self.load_average)
        return (
            f"Run {self.date} with `{self.command}`: best and median of "
            f"{self.rounds} measured round(s) after {self.warmup} warm-up round(s). "
            f"Machine: {self.cpu_count} cores ({self.cpu_model}), process pinned to CPU "
            f"{self.pinned_cpu}, load average at start {load}. "
            f"{self.python}, default asyncio event loop, chanlite {self.chanlite_version}, "
            f"channels {self.channels_version}."
        )


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or the platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def package_version(name: str) -> str:
    """The installed version of distribution ``name``, or ``not installed``."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def pin_to_cpu(cpu: int) -> None:
    """Run this process (and threads it starts later) on ``cpu`` only."""
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise SystemExit(f"--cpu {cpu}: this process may only use CPUs {sorted(allowed)}")
    os.sched_setaffinity(0, {cpu})
