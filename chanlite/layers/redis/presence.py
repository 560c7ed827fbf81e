"""Group presence on Redis (:class:`RedisPresence`, a part of the layer): each change
is one script in the group's shard (see ``presence_scripts``).

The sweep goes shard by shard (on a cluster, bucket by bucket): it asks which held
entries' grace ended, and which processes have entries there and no heartbeat, and
removes each of those entries with a script that checks again, so that whichever
sweeper removes an entry gets its data back, and no other.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ...exceptions import LayerError
from ...names import queue_name
from ...presence import Leaves, process_of
from .core import RedisLayerCore
from .presence_scripts import (
    ALIVE_KEY,
    CHANNEL_GROUPS_KEY,
    CLOSE_SCRIPT,
    DUE_SCRIPT,
    HELD_KEY,
    JOIN_SCRIPT,
    PRESENCE_CLIENTS_KEY,
    PRESENCE_KEY,
    PRESENCE_VALUES_KEY,
    PROCESS_KEY,
    PROCESSES_KEY,
    REMOVE_SCRIPT,
)
from .scripts import RedisScript

# How many times a join looks again for a client that moves while it joins.
_JOIN_ATTEMPTS = 5


class RedisPresence(RedisLayerCore):
    """The presence part of :class:`~chanlite.layers.redis.RedisChannelLayer`."""

    # -- keys -------------------------------------------------------------------

    def _presence_keys(self, group: str, *channels: str) -> tuple[int, list[str]]:
        """The shard of ``group``'s presence, and the keys of a script there: the
        group's three, the shard's two, and the process key of each of ``channels``."""
        index = self.shards.index_for(group)
        base = self.shards.key_base(index, self.prefix)
        keys = [
            key.format(prefix=base, name=group)
            for key in (PRESENCE_KEY, PRESENCE_VALUES_KEY, PRESENCE_CLIENTS_KEY)
        ]
        keys += [HELD_KEY.format(prefix=base), PROCESSES_KEY.format(prefix=base)]
        keys += [PROCESS_KEY.format(prefix=base, name=process_of(ch) or "") for ch in channels]
        return index, keys

    def _channel_groups_key(self, channel: str) -> tuple[int, str]:
        index = self.shards.index_for(queue_name(channel))
        base = self.shards.key_base(index, self.prefix)
        return index, CHANNEL_GROUPS_KEY.format(prefix=base, name=channel)

    def _alive_key(self, process: str) -> tuple[int, str]:
        index = self.shards.index_for(process)
        return index, ALIVE_KEY.format(
            prefix=self.shards.key_base(index, self.prefix), name=process
        )

    async def _run_presence(self, script: RedisScript, group: str, channel: str, *args: Any) -> Any:
        index, keys = self._presence_keys(group, channel)
        return await self.shards.shards[index].run(script, keys, [group, channel, *args])

    # -- changes --------------------------------------------------------------------

    async def store_presence_join(
        self, group: str, channel: str, payload: bytes, client_id: str | None
    ) -> bool:
        """Add, update or take over ``channel``'s entry (one script); True if added.
        The channel's own shard notes the group, for when its socket closes."""
        added, _ = await asyncio.gather(
            self._join(group, channel, payload, client_id or ""),
            self._note_channel_group(channel, group),
        )
        return added

    async def _join(self, group: str, channel: str, payload: bytes, client: str) -> bool:
        index, base_keys = self._presence_keys(group)
        shard = self.shards.shards[index]
        for _ in range(_JOIN_ATTEMPTS):
            old = b""
            if client:  # the script checks that it is still there
                old = await shard.call("HGET", base_keys[2], client, retry=True) or b""
            _, keys = self._presence_keys(group, channel, old.decode("ascii"))
            args = [group, channel, payload, client, old, self._group_expiry_ms]
            added = int(await shard.run(JOIN_SCRIPT, keys, args))
            if added >= 0:
                return added == 1
        raise LayerError(shard.backend, f"client {client!r} kept moving while it joined {group!r}")

    async def _note_channel_group(self, channel: str, group: str) -> None:
        index, key = self._channel_groups_key(channel)
        commands = [("SADD", key, group), ("PEXPIRE", key, self._group_expiry_ms)]
        await self.shards.shards[index].call_many(commands, retry=True)

    async def store_presence_remove(self, group: str, channel: str) -> bytes | None:
        """Remove ``channel``'s entry if its socket is open (one script)."""
        data = await self._run_presence(REMOVE_SCRIPT, group, channel, "open")
        return bytes(data) if data else None

    async def store_presence_close(self, channel: str) -> Leaves:
        """Hold ``channel``'s entries with a client id; remove the others."""
        index, key = self._channel_groups_key(channel)
        shard = self.shards.shards[index]
        groups = [group.decode("ascii") for group in await shard.call("SMEMBERS", key, retry=True)]
        grace_ms = max(1, round(self.presence_grace * 1000))
        replies = await asyncio.gather(
            *(self._run_presence(CLOSE_SCRIPT, group, channel, grace_ms) for group in groups)
        )
        await shard.call("UNLINK", key)
        return {
            group: {channel: bytes(data)}
            for group, data in zip(groups, replies, strict=True)
            if isinstance(data, bytes)
        }

    async def presence_heartbeat(self, process: str, ttl: float) -> None:
        """Keep ``process`` alive for ``ttl`` seconds (a key that expires)."""
        index, key = self._alive_key(process)
        ttl_ms = max(1, round(ttl * 1000))
        await self.shards.shards[index].call("SET", key, b"1", "PX", ttl_ms)

    # -- the sweep --------------------------------------------------------------------

    async def store_presence_sweep(self) -> Leaves:
        """Remove the entries whose grace ended and the open entries of processes
        with no heartbeat, shard by shard."""
        alive: dict[str, bool] = {}
        leaves: Leaves = {}
        for index in range(len(self.shards.shards)):
            for (group, channel), data in await self._sweep_shard(index, alive):
                leaves.setdefault(group, {})[channel] = data
        return leaves

    async def _sweep_shard(
        self, index: int, alive: dict[str, bool]
    ) -> list[tuple[tuple[str, str], bytes]]:
        shard = self.shards.shards[index]
        base = self.shards.key_base(index, self.prefix)
        due = await shard.run(DUE_SCRIPT, [HELD_KEY.format(prefix=base)], [], retry=True)
        found = [(_split(member), "due") for member in due]
        processes = await shard.call("SMEMBERS", PROCESSES_KEY.format(prefix=base), retry=True)
        for process in (bytes(name).decode("ascii") for name in processes):
            if not await self._alive(process, alive):
                key = PROCESS_KEY.format(prefix=base, name=process)
                members = await shard.call("SMEMBERS", key, retry=True)
                found += [(_split(member), "open") for member in members]
        replies = await asyncio.gather(
            *(self._run_presence(REMOVE_SCRIPT, g, ch, how) for (ch, g), how in found)
        )
        return [
            ((group, channel), bytes(data))
            for ((channel, group), _), data in zip(found, replies, strict=True)
            if data
        ]

    async def _alive(self, process: str, known: dict[str, bool]) -> bool:
        if process not in known:
            index, key = self._alive_key(process)
            known[process] = bool(await self.shards.shards[index].call("EXISTS", key, retry=True))
        return known[process]

    # -- reading --------------------------------------------------------------------

    async def read_presence(self, group: str) -> dict[str, bytes]:
        """``group``'s entries: channel -> encoded data (one HGETALL)."""
        index, keys = self._presence_keys(group)
        reply = await self.shards.shards[index].call("HGETALL", keys[0], retry=True)
        pairs = (
            dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else reply
        )
        return {bytes(channel).decode("ascii"): _data(entry) for channel, entry in pairs.items()}

    async def read_presence_count(self, group: str) -> int:
        """How many distinct values ``group``'s entries have (one HLEN)."""
        index, keys = self._presence_keys(group)
        return int(await self.shards.shards[index].call("HLEN", keys[1], retry=True))


def _split(member: bytes) -> tuple[str, str]:
    """``(channel, group)`` of a ``b"<channel> <group>"`` member."""
    channel, _, group = bytes(member).decode("ascii").partition(" ")
    return channel, group


def _data(entry: bytes) -> bytes:
    """The encoded data of an entry ``b"<held_ms> <n> <client><data>"``."""
    _, size, rest = bytes(entry).split(b" ", 2)
    return rest[int(size) :]
