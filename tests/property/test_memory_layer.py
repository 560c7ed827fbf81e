"""The ``memory://`` layer against a simple model of DESIGN §5, step by step.

A hypothesis state machine sends, receives (without waiting), adds to, discards from
and sends to groups, flushes, and moves a fake clock, doing the same to a plain
model; after every step the layer must agree with the model. The model holds:

* each queue (a plain channel, or ``prefix!`` for all its ``prefix!local``
  channels) keeps its messages in order, and a receive returns the oldest message
  of the channel it names, once;
* a queue holds ``capacity`` messages (``channel_capacity`` per glob); past that
  ``send`` raises ChannelFull and ``group_send`` skips the member and counts it;
* a message ``expiry`` seconds old is gone; group membership lasts ``group_expiry``
  seconds after the last add;
* a process-specific channel whose message expired unread leaves its groups. The
  layer notices expiry when it looks at a queue (a send, a receive, a group send to
  one of its channels), and the model does the same.

Groups hold at most one channel per queue, so the order in which one group send
reaches two channels of the same queue (which the contract leaves open) never
matters. Each step runs the layer's coroutine on an event loop kept by the machine.
"""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from chanlite import ChannelFull
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.names import queue_name

EXPIRY = 10
GROUP_EXPIRY = 25
CAPACITY = 3
#: ``channel_capacity`` glob and its capacity.
WIDE, WIDE_CAPACITY = "wide*", 5
CHANNELS = ["plain", "wide", "p!x", "p!y", "q!z"]
#: One channel per queue (see the module docstring).
GROUP_MEMBERS = ["plain", "wide", "p!x", "q!z"]
RECEIVE_NAMES = ["plain", "wide", "p!", "q!"]
GROUPS = ["g1", "g2"]


class Entry(NamedTuple):
    expires_at: float
    channel: str
    message: dict[str, Any]


def capacity(key: str) -> int:
    return WIDE_CAPACITY if key.startswith("wide") else CAPACITY


class MemoryLayerModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.runner = asyncio.Runner()
        self.layer = InMemoryChannelLayer(
            clock=lambda: self.now,
            expiry=EXPIRY,
            group_expiry=GROUP_EXPIRY,
            capacity=CAPACITY,
            channel_capacity={WIDE: WIDE_CAPACITY},
        )
        self.queues: dict[str, list[Entry]] = {}
        self.groups: dict[str, dict[str, float]] = {}
        self.skips = 0
        self.sent = 0

    def teardown(self) -> None:
        self.runner.close()

    # -- model helpers --------------------------------------------------------------

    def run(self, coroutine: Any) -> Any:
        return self.runner.run(coroutine)

    def next_message(self, **extra: Any) -> dict[str, Any]:
        self.sent += 1
        return {"n": self.sent, "data": bytes([self.sent % 256]), **extra}

    def has_expired(self, key: str) -> bool:
        return any(entry.expires_at <= self.now for entry in self.queues.get(key, ()))

    def notice_expiry(self, key: str) -> None:
        """Drop the expired messages of a queue the layer looks at."""
        queue = self.queues.get(key, [])
        for entry in [entry for entry in queue if entry.expires_at <= self.now]:
            queue.remove(entry)
            if "!" in entry.channel:
                for members in self.groups.values():
                    members.pop(entry.channel, None)

    def live_members(self, group: str) -> set[str]:
        members = self.groups.get(group, {})
        return {channel for channel, until in members.items() if until > self.now}

    def append(self, channel: str, message: dict[str, Any]) -> bool:
        key = queue_name(channel)
        self.notice_expiry(key)
        queue = self.queues.setdefault(key, [])
        if len(queue) >= capacity(key):
            return False
        queue.append(Entry(self.now + EXPIRY, channel, message))
        return True

    def check_received(self, got: tuple[str | None, Any], keys: list[str]) -> None:
        candidates = [key for key in keys if self.queues.get(key)]
        if not candidates:
            assert got == (None, None)
            return
        channel, message = got
        assert channel is not None, f"nothing received, but {candidates} hold messages"
        key = queue_name(channel)
        assert key in candidates
        oldest = next(entry for entry in self.queues[key] if entry.channel == channel)
        assert message == oldest.message
        self.queues[key].remove(oldest)

    # -- rules ----------------------------------------------------------------------

    @rule(channel=st.sampled_from(CHANNELS))
    def send(self, channel: str) -> None:
        message = self.next_message()
        key = queue_name(channel)
        self.notice_expiry(key)
        if len(self.queues.get(key, ())) >= capacity(key):
            with pytest.raises(ChannelFull) as full:
                self.run(self.layer.send(channel, message))
            assert (full.value.channel, full.value.capacity) == (channel, capacity(key))
        else:
            self.run(self.layer.send(channel, message))
            assert self.append(channel, message)

    @rule(name=st.sampled_from(RECEIVE_NAMES))
    def receive_one(self, name: str) -> None:
        self.notice_expiry(name)
        self.check_received(self.run(self.layer.receive([name], timeout=0)), [name])

    @rule(names=st.lists(st.sampled_from(RECEIVE_NAMES), min_size=2, unique=True))
    def receive_many(self, names: list[str]) -> None:
        # Which queue a receive on several looks at first is open, so read only
        # queues whose expiry is not due: looking at them changes nothing else.
        keys = [name for name in names if not self.has_expired(name)]
        if keys:
            self.check_received(self.run(self.layer.receive(keys, timeout=0)), keys)

    @rule(group=st.sampled_from(GROUPS), channel=st.sampled_from(GROUP_MEMBERS))
    def group_add(self, group: str, channel: str) -> None:
        self.run(self.layer.group_add(group, channel))
        self.groups.setdefault(group, {})[channel] = self.now + GROUP_EXPIRY

    @rule(group=st.sampled_from(GROUPS), channel=st.sampled_from(CHANNELS))
    def group_discard(self, group: str, channel: str) -> None:
        self.run(self.layer.group_discard(group, channel))
        self.groups.get(group, {}).pop(channel, None)

    @rule(group=st.sampled_from(GROUPS))
    def group_send(self, group: str) -> None:
        message = self.next_message(group=group)
        members = sorted(self.live_members(group))
        self.run(self.layer.group_send(group, message))  # never raises ChannelFull
        for channel in members:
            if not self.append(channel, message):
                self.skips += 1
        assert self.layer.group_full_skips == self.skips

    @rule(seconds=st.one_of(st.integers(1, 12), st.sampled_from([EXPIRY, GROUP_EXPIRY])))
    def advance_clock(self, seconds: int) -> None:
        self.now += seconds

    @rule()
    def flush(self) -> None:
        self.run(self.layer.flush())
        self.queues.clear()
        self.groups.clear()

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def group_members_agree(self) -> None:
        for group in GROUPS:
            assert self.run(self.layer.group_channels(group)) == self.live_members(group)

    @invariant()
    def queue_depths_agree(self) -> None:
        # An expired message may be counted until the layer looks at its queue;
        # a live one is always counted.
        depths = self.run(self.layer.stats())["channels"]
        for key in RECEIVE_NAMES:
            queue = self.queues.get(key, [])
            live = sum(entry.expires_at > self.now for entry in queue)
            assert live <= depths.get(key, 0) <= len(queue), key


MemoryLayerModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, database=None
)
TestMemoryLayerModel = MemoryLayerModel.TestCase
