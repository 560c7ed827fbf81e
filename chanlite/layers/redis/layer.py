"""The layer class (:class:`RedisChannelLayer`), assembled from its parts, with what
touches every shard: groups, flush, stats and closing."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ...names import queue_name, validate_channel_name, validate_group_name
from .addresses import DEFAULT_URL
from .local import LocalReaders
from .scripts import (
    GROUP_ADD_SCRIPT,
    GROUP_DISCARD_SCRIPT,
    GROUP_KEY,
    GROUP_MEMBERS_SCRIPT,
    GROUP_SEND_SCRIPT,
    MEMBERSHIP_KEY,
    lua_pattern,
)
from .sending import SendingLayer
from .shard import READ_GRACE, RedisShard

if TYPE_CHECKING:
    from ...stores.base import SessionStore


class RedisChannelLayer(SendingLayer, LocalReaders):
    """A channel layer on Redis (``redis://``, ``rediss://``, ``redis+sentinel://``)."""

    schemes = ("redis", "rediss", "redis+sentinel")

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        super().__init__(url, **options)
        self._capacity_args = [
            arg
            for glob, capacity in self.capacity_patterns
            for arg in (lua_pattern(glob), capacity)
        ]

    def __repr__(self) -> str:
        hosts = [f"{shard.address.label}/{shard.address.db}" for shard in self.shards.shards]
        return f"<RedisChannelLayer prefix={self.prefix!r} hosts={hosts}>"

    # -- groups ---------------------------------------------------------------

    def _group_keys(self, group: str, channel: str) -> list[str]:
        return [
            GROUP_KEY.format(prefix=self.prefix, name=group),
            MEMBERSHIP_KEY.format(prefix=self.prefix, name=channel),
        ]

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        """Deliver ``payload`` to every member: one script call per shard, in parallel."""
        key = GROUP_KEY.format(prefix=self.prefix, name=group)
        process_ttl = self._expiry_ms + self._group_expiry_ms
        ttls = [self._expiry_ms, self._expiry_ms, process_ttl]  # expiry, then the two ttls
        args = [*self._prefixes, payload, *ttls, self.capacity]
        args.extend(self._capacity_args)
        skipped = await asyncio.gather(
            *(shard.run(GROUP_SEND_SCRIPT, [key], args) for shard in self.shards.shards)
        )
        self.group_full_skips += sum(int(count) for count in skipped)

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (on its queue's shard); refreshes its expiry."""
        validate_group_name(group)
        validate_channel_name(channel)
        args = [*self._prefixes, group, channel, self._group_expiry_ms]
        shard = self.shards.shard_for(queue_name(channel))
        await shard.run(GROUP_ADD_SCRIPT, self._group_keys(group, channel), args, retry=True)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; a non-member is a no-op."""
        validate_group_name(group)
        validate_channel_name(channel)
        args = [*self._prefixes, group, channel]
        shard = self.shards.shard_for(queue_name(channel))
        await shard.run(GROUP_DISCARD_SCRIPT, self._group_keys(group, channel), args, retry=True)

    async def group_channels(self, group: str) -> set[str]:
        """The live members of ``group``, from every shard."""
        validate_group_name(group)
        key = GROUP_KEY.format(prefix=self.prefix, name=group)
        replies = await asyncio.gather(
            *(
                shard.run(GROUP_MEMBERS_SCRIPT, [key], self._prefixes, retry=True)
                for shard in self.shards.shards
            )
        )
        return {member.decode("ascii") for members in replies for member in members}

    # -- housekeeping ---------------------------------------------------------

    async def flush(self) -> None:
        """Delete every key under this layer's prefix, on every shard (SCAN + UNLINK)."""
        pattern = f"{self.prefix}:*"
        for shard in self.shards.shards:
            async for keys in shard.scan(pattern):
                await shard.call("UNLINK", *keys, retry=True)

    def make_session_store(self) -> SessionStore:
        """A :class:`~chanlite.stores.redis.RedisSessionStore` on this layer's
        connections, under its prefix."""
        from ...stores.redis import RedisSessionStore

        return RedisSessionStore.for_layer(self)

    async def stats(self) -> dict[str, Any]:
        """Channel depths and group sizes, found with SCAN on every shard."""
        channels: dict[str, int] = {}
        groups: dict[str, int] = {}
        for shard in self.shards.shards:
            await self._count(shard, self._prefixes[0], "LLEN", channels)
            await self._count(shard, self._prefixes[1], "ZCARD", groups)
        return {"channels": channels, "groups": groups}

    async def _count(
        self, shard: RedisShard, prefix: str, command: str, into: dict[str, int]
    ) -> None:
        async for keys in shard.scan(prefix + "*"):
            counts = await shard.call_many([(command, key) for key in keys], retry=True)
            for key, count in zip(keys, counts, strict=True):
                if isinstance(count, int) and count:
                    name = key.decode("ascii")[len(prefix) :]
                    into[name] = into.get(name, 0) + count

    async def aclose(self) -> None:
        """Stop the readers (putting back anything they took), then close connections.

        From now on every operation raises :class:`~chanlite.LayerError`, as do the
        receives still waiting; so does a session store sharing the connections.
        """
        self._local.clear()  # sends to this process's prefix now go to Redis, and fail
        readers = list(self._readers.values())
        for reader in readers:
            reader.stop()
        if readers:
            _, pending = await asyncio.wait([r.task for r in readers], timeout=READ_GRACE)
            for task in pending:
                task.cancel()
        await self.hand_back(list(self._buffers))
        self._flush_batches()  # sends still waiting for their turn go out now
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=READ_GRACE)
        await self.shards.aclose()
