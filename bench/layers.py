"""Suite ``layers``: chanlite's memory layer against Channels 4's InMemoryChannelLayer.

Three measurements, each with the same message on both layers:

* **send+receive pairs** — send one message to a channel and receive it back, in a
  tight loop (pairs/s).
* **batched pairs** — send a batch of messages to a channel, then receive the whole
  batch (pairs/s).
* **group_send to 100** — one ``group_send`` to a group of 100 members, then drain all
  100 deliveries (deliveries/s). chanlite members are ``new_channel("bench!")`` names,
  all read through the ``bench!`` reader as an interface server would; Channels 4
  members are ``new_channel()`` names, each received on its own.

Each layer is used the way its own documentation shows; rounds are interleaved.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from channels.layers import InMemoryChannelLayer as ChannelsMemoryLayer  # type: ignore[import-untyped]

import chanlite
from chanlite.layers.base import BaseChannelLayer

from .core import Config, Round, Row, Sample, Target, check, compare

NAME = "layers"
TITLE = "Channel layers: chanlite memory:// vs Channels 4 InMemoryChannelLayer"
BASELINE = "Channels 4"
DESCRIPTION = (
    "Same message on both layers: "
    '`{"type": "websocket.send", "text": "hello world", "reply_channel": "bench!reply"}`. '
    "*Pairs*: send to a channel and receive it back, in a tight loop. "
    "*Batched*: send a batch, then receive the batch. "
    "*Group*: one `group_send` to 100 members, then drain all 100 deliveries "
    "(chanlite members are `new_channel('bench!')` names read through the `bench!` reader; "
    "Channels 4 members are `new_channel()` names received one by one). "
    "Ratio = chanlite median / Channels 4 median; targets are judged on medians."
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
#: A layer at least as fast as Channels 4 on its median.
AT_LEAST_AS_FAST = Target(minimum=1.0, on_ratio=True)


async def run(config: Config) -> list[Row]:
    """Measure pairs, batched pairs and group deliveries on both layers."""
    pairs = config.size(full=100_000, quick=5_000)
    batch = 1_000
    batches = config.size(full=100, quick=5)
    sends = config.size(full=1_000, quick=50)
    return [
        await _row(
            "send+receive pairs",
            "pairs/s",
            partial(chanlite_pairs, pairs),
            partial(channels_pairs, pairs),
            config,
        ),
        await _row(
            f"batched pairs ({batch:,} per batch)",
            "pairs/s",
            partial(chanlite_batched, batches, batch),
            partial(channels_batched, batches, batch),
            config,
        ),
        await _row(
            f"group_send to {GROUP_SIZE} members",
            "deliveries/s",
            partial(chanlite_group, sends),
            partial(channels_group, sends),
            config,
        ),
    ]


async def _row(name: str, unit: str, ours: Round, theirs: Round, config: Config) -> Row:
    chanlite_stats, channels_stats = await compare(ours, theirs, config)
    return Row(name, unit, chanlite_stats, channels_stats, AT_LEAST_AS_FAST)


# -- layers ---------------------------------------------------------------------


def chanlite_layer(capacity: int) -> BaseChannelLayer:
    """A fresh chanlite memory layer."""
    return chanlite.get_layer("memory://", capacity=capacity)


def channels_layer(capacity: int) -> ChannelsMemoryLayer:
    """A fresh Channels 4 in-memory layer."""
    return ChannelsMemoryLayer(capacity=capacity)


# -- send+receive pairs -----------------------------------------------------------


async def chanlite_pairs(count: int) -> Sample:
    """Send one message and receive it back, ``count`` times."""
    layer = chanlite_layer(capacity=100)
    channels = [CHANNEL]
    received: Any = None
    start = time.perf_counter()
    for _ in range(count):
        await layer.send(CHANNEL, MESSAGE)
        _, received = await layer.receive(channels)
    sample = Sample.since(start, count)
    check(received == MESSAGE, f"chanlite returned {received!r}")
    return sample


async def channels_pairs(count: int) -> Sample:
    """Send one message and receive it back, ``count`` times."""
    layer = channels_layer(capacity=100)
    received: Any = None
    start = time.perf_counter()
    for _ in range(count):
        await layer.send(CHANNEL, MESSAGE)
        received = await layer.receive(CHANNEL)
    sample = Sample.since(start, count)
    check(received == MESSAGE, f"Channels 4 returned {received!r}")
    return sample


# -- batched pairs ----------------------------------------------------------------


async def chanlite_batched(batches: int, size: int) -> Sample:
    """Send ``size`` messages then receive ``size``, ``batches`` times."""
    layer = chanlite_layer(capacity=size)
    channels = [CHANNEL]
    received: Any = None
    start = time.perf_counter()
    for _ in range(batches):
        for _ in range(size):
            await layer.send(CHANNEL, MESSAGE)
        for _ in range(size):
            _, received = await layer.receive(channels)
    sample = Sample.since(start, batches * size)
    check(received == MESSAGE, f"chanlite returned {received!r}")
    check(await layer.receive(channels, timeout=0) == (None, None), "chanlite kept a message")
    return sample


async def channels_batched(batches: int, size: int) -> Sample:
    """Send ``size`` messages then receive ``size``, ``batches`` times."""
    layer = channels_layer(capacity=size)
    received: Any = None
    start = time.perf_counter()
    for _ in range(batches):
        for _ in range(size):
            await layer.send(CHANNEL, MESSAGE)
        for _ in range(size):
            received = await layer.receive(CHANNEL)
    sample = Sample.since(start, batches * size)
    check(received == MESSAGE, f"Channels 4 returned {received!r}")
    check(not layer.channels, "Channels 4 kept a message")
    return sample


# -- group_send -------------------------------------------------------------------


async def chanlite_group(sends: int) -> Sample:
    """``group_send`` to 100 members and drain them, ``sends`` times."""
    layer = chanlite_layer(capacity=GROUP_SIZE)
    members = {await layer.new_channel(READER) for _ in range(GROUP_SIZE)}
    for member in members:
        await layer.group_add(GROUP, member)
    check(await _chanlite_drain_once(layer) == members, "chanlite missed a member")
    readers = [READER]
    delivered = 0
    start = time.perf_counter()
    for _ in range(sends):
        await layer.group_send(GROUP, MESSAGE)
        for _ in range(GROUP_SIZE):
            await layer.receive(readers)
            delivered += 1
    sample = Sample.since(start, delivered)
    check(layer.group_full_skips == 0, "chanlite skipped a full member")
    check(await layer.receive(readers, timeout=0) == (None, None), "chanlite kept a message")
    return sample


async def _chanlite_drain_once(layer: BaseChannelLayer) -> set[str | None]:
    """Untimed check: what one group_send delivers, by full channel name."""
    await layer.group_send(GROUP, MESSAGE)
    names: set[str | None] = set()
    for _ in range(GROUP_SIZE):
        name, _ = await layer.receive([READER])
        names.add(name)
    return names


async def channels_group(sends: int) -> Sample:
    """``group_send`` to 100 members and drain them, ``sends`` times."""
    layer = channels_layer(capacity=GROUP_SIZE)
    members = [await layer.new_channel() for _ in range(GROUP_SIZE)]
    check(len(set(members)) == GROUP_SIZE, "Channels 4 made a duplicate channel name")
    for member in members:
        await layer.group_add(GROUP, member)
    delivered = 0
    start = time.perf_counter()
    for _ in range(sends):
        await layer.group_send(GROUP, MESSAGE)
        for member in members:
            await layer.receive(member)
            delivered += 1
    sample = Sample.since(start, delivered)
    check(not layer.channels, "Channels 4 kept a message")
    return sample
