"""Suite ``history-cost``: what group history costs a fan-out, and how long a
reconnecting client takes to recover 1,000 missed messages, in-process.

Like ``observability-cost``, it drives each variant's ``Chanlite`` app through its
ASGI interface in this process with in-memory WebSockets (:mod:`bench.inprocess`),
so what differs between variants is chanlite's own work. Each layer is ``memory://``
or the Redis at :data:`REDIS_URL` (``BENCH_REDIS_URL`` overrides it), each Redis app
under a prefix of its own, deleted at the end.

* Fan-out: 1,000 sockets in ``room-bench``, one of them sending; every frame is
  delivered to all 1,000. History off and history on (``room-*`` keeps 100) take
  turns in every round. Rate: deliveries per second of this process's CPU.
* Recovery: a ``chanlite.v1`` socket learns its position in ``room-1`` (history
  1,000), leaves, misses 1,000 messages and comes back presenting its position
  (:mod:`bench.recovery_client`). Time: from its handshake to its having every
  missed message and the recovery frame, checked.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

from chanlite import Chanlite, Group
from chanlite.layers.base import BaseChannelLayer

from . import recovery_client
from .apps import chanlite_echo, chanlite_recovery
from .core import (
    BenchmarkError,
    Config,
    Round,
    Row,
    Sample,
    Stats,
    Target,
    check,
    run_round,
)
from .inprocess import fanout
from .ws_rows import CostStats

NAME = "history-cost"
TITLE = "What group history costs a fan-out, and how long recovery takes, in-process"
BASELINE = "history off"
DESCRIPTION = (
    "Run with `python -m bench --only history-cost` (a Redis on 127.0.0.1:6379, or "
    "`BENCH_REDIS_URL`). Each variant's `Chanlite` app (workers in-process) is driven "
    "through its ASGI interface by in-memory WebSockets in the benchmark's own process, "
    "so only chanlite's own work differs between variants; each Redis app has a key "
    "prefix of its own, deleted afterwards. *Fan-out*: 1,000 sockets in `room-bench` "
    "(`bench/apps/chanlite_echo.py`'s rooms), one of them sending 20 32-byte frames, "
    "each delivered to all 1,000; history off (the baseline) and "
    '`group_history={"room-*": 100}, history_ttl=300` take turns in every round; '
    "rate = deliveries / this process's CPU time in the timed part (a Redis server's "
    "own work, such as its history appends, is not in it), medians over the rounds. "
    "*Recovery*: with `room-*` keeping 1,000, a `chanlite.v1` socket learns its "
    "position in `room-1`, disconnects, misses 1,000 messages sent to the group and "
    "reconnects presenting its position; the time (wall clock, in ms; lower is better) "
    "runs from its handshake until it has read all 1,000 at consecutive offsets, once "
    "each, and the recovery frame saying `room-1` was recovered."
)

#: The Redis the Redis variants use (each app under a prefix of its own).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/")
#: Layer names of the table, and their base URLs.
LAYERS = {"memory": "memory://", "Redis": REDIS_URL}
#: Sockets in the fan-out's room.
MEMBERS = 1_000
#: Frames one of them sends per round (a quarter in a quick run).
BROADCASTS = 20
#: Every fan-out frame.
FRAME = "x" * 32
#: The fan-out's room: ``/room/bench/`` is the group ``room-bench``.
FANOUT_PATH, FANOUT_GROUP = "/room/bench/", "room-bench"
#: Groups that keep history in the history-on variant, and how many messages.
FANOUT_HISTORY = {"room-*": 100}
#: Seconds a kept message lives (the layers' default, said outright).
HISTORY_TTL = 300
#: History may cost a fan-out at most 15% of its rate.
FANOUT_TARGET = Target(0.85, on_ratio=True)
#: Messages the reconnecting client missed, and the history that keeps them all.
MISSED = 1_000
RECOVERY_HISTORY = {"room-*": MISSED}
#: The recovery's room (``bench/apps/chanlite_recovery.py``).
RECOVERY_PATH, RECOVERY_GROUP = "/room/1/", "room-1"
#: Longest wait for a group to lose its members after their sockets closed (seconds).
LEAVE_TIMEOUT = 10.0
#: How often to look meanwhile (seconds).
LEAVE_POLL = 0.01


def layer_url(base: str, tag: str) -> str:
    """The layer URL of one app: room for the fan-out's frames, and on Redis a key
    prefix no other app (this run's or another's) uses."""
    if base.startswith("memory:"):
        return "memory://?capacity=20000"
    prefix = f"bench-history-{secrets.token_hex(4)}-{tag}"
    return f"{base.rstrip('/')}/?prefix={prefix}&capacity=20000"


@asynccontextmanager
async def started(app: Chanlite) -> AsyncIterator[BaseChannelLayer]:
    """Run ``app``; yield its layer; at the end delete what it stored, and stop it."""
    await app.startup()
    try:
        assert app.layer is not None
        yield app.layer
    finally:
        try:
            if app.layer is not None:
                await app.layer.flush()
        finally:
            await app.shutdown()


async def wait_empty(layer: BaseChannelLayer, group: str) -> None:
    """Wait until ``group`` has no members (closed sockets' disconnect consumers run
    after the close), so a round starts with only its own sockets in the room."""
    for _ in range(round(LEAVE_TIMEOUT / LEAVE_POLL)):
        if not await layer.group_channels(group):
            return
        await asyncio.sleep(LEAVE_POLL)
    raise BenchmarkError(f"{group!r} kept members {LEAVE_TIMEOUT:.0f} s after they left")


# -- fan-out ------------------------------------------------------------------------


def fanout_app(base: str, history: bool) -> Chanlite:
    """The fan-out app on ``base``, with or without history for ``room-*``."""
    options: dict[str, Any] = (
        {"group_history": FANOUT_HISTORY, "history_ttl": HISTORY_TTL} if history else {}
    )
    url = layer_url(base, "on" if history else "off")
    return Chanlite(chanlite_echo.routes, layer=url, secret_key="b" * 32, **options)


async def fanout_round(
    app: Chanlite, layer: BaseChannelLayer, broadcasts: int, *, history: bool
) -> Sample:
    """1,000 sockets in a room, one sending; times the deliveries."""
    await wait_empty(layer, FANOUT_GROUP)
    sample = await fanout(app, FANOUT_PATH, MEMBERS, broadcasts, FRAME)
    await check_history(layer, history=history)
    return sample


async def check_history(layer: BaseChannelLayer, *, history: bool) -> None:
    """Fail unless the room kept its frames exactly when the variant keeps history."""
    kept = await layer.group_history(FANOUT_GROUP)
    check(bool(kept.messages) == history, f"history {'on' if history else 'off'}, kept {kept}")
    check(not history or kept.messages[-1][1] == {"text": FRAME}, f"kept {kept.messages[-1:]}")


async def fanout_rows(config: Config) -> list[Row]:
    """History on against off, per layer, the two taking turns in every round."""
    rows = []
    broadcasts = config.size(BROADCASTS, BROADCASTS // 4)
    for label, base in LAYERS.items():
        async with AsyncExitStack() as stack:
            rounds: dict[str, Round] = {}
            for variant, history in (("off", False), ("on", True)):
                app = fanout_app(base, history)
                layer = await stack.enter_async_context(started(app))
                rounds[variant] = partial(fanout_round, app, layer, broadcasts, history=history)
            stats = await interleaved(rounds, config)
        rows.append(
            Row(
                f"fan-out to 1,000, {label}, history on vs off",
                "deliveries/s",
                stats["on"],
                baseline=stats["off"],
                target=FANOUT_TARGET,
            )
        )
    return rows


async def interleaved(rounds: dict[str, Round], config: Config) -> dict[str, Stats]:
    """Rates per variant, the variants taking turns in each round (starting with a
    different one each time, so neither always follows the other)."""
    names = list(rounds)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for index in range(config.warmup + config.rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            sample = await run_round(rounds[name])
            if index >= config.warmup:
                rates[name].append(sample.rate)
    return {name: Stats(tuple(values)) for name, values in rates.items()}


# -- recovery -----------------------------------------------------------------------


def recovery_app(base: str) -> Chanlite:
    """The recovery app on ``base``: ``room-*`` keeps the last 1,000 messages."""
    return Chanlite(
        chanlite_recovery.routes,
        layer=layer_url(base, "recovery"),
        secret_key="b" * 32,
        group_history=RECOVERY_HISTORY,
        history_ttl=HISTORY_TTL,
    )


async def learn_position(app: Chanlite, layer: BaseChannelLayer) -> str:
    """Join ``room-1`` presenting no position, take the latest position from the
    recovery frame, and leave."""
    # A group with no message yet has no position to present later.
    await Group(RECOVERY_GROUP, layer).asend({"text": "before"})
    sock = await recovery_client.connect(app, RECOVERY_PATH, {})
    rejoined = await recovery_client.read_rejoin(sock, 0)
    await sock.close()
    await wait_empty(layer, RECOVERY_GROUP)
    return recovery_client.position_of(rejoined, RECOVERY_GROUP)


async def recovery_round(app: Chanlite, layer: BaseChannelLayer) -> Sample:
    """One client misses 1,000 messages; times its reconnect until it has them."""
    position = await learn_position(app, layer)
    texts = [f"missed {number}" for number in range(MISSED)]
    group = Group(RECOVERY_GROUP, layer)
    for text in texts:
        await group.asend({"text": text})
    start = time.perf_counter()
    sock = await recovery_client.connect(app, RECOVERY_PATH, {RECOVERY_GROUP: position})
    rejoined = await recovery_client.read_rejoin(sock, MISSED)
    sample = Sample.since(start, MISSED)
    recovery_client.check_recovered(rejoined, RECOVERY_GROUP, position, texts)
    await sock.close()
    return sample


async def recovery_rows(config: Config) -> list[Row]:
    """The recovery time per layer, in milliseconds."""
    rows = []
    for label, base in LAYERS.items():
        app = recovery_app(base)
        async with started(app) as layer:
            times = []
            for index in range(config.warmup + config.rounds):
                sample = await run_round(partial(recovery_round, app, layer))
                if index >= config.warmup:
                    times.append(sample.seconds * 1000)
        rows.append(
            Row(
                f"recovery of 1,000 missed messages, {label}",
                "ms",
                CostStats(tuple(times)),
            )
        )
    return rows


async def run(config: Config) -> list[Row]:
    """The fan-out rows, then the recovery rows (measured first: a server that does
    not speak the recovery protocol fails the suite in seconds, not minutes)."""
    recovery = await recovery_rows(config)
    return [*await fanout_rows(config), *recovery]
