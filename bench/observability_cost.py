"""Suite ``observability-cost``: what metrics and tracing cost per message, in-process.

The ``ws-observability`` suite measures real servers under a real load generator,
where one round differs from the next by more than metrics cost. This suite takes the
network, uvicorn and the load generator out: it drives each variant's ``Chanlite`` app
through its ASGI interface in this process, with in-memory WebSockets, so what
differs between variants is chanlite's own work. The variants run in turn, round
after round (so background load hits all alike), each in an app of its own:

* echo: 50 sockets, each sending a frame and waiting for its echo, closed loop;
* fan-out: 1,000 sockets in one room, one of them sending; every frame is delivered
  to all 1,000.

Rates are echoes or deliveries per second of this process's CPU.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from chanlite import Chanlite

from .apps.chanlite_echo import routes
from .apps.otel_sdk import DroppingExporter
from .core import Config, Row, Sample, Stats, Target, check, run_round
from .inprocess import Socket, cpu_sample, fanout, open_all

NAME = "observability-cost"
TITLE = "What metrics and tracing cost per message, in-process"
BASELINE = "off"
DESCRIPTION = (
    "Each variant's `Chanlite` app (`bench/apps/chanlite_echo.py`'s routes on "
    "`memory://`, workers in-process) is driven through its ASGI interface by in-memory "
    "WebSockets in the benchmark's own process: no network, no uvicorn, no load "
    "generator, so only chanlite's own work differs between variants. *Echo*: 50 "
    "sockets, each sending a 32-byte frame and waiting for its echo. *Fan-out*: 1,000 "
    "sockets in one room, one of them sending 20 frames, each delivered to all 1,000. "
    "Variants: observability off (the baseline); `metrics=True, health=True`; "
    "`tracing=` an SDK `TracerProvider` with the default parent-based always-on "
    "sampler and a batching processor feeding an exporter that drops spans; the same "
    "sampling 10% of traces; 1% (a rate high-volume services run at: a socket "
    "is sampled at its handshake, so a round samples none, one or two of its "
    "sockets); and none (the cost of tracing on with nothing sampled: the trace "
    "context still travels in every message). The variants run in turn in every "
    "round; rate = operations / the process's CPU time in the timed part (all its "
    "threads, the span processor's included), medians over the rounds."
)

ECHO_SOCKETS = 50
ECHOES_PER_SOCKET = 200
MEMBERS = 1_000
BROADCASTS = 20
FRAME = "x" * 32
#: Variants, in the order of the table.
VARIANTS = ("off", "metrics", "tracing", "tracing-sampled", "tracing-1%", "tracing-none")
#: The share of traces each sampling variant keeps.
RATIOS = {"tracing-sampled": 0.1, "tracing-1%": 0.01, "tracing-none": 0.0}
METRICS_TARGET = Target(0.95, on_ratio=True)
TRACING_TARGET = Target(0.85, on_ratio=True)


def make_app(variant: str) -> tuple[Chanlite, TracerProvider | None]:
    """The variant's app, and its tracer provider (to shut down) if it traces."""
    provider = None
    options: dict[str, Any] = {}
    if variant == "metrics":
        options = {"metrics": True, "health": True}
    elif variant.startswith("tracing"):
        root = ALWAYS_ON if variant == "tracing" else TraceIdRatioBased(RATIOS[variant])
        provider = TracerProvider(sampler=ParentBased(root))
        provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
        options = {"tracing": provider}
    app = Chanlite(routes, layer="memory://?capacity=20000", secret_key="b" * 32, **options)
    return app, provider


async def echo_round(app: Chanlite, provider: TracerProvider | None) -> Sample:
    """50 sockets echoing closed-loop; times the echoes (and the export of their
    spans: the provider is flushed before and inside the timing)."""
    sockets = await open_all(app, "/echo/", ECHO_SOCKETS)

    async def client(sock: Socket) -> None:
        for _ in range(ECHOES_PER_SOCKET):
            sock.send(FRAME)
            reply = await sock.outbox.get()
            check(reply.get("text") == FRAME, f"wrong echo: {reply}")

    settle(provider)
    start = time.process_time()
    await asyncio.gather(*(client(sock) for sock in sockets))
    settle(provider)
    sample = cpu_sample(start, ECHO_SOCKETS * ECHOES_PER_SOCKET)
    await asyncio.gather(*(sock.close() for sock in sockets))
    return sample


async def fanout_round(app: Chanlite, provider: TracerProvider | None) -> Sample:
    """1,000 sockets in a room, one sending; times the deliveries (and the export of
    their spans)."""
    flush = provider.force_flush if provider is not None else None
    return await fanout(app, "/room/bench/", MEMBERS, BROADCASTS, FRAME, flush)


def settle(provider: TracerProvider | None) -> None:
    """Export every span ended so far (none to export without tracing)."""
    if provider is not None:
        provider.force_flush()


class Apps:
    """One started app per variant."""

    def __init__(self) -> None:
        self.apps: dict[str, tuple[Chanlite, TracerProvider | None]] = {}

    async def __aenter__(self) -> Apps:
        for variant in VARIANTS:
            app, provider = make_app(variant)
            await app.startup()
            self.apps[variant] = (app, provider)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for app, provider in self.apps.values():
            await app.shutdown()
            if provider is not None:
                provider.shutdown()


async def interleaved(apps: Apps, scenario: str, config: Config) -> dict[str, Stats]:
    """Rates of ``scenario`` per variant, the variants taking turns in each round."""
    round_fn = echo_round if scenario == "echo" else fanout_round
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for index in range(config.warmup + config.rounds):
        order = VARIANTS[index % len(VARIANTS) :] + VARIANTS[: index % len(VARIANTS)]
        for variant in order:
            app, provider = apps.apps[variant]
            sample = await run_round(functools.partial(round_fn, app, provider))
            if index >= config.warmup:
                rates[variant].append(sample.rate)
    return {variant: Stats(tuple(values)) for variant, values in rates.items()}


async def run(config: Config) -> list[Row]:
    """Echo and fan-out per variant, each against observability off."""
    async with Apps() as apps:
        echo = await interleaved(apps, "echo", config)
        fanout = await interleaved(apps, "fanout", config)
    return [
        *rows("echo, 50 sockets", "echoes/s", echo),
        *rows("fan-out to 1,000", "deliveries/s", fanout),
    ]


def rows(scenario: str, unit: str, stats: dict[str, Stats]) -> Sequence[Row]:
    labels = {
        "off": "observability off",
        "metrics": "`metrics=True, health=True`",
        "tracing": "`tracing=`, every trace sampled",
        "tracing-sampled": "`tracing=`, 10% of traces sampled",
        "tracing-1%": "`tracing=`, 1% of traces sampled",
        "tracing-none": "`tracing=`, no trace sampled",
    }
    targets = {"metrics": METRICS_TARGET, "tracing": TRACING_TARGET}
    return [
        Row(
            f"{scenario}, {labels[variant]}",
            unit,
            stats[variant],
            baseline=stats["off"],
            target=targets.get(variant),
        )
        for variant in VARIANTS
    ]
