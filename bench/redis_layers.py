"""Suite ``redis-layers``: chanlite's ``redis://`` layer against channels_redis.

Raw layer throughput, one process, one Redis, no server in between:

* **send+receive pairs** — send one message to a channel and receive it back, in a
  tight loop (pairs/s). channels_redis's ``RedisChannelLayer`` receives on a plain
  channel name (its fast path: a direct ``BZPOPMIN``; a ``new_channel()`` name goes
  through its receive lock and buffer and measured ~15% slower).
  ``RedisPubSubChannelLayer`` receives on a ``new_channel()`` name, since Redis pub/sub
  drops what nobody has subscribed to yet.
* **group_send to 100** — one ``group_send`` to a group of 100 members, then drain all
  100 deliveries (deliveries/s). chanlite members are ``new_channel("bench!")`` names
  read through the one ``bench!`` reader, as an interface server does; channels_redis
  members are ``new_channel()`` names, each received on its own, as Channels
  consumers do.

Every library uses the same private redis-server (pinned to the CPU the benchmark
does not run on) and the same database, flushed before each round; each row
interleaves chanlite's rounds with the baseline's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer  # type: ignore[import-untyped]
from channels_redis.pubsub import RedisPubSubChannelLayer as ChannelsPubSubLayer  # type: ignore[import-untyped]

import chanlite
from chanlite.layers.base import BaseChannelLayer

from .core import Config, Round, Row, Sample, Target, check, compare
from .redis_server import RedisProcess, start_redis, stop_redis
from .ws_servers import Cpus

NAME = "redis-layers"
TITLE = (
    "Redis layers: chanlite redis:// vs channels_redis (RedisChannelLayer, RedisPubSubChannelLayer)"
)
BASELINE = "channels_redis"
DESCRIPTION = (
    "Same message on every layer: "
    '`{"type": "websocket.send", "text": "hello world", "reply_channel": "bench!reply"}`, '
    "all on one private redis-server (no persistence, pinned to the CPU the benchmark "
    "does not run on), one database flushed before each round. "
    "*Pairs*: send to a channel and receive it back, in a tight loop; `RedisChannelLayer` "
    "receives on a plain channel name (its fast path, a direct `BZPOPMIN`; a "
    "`new_channel()` name goes through its receive lock and buffer), "
    "`RedisPubSubChannelLayer` on a `new_channel()` name (pub/sub drops messages "
    "nobody has subscribed to yet). "
    "*Group*: one `group_send` to 100 members, then drain all 100 deliveries (chanlite "
    "members are `new_channel('bench!')` names read through the `bench!` reader, as an "
    "interface server does; channels_redis members are `new_channel()` names received "
    "one by one, as Channels consumers do). Each library at its defaults otherwise "
    "(channels_redis: msgpack). Ratio = chanlite median / channels_redis median; "
    "targets are judged on medians."
)

MESSAGE: dict[str, Any] = {
    "type": "websocket.send",
    "text": "hello world",
    "reply_channel": "bench!reply",
}
CHANNEL = "bench.pairs"
GROUP = "bench-group"
GROUP_SIZE = 100
READER = "bench!"
#: The database every round uses (flushed first) on the private server.
DB = 9
PAIRS_TARGET = Target(minimum=5.0, on_ratio=True)
GROUP_TARGETS = {"core": Target(minimum=3.0, on_ratio=True), "pubsub": Target(1.0, on_ratio=True)}

Factory = Callable[[], Any]


async def run(config: Config) -> list[Row]:
    """Measure pairs and group deliveries against both channels_redis layers."""
    server = await start_redis(Cpus.pick().load)
    try:
        return await measure_all(server, config)
    finally:
        await stop_redis(server)


async def measure_all(server: RedisProcess, config: Config) -> list[Row]:
    """Every row, on ``server``."""
    pairs = config.size(full=3_000, quick=300)
    sends = config.size(full=50, quick=5)
    url = server.url(DB)
    core = partial(ChannelsRedisLayer, hosts=[url], capacity=GROUP_SIZE)
    pubsub = partial(ChannelsPubSubLayer, hosts=[url])
    ours_pairs = fresh(server, partial(chanlite_pairs, url, pairs))
    ours_group = fresh(server, partial(chanlite_group, url, sends))
    rows = [
        await _row(
            "send+receive pairs vs RedisChannelLayer (plain channel name)",
            "pairs/s",
            ours_pairs,
            fresh(server, partial(channels_pairs, core, pairs, specific=False)),
            config,
            PAIRS_TARGET,
        ),
        await _row(
            "send+receive pairs vs RedisPubSubChannelLayer (new_channel() name)",
            "pairs/s",
            ours_pairs,
            fresh(server, partial(channels_pairs, pubsub, pairs, specific=True)),
            config,
        ),
    ]
    for kind, factory in (("core", core), ("pubsub", pubsub)):
        label = "RedisChannelLayer" if kind == "core" else "RedisPubSubChannelLayer"
        rows.append(
            await _row(
                f"group_send to {GROUP_SIZE} members vs {label}",
                "deliveries/s",
                ours_group,
                fresh(server, partial(channels_group, factory, sends)),
                config,
                GROUP_TARGETS[kind],
            )
        )
    return rows


async def _row(
    name: str, unit: str, ours: Round, theirs: Round, config: Config, target: Target | None = None
) -> Row:
    chanlite_stats, channels_stats = await compare(ours, theirs, config)
    return Row(name, unit, chanlite_stats, channels_stats, target)


def fresh(server: RedisProcess, round_fn: Round) -> Round:
    """``round_fn`` run on an emptied database."""

    async def flushed() -> Sample:
        await server.flush_db(DB)
        return await round_fn()

    return flushed


# -- send+receive pairs -----------------------------------------------------------


async def chanlite_pairs(url: str, count: int) -> Sample:
    """Send one message and receive it back, ``count`` times."""
    layer = chanlite.get_layer(url)
    channels = [CHANNEL]
    received: Any = None
    try:
        await layer.send(CHANNEL, MESSAGE)  # untimed: connects
        await layer.receive(channels)
        start = time.perf_counter()
        for _ in range(count):
            await layer.send(CHANNEL, MESSAGE)
            _, received = await layer.receive(channels)
        sample = Sample.since(start, count)
    finally:
        await layer.aclose()
    check(received == MESSAGE, f"chanlite returned {received!r}")
    return sample


async def channels_pairs(factory: Factory, count: int, *, specific: bool) -> Sample:
    """Send one message and receive it back, ``count`` times, on a plain channel name
    or (``specific``) on a ``new_channel()`` name."""
    layer = factory()
    received: Any = None
    try:
        channel = await layer.new_channel() if specific else CHANNEL
        await layer.send(channel, MESSAGE)  # untimed: connects, starts pub/sub reading
        await layer.receive(channel)
        start = time.perf_counter()
        for _ in range(count):
            await layer.send(channel, MESSAGE)
            received = await layer.receive(channel)
        sample = Sample.since(start, count)
    finally:
        await close_channels_layer(layer)
    check(received == MESSAGE, f"channels_redis returned {received!r}")
    return sample


# -- group_send -------------------------------------------------------------------


async def chanlite_group(url: str, sends: int) -> Sample:
    """``group_send`` to 100 members and drain them, ``sends`` times."""
    layer = chanlite.get_layer(url, capacity=GROUP_SIZE)
    try:
        members = {await layer.new_channel(READER) for _ in range(GROUP_SIZE)}
        for member in members:
            await layer.group_add(GROUP, member)
        check(await _chanlite_drain_once(layer) == members, "chanlite missed a member")
        sample = await _chanlite_group_sends(layer, sends)
        check(layer.group_full_skips == 0, "chanlite skipped a full member")
        leftover = await layer.receive([READER], timeout=0)
        check(leftover == (None, None), "chanlite kept a message")
    finally:
        await layer.aclose()
    return sample


async def _chanlite_group_sends(layer: BaseChannelLayer, sends: int) -> Sample:
    readers = [READER]
    delivered = 0
    start = time.perf_counter()
    for _ in range(sends):
        await layer.group_send(GROUP, MESSAGE)
        for _ in range(GROUP_SIZE):
            await layer.receive(readers)
            delivered += 1
    return Sample.since(start, delivered)


async def _chanlite_drain_once(layer: BaseChannelLayer) -> set[str | None]:
    """Untimed check: what one group_send delivers, by full channel name."""
    await layer.group_send(GROUP, MESSAGE)
    names: set[str | None] = set()
    for _ in range(GROUP_SIZE):
        name, _ = await layer.receive([READER])
        names.add(name)
    return names


async def channels_group(factory: Factory, sends: int) -> Sample:
    """``group_send`` to 100 members and drain them, ``sends`` times."""
    layer = factory()
    try:
        members = [await layer.new_channel() for _ in range(GROUP_SIZE)]
        check(len(set(members)) == GROUP_SIZE, "channels_redis made a duplicate channel name")
        for member in members:
            await layer.group_add(GROUP, member)
        await _channels_group_sends(layer, members, 1)  # untimed: every member gets one
        sample = await _channels_group_sends(layer, members, sends)
        check(not _buffered(layer), "channels_redis kept a message")
    finally:
        await close_channels_layer(layer)
    return sample


async def _channels_group_sends(layer: Any, members: list[str], sends: int) -> Sample:
    delivered = 0
    start = time.perf_counter()
    for _ in range(sends):
        await layer.group_send(GROUP, MESSAGE)
        for member in members:
            await layer.receive(member)
            delivered += 1
    return Sample.since(start, delivered)


def _buffered(layer: Any) -> int:
    """Messages a channels_redis layer holds in process, not yet received."""
    if isinstance(layer, ChannelsPubSubLayer):
        return sum(queue.qsize() for queue in layer.channels.values())
    return sum(queue.qsize() for queue in layer.receive_buffer.values())


async def close_channels_layer(layer: Any) -> None:
    """Close a channels_redis layer's connections (untimed)."""
    closing: Awaitable[None] = (
        layer.flush() if isinstance(layer, ChannelsPubSubLayer) else layer.close_pools()
    )
    await closing
