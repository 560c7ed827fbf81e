"""A soak run on the console, as JSON, and in ``docs/reliability.md``.

Each layer owns one block of the docs file's "Soak and leaks" section, between
``<!-- soak:LAYER:start -->`` and ``<!-- soak:LAYER:end -->``; writing replaces that
block only and leaves the rest of the file as it was.
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import chanlite

from ..environment import cpu_model
from .judge import (
    Flatness,
    Series,
    flatness,
    held,
    left_behind,
    task_growth,
    traffic_problems,
)
from .probe import SERVER_ROLES, Sample
from .run import SoakRun

MIB = 1024.0 * 1024.0
KIB_PER_MIB = 1024.0


# -- tables -------------------------------------------------------------------------


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    """A padded pipe table; a column whose body cells are all numbers or ``—``
    (unknown) aligns right."""
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    right = [
        bool(body) and all(row[i][:1].isdigit() or row[i].startswith("—") for row in body)
        for i in range(len(header))
    ]

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


# -- the series -----------------------------------------------------------------------


def process_rss(name: str) -> Series:
    """The RSS of the process named ``name`` (listed, not judged: the sum is)."""

    def read(sample: Sample) -> float | None:
        found = [p.rss_kib for p in sample.processes if p.name == name]
        return float(found[0]) if found and found[0] is not None else None

    return Series(f"RSS of {name}", "MiB", read, KIB_PER_MIB, judged=False)


def series_of(run: SoakRun) -> list[Series]:
    """What is judged (the server's sums; Redis's memory and keys) and what is only
    listed (each process's RSS, threads)."""
    names = [p.name for p in run.samples[0].processes] if run.samples else []
    on_redis = run.layer == "redis"
    series = [
        Series("RSS, server processes", "MiB", lambda s: s.total("rss_kib"), KIB_PER_MIB),
        Series("open fds, server processes", "", lambda s: s.total("fds")),
        Series("asyncio tasks, server processes", "", lambda s: s.total("tasks")),
    ]
    if len(names) > 1:
        series += [process_rss(name) for name in names]
    series.append(
        Series("threads, server processes", "", lambda s: s.total("threads"), judged=False)
    )
    if on_redis:
        series += [
            Series("Redis used_memory", "MiB", lambda s: s.redis_used, MIB),
            Series("Redis keys", "", lambda s: s.redis_key_count),
        ]
    return series


def judgements(run: SoakRun) -> list[Flatness]:
    """Every series of the run, judged (those never read are left out)."""
    plan = run.plan
    found = (flatness(s, run.samples, plan.warmup_s, plan.tolerance) for s in series_of(run))
    return [judged for judged in found if judged is not None]


def problems(run: SoakRun, judged: Sequence[Flatness]) -> list[str]:
    """Everything that makes the run fail, in words; empty if it passed."""
    found = [f"the run stopped early: {run.error}"] if run.error else []
    for item in judged:
        if item.flat is False and item.drift is not None:
            found.append(f"{item.series.name} drifted {item.drift:.1%} after the warm-up")
    if not any(item.flat is not None for item in judged):
        found.append("too short to judge: fewer than two samples after the warm-up")
    if run.result is not None:
        found += traffic_problems(run.result)
    left = left_behind(run.phase("idle"), run.phase("closed"))
    found += [f"left behind after closing: {item}" for item in left]
    return found


# -- numbers --------------------------------------------------------------------------


def number(value: float | None, scale: float = 1.0) -> str:
    """``value / scale``: one decimal when scaled (MiB), else an integer; ``—`` if
    unknown."""
    if value is None:
        return "—"
    return f"{value / scale:,.1f}" if scale != 1.0 else f"{value:,.0f}"


def millis(micros: Any) -> str:
    """Microseconds as milliseconds with one decimal (``—`` if unknown)."""
    return "—" if micros is None else f"{float(micros) / 1000:,.1f}"


def percent(value: float | None) -> str:
    """A fraction as a percentage (``—`` if unknown)."""
    return "—" if value is None else f"{value:.0%}"


def cpu_share(before: Sample | None, after: Sample) -> float | None:
    """The deployment's CPU use (all its processes, Redis too) between two samples,
    as a fraction of one core."""
    if before is None or after.clock <= before.clock:
        return None
    roles = (*SERVER_ROLES, "redis")
    spent, earlier = after.total("cpu_seconds", roles), before.total("cpu_seconds", roles)
    if spent is None or earlier is None:
        return None
    return (spent - earlier) / (after.clock - before.clock)


def rss_cell(sample: Sample) -> str:
    """The server's RSS in MiB, with each process's after it when there are several."""
    server = [p for p in sample.processes if p.role in SERVER_ROLES]
    total = number(sample.total("rss_kib"), KIB_PER_MIB)
    if len(server) < 2:
        return total
    parts = " / ".join(number(p.rss_kib, KIB_PER_MIB) for p in server)
    return f"{total} ({parts})"


def label(sample: Sample) -> str:
    """A sample's time (seconds since every socket was open) or phase."""
    if sample.t is None:
        return sample.phase
    suffix = " (drained)" if sample.phase == "drained" else ""
    return f"{sample.t:,.0f}{suffix}"


# -- console --------------------------------------------------------------------------


def console_line(run: SoakRun, sample: Sample) -> str:
    """One sample as one line, as it is taken."""
    index = run.samples.index(sample)
    before = run.samples[index - 1] if index > 0 else None
    load = sample.load or {}
    parts = [
        f"[{run.layer}] {label(sample):>12}",
        f"rss {rss_cell(sample)} MiB",
        f"fds {number(sample.total('fds'))}",
        f"tasks {number(sample.total('tasks'))}",
        f"conns {number(sample.figure('connections'))}",
        f"members {number(sample.figure('members'))}",
    ]
    if load:
        parts += [
            f"sent {load['sent']:,}",
            f"delivered {load['delivered']:,}",
            f"overdue {load['overdue']:,}",
            f"p99 {millis(load.get('p99_us'))} ms",
            f"load cpu {percent(load.get('load_cpu'))}",
        ]
    parts.append(f"server cpu {percent(cpu_share(before, sample))}")
    if sample.redis_used is not None:
        kinds = ", ".join(f"{kind} {n:,}" for kind, n in sorted((sample.redis_keys or {}).items()))
        keys = number(sample.redis_key_count)
        parts.append(f"redis {number(sample.redis_used, MIB)} MiB, keys {keys} ({kinds})")
    return "  ".join(parts)


def console_summary(run: SoakRun) -> str:
    """The run's verdict and tables, for printing at the end."""
    return f"\nsoak on {run.layer}\n\n{section(run, for_docs=False)}\n"


# -- Markdown -------------------------------------------------------------------------


def flatness_table(judged: Sequence[Flatness], tolerance: float) -> str:
    """First, reference, min, max, last and drift of every series."""
    header = [
        "Series",
        "first (t=0)",
        "after warm-up",
        "min",
        "max",
        "last",
        "max drift",
        f"flat (±{tolerance:.0%})",
    ]
    body = []
    for item in judged:
        scale, unit = item.series.scale, f", {item.series.unit}" if item.series.unit else ""
        values = (item.first, item.reference, item.minimum, item.maximum, item.last)
        cells = [number(value, scale) for value in values]
        drift = "—" if item.drift is None else f"{item.drift:.1%}"
        verdict = {True: "yes", False: "**no**", None: "—"}[item.flat]
        body.append([f"{item.series.name}{unit}", *cells, drift, verdict])
    return markdown_table(header, body)


def traffic_text(run: SoakRun) -> str:
    """What the load generator sent and what arrived."""
    result, opened = run.result, run.opened
    if result is None:
        return "The load generator gave no result."
    return (
        f"Opened {result['opened']:,} sockets in {opened.get('seconds', 0):.1f} s "
        f"({result['failed']:,} failed). Sent {result['sent']:,} messages; "
        f"{result['expected']:,} deliveries expected, {result['delivered']:,} received, "
        f"**{result['lost']:,} lost**, {result['unexpected']:,} unexpected; "
        f"{result['closed_by_server']:,} sockets closed by the server. Delivery latency "
        f"over the run: p50 {millis(result.get('p50_us'))} ms, p99 "
        f"{millis(result.get('p99_us'))} ms, max {millis(result.get('max_us'))} ms."
    )


def before_after_table(run: SoakRun) -> str:
    """The server idle before the sockets opened, and after they had all closed."""
    idle, closed = run.phase("idle"), run.phase("closed")
    rows: list[tuple[str, Any, float]] = [
        ("RSS, server processes, MiB", lambda s: s.total("rss_kib"), KIB_PER_MIB),
        ("open fds, server processes", lambda s: s.total("fds"), 1.0),
        ("asyncio tasks, server processes", lambda s: s.total("tasks"), 1.0),
        ("connections", lambda s: s.figure("connections"), 1.0),
        ("group members", lambda s: s.figure("members"), 1.0),
    ]
    if run.layer == "memory":
        rows += [
            ("channel sessions", lambda s: s.figure("sessions"), 1.0),
            ("ordering cursors", lambda s: s.figure("cursors"), 1.0),
        ]
    else:
        rows += [
            ("Redis used_memory, MiB", lambda s: s.redis_used, MIB),
            ("Redis keys", lambda s: s.redis_key_count, 1.0),
        ]
    body = [
        [name, *(number(read(s), scale) if s else "—" for s in (idle, closed))]
        for name, read, scale in rows
    ]
    table = markdown_table(["", "idle, before opening", "after closing every socket"], body)
    return f"{table}\n\n{growth_text(idle, closed)}"


def growth_text(idle: Sample | None, closed: Sample | None) -> str:
    """Which tasks the server ran after the sockets that it did not run before."""
    grown = task_growth(idle, closed) if closed is not None else {}
    if not grown:
        return "No kind of asyncio task is more numerous after the sockets than before."
    listed = ", ".join(f"{name}: {kind} +{count:,}" for (name, kind), count in grown.items())
    return f"Asyncio tasks more numerous after the sockets than before: {listed}."


def minute_samples(run: SoakRun) -> list[Sample]:
    """The idle sample, the held sample nearest each whole minute, the drained and
    the closed samples."""
    chosen: list[Sample] = [s for s in run.samples if s.phase == "idle"]
    hold = [s for s in held(run.samples) if s.phase == "hold"]
    minutes = int(run.plan.duration_s // 60)
    for minute in range(minutes + 1):
        near = [s for s in hold if abs((s.t or 0) - 60 * minute) <= run.plan.sample_s / 2]
        if near:
            best = min(near, key=lambda s: abs((s.t or 0) - 60 * minute))
            if best not in chosen:
                chosen.append(best)
    chosen += [s for s in run.samples if s.phase in ("drained", "closed")]
    return chosen


def samples_table(run: SoakRun) -> str:
    """One row a minute: memory, fds, tasks, sockets, traffic so far, CPU, Redis."""
    header = ["t (s)", "RSS, MiB", "fds", "tasks", "conns", "members", "sent", "delivered"]
    header += ["overdue", "p99, ms", "CPU server / load"]
    on_redis = run.layer == "redis"
    if on_redis:
        header += ["Redis MiB", "Redis keys"]
    body = []
    for sample in minute_samples(run):
        index = run.samples.index(sample)
        before = run.samples[index - 1] if index > 0 else None
        load = sample.load or {}
        row = [
            label(sample),
            rss_cell(sample),
            number(sample.total("fds")),
            number(sample.total("tasks")),
            number(sample.figure("connections")),
            number(sample.figure("members")),
            number(load.get("sent")),
            number(load.get("delivered")),
            number(load.get("overdue")),
            millis(load.get("p99_us")) if load else "—",
            f"{percent(cpu_share(before, sample))} / {percent(load.get('load_cpu'))}",
        ]
        if on_redis:
            row += [number(sample.redis_used, MIB), number(sample.redis_key_count)]
        body.append(row)
    return markdown_table(header, body)


def setup_text(run: SoakRun) -> str:
    """Command, date, machine, processes and load, in one paragraph."""
    plan = run.plan
    limits = sorted({limit for limit in run.fd_limits.values() if limit})
    limit_text = ", ".join(f"{limit:,}" for limit in limits) or "unknown"
    end = run.load_average_end or run.load_average
    workers = (
        "with its in-process workers"
        if run.layer == "memory"
        else (
            f"with `--no-worker`, beside {plan.workers} `chanlite worker` processes and a "
            "private redis-server (no persistence)"
        )
    )
    return (
        f"Run {run.date} with `{plan.command}`, on `{layer_title(run.layer)}`: "
        f"{plan.describe()}. Machine: {os_cpu_count()} cores ({cpu_model()}); every server "
        f"process on CPU {plan.server_cpu}, the load generator (Node `ws`, "
        f"`bench/node/soak.mjs`) on CPU {plan.load_cpu}; load average "
        f"{load_text(run.load_average)} at the start, {load_text(end)} at the end. "
        f"`chanlite serve bench.soak.app:app` {workers}; open-file limit {limit_text}. "
        f"{platform.python_implementation()} {platform.python_version()}, chanlite "
        f"{chanlite.__version__}. The run took {run.wall_seconds / 60:.1f} min."
    )


def verdict_text(found: Sequence[str]) -> str:
    """The verdict line."""
    if not found:
        return "**Verdict: flat after the warm-up, every delivery made, nothing left behind.**"
    return "**Verdict: failed.** " + "; ".join(found) + "."


def section(run: SoakRun, *, for_docs: bool = True) -> str:
    """The run as Markdown: setup, verdict, series, traffic, before/after, samples."""
    judged = judgements(run)
    found = problems(run, judged)
    parts = [
        setup_text(run),
        verdict_text(found),
        flatness_table(judged, run.plan.tolerance),
        traffic_text(run),
        before_after_table(run),
        "Samples, one a minute (t: seconds since every socket was open; CPU: share of "
        "one core since the previous sample):",
        samples_table(run),
    ]
    if run.log_problems:
        shown = "\n".join(f"    {line}" for line in run.log_problems[:10])
        parts.append(f"Server log, {len(run.log_problems)} WARNING/ERROR lines:\n\n{shown}")
    if not for_docs:
        parts.append(f"Logs: {run.log_dir}")
    return "\n\n".join(parts)


def passed(run: SoakRun) -> bool:
    """True if the run found nothing wrong."""
    return not problems(run, judgements(run))


def layer_title(layer: str) -> str:
    """How the docs name a layer."""
    return "memory://" if layer == "memory" else "redis://"


def load_text(values: Sequence[float]) -> str:
    """A load average triple."""
    return ", ".join(f"{value:.2f}" for value in values)


def os_cpu_count() -> int:
    """Cores on this machine."""
    return os.cpu_count() or 1


# -- files ----------------------------------------------------------------------------


def markers(layer: str) -> tuple[str, str]:
    """The comments around ``layer``'s block in the docs."""
    return f"<!-- soak:{layer}:start -->", f"<!-- soak:{layer}:end -->"


def write_docs(path: Path, run: SoakRun) -> None:
    """Replace ``run.layer``'s block of ``path`` with the run's section.

    Raises SystemExit if the file lacks the block's markers.
    """
    start, end = markers(run.layer)
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {start} ... {end} block to write into")
    block = f"{start}\n{section(run)}\n{end}"
    path.write_text(pattern.sub(lambda _: block, text, count=1), encoding="utf-8")


def save_json(path: Path, run: SoakRun) -> None:
    """Every sample and the load generator's result, for comparing runs later."""
    data = {
        "layer": run.layer,
        "plan": asdict(run.plan),
        "date": run.date,
        "load_average": run.load_average,
        "load_average_end": run.load_average_end,
        "fd_limits": run.fd_limits,
        "processes": run.processes,
        "opened": run.opened,
        "result": run.result,
        "error": run.error,
        "log_problems": run.log_problems,
        "wall_seconds": run.wall_seconds,
        "samples": [asdict(sample) for sample in run.samples],
        "problems": problems(run, judgements(run)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
