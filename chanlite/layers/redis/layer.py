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
    QUEUE_KEY,
    RedisScript,
    lua_pattern,
)
from .sending import SendingLayer
from .shard import READ_GRACE, RedisShard

if TYPE_CHECKING:
    from ...stores.base import SessionStore


class RedisChannelLayer(SendingLayer, LocalReaders):
    """A channel layer on Redis (``redis://``, ``rediss://``, ``redis+sentinel://``)."""

    schemes = ("redis", "rediss", "redis+sentinel", "redis+cluster", "rediss+cluster")

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        super().__init__(url, **options)
        self._capacity_args = [
            arg
            for glob, capacity in self.capacity_patterns
            for arg in (lua_pattern(glob), capacity)
        ]

    def __repr__(self) -> str:
        return f"<RedisChannelLayer prefix={self.prefix!r} hosts={self.shards.labels}>"

    # -- groups ---------------------------------------------------------------

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        """Deliver ``payload`` to every member: one script call per shard, in parallel
        (on a cluster, one write per master)."""
        process_ttl = self._expiry_ms + self._group_expiry_ms
        ttls = [self._expiry_ms, self._expiry_ms, process_ttl]  # expiry, then the two ttls
        tail = [payload, *ttls, self.capacity, *self._capacity_args]
        skipped = await asyncio.gather(
            *(
                self.shards.shards[index].run(
                    GROUP_SEND_SCRIPT, [prefixes[1] + group], [*prefixes, *tail]
                )
                for index, prefixes in enumerate(self.prefixes)
            )
        )
        self.group_full_skips += sum(int(count) for count in skipped)

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (on its queue's shard); refreshes its expiry."""
        validate_group_name(group)
        validate_channel_name(channel)
        await self._change_group(GROUP_ADD_SCRIPT, group, channel, self._group_expiry_ms)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; a non-member is a no-op."""
        validate_group_name(group)
        validate_channel_name(channel)
        await self._change_group(GROUP_DISCARD_SCRIPT, group, channel)

    async def _change_group(
        self, script: RedisScript, group: str, channel: str, *more: Any
    ) -> None:
        """Run a membership script on the shard of ``channel``'s queue, where the
        member is kept, with the group part and the channel's memberships as keys."""
        index = self.shards.index_for(queue_name(channel))
        prefixes = self.prefixes[index]
        keys = [prefixes[1] + group, prefixes[2] + channel]
        args = [*prefixes, group, channel, *more]
        await self.shards.shards[index].run(script, keys, args, retry=True)

    async def group_channels(self, group: str) -> set[str]:
        """The live members of ``group``, from every shard."""
        validate_group_name(group)
        replies = await asyncio.gather(
            *(
                self.shards.shards[index].run(
                    GROUP_MEMBERS_SCRIPT, [prefixes[1] + group], prefixes, retry=True
                )
                for index, prefixes in enumerate(self.prefixes)
            )
        )
        return {member.decode("ascii") for members in replies for member in members}

    # -- housekeeping ---------------------------------------------------------

    async def flush(self) -> None:
        """Delete every key under this layer's prefix, on every server (SCAN + UNLINK;
        on a cluster, on every master)."""
        pattern = f"{self.prefix}:*"
        for node in await self.shards.nodes():
            async for keys in node.scan(pattern):
                # One UNLINK per key: on a cluster, keys of several slots cannot share one.
                await node.call_many([("UNLINK", key) for key in keys], retry=True)

    def make_session_store(self) -> SessionStore:
        """A :class:`~chanlite.stores.redis.RedisSessionStore` on this layer's
        connections, under its prefix."""
        from ...stores.redis import RedisSessionStore

        return RedisSessionStore.for_layer(self)

    async def stats(self) -> dict[str, Any]:
        """Channel depths and group sizes, found with SCAN on every server (on a
        cluster, on every master)."""
        channels: dict[str, int] = {}
        groups: dict[str, int] = {}
        base = self.shards.key_pattern(self.prefix)
        for node in await self.shards.nodes():
            await self._count(node, QUEUE_KEY.format(prefix=base, name=""), "LLEN", channels)
            await self._count(node, GROUP_KEY.format(prefix=base, name=""), "ZCARD", groups)
        return {"channels": channels, "groups": groups}

    async def _count(
        self, node: RedisShard, pattern: str, command: str, into: dict[str, int]
    ) -> None:
        """Add up ``command`` (LLEN, ZCARD) of the keys matching ``pattern`` + ``*``,
        by the name after the pattern's last ``:``."""
        kind = pattern[pattern.rindex(":", 0, -1) :]  # ":q:" or ":g:"
        start = len(self.prefix)
        async for keys in node.scan(pattern + "*"):
            counts = await node.call_many([(command, key) for key in keys], retry=True)
            for key, count in zip(keys, counts, strict=True):
                if isinstance(count, int) and count:
                    text = key.decode("ascii")
                    name = text[text.index(kind, start) + len(kind) :]
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
