"""The layer class (:class:`RedisChannelLayer`), assembled from its parts, with what
touches every shard: groups, flush, stats and closing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from ...history import EMPTY, KeptHistory, meta_ttl, new_epoch, stamp
from ...names import queue_name, validate_channel_name, validate_group_name
from .addresses import DEFAULT_URL
from .local import LocalReaders
from .lua_glob import lua_pattern
from .presence import RedisPresence
from .scripts import (
    BUCKETS_KEY,
    GROUP_ADD_SCRIPT,
    GROUP_DISCARD_SCRIPT,
    GROUP_KEY,
    GROUP_MEMBERS_SCRIPT,
    GROUP_SEND_SCRIPT,
    HISTORY_APPEND_SCRIPT,
    HISTORY_KEY,
    HISTORY_META_KEY,
    HISTORY_READ_SCRIPT,
    HISTORY_START_SCRIPT,
    QUEUE_KEY,
    RedisScript,
)
from .sending import SendingLayer
from .shard import READ_GRACE, RedisShard

if TYPE_CHECKING:
    from ...stores.base import SessionStore

#: Groups whose member buckets a cluster layer remembers (then it starts over).
MEMBER_BUCKETS_CACHE = 10_000


class RedisChannelLayer(RedisPresence, SendingLayer, LocalReaders):
    """A channel layer on Redis (``redis://``, ``rediss://``, ``redis+sentinel://``)."""

    schemes = (
        "redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"
    )  # fmt: skip

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        super().__init__(url, **options)
        #: On a cluster, the buckets each group's index named at its last group send.
        self._member_buckets: dict[str, tuple[int, ...]] = {}
        self._capacity_args = [
            arg
            for glob, capacity in self.capacity_patterns
            for arg in (lua_pattern(glob), capacity)
        ]

    def __repr__(self) -> str:
        return f"<RedisChannelLayer prefix={self.prefix!r} hosts={self.shards.labels}>"

    # -- groups ---------------------------------------------------------------

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        """Deliver ``payload`` to every member: one script call per shard that holds
        members, in parallel (on a cluster, one write per master).

        A group with history first appends the message to it, in the group's own
        shard, and its members get it stamped with the position that returns
        (:func:`~chanlite.history.stamp`): one more round trip. Offsets follow the
        order of the appends; two processes that send to one group at the same
        moment may deliver their messages in the other order.
        """
        if self.history_size(group):
            position = await self._append_history(group, payload)
            payload = stamp(payload, group, position)
        process_ttl = self._expiry_ms + self._group_expiry_ms
        ttls = [self._expiry_ms, self._expiry_ms, process_ttl]  # expiry, then the two ttls
        args = [payload, *ttls, self.capacity, *self._capacity_args]

        def send_on(index: int) -> Awaitable[Any]:
            keys, prefixes = [self.prefixes[index][1] + group], self.prefixes[index]
            return self.shards.shards[index].run(GROUP_SEND_SCRIPT, keys, [*prefixes, *args])

        delivering = (
            asyncio.gather(*map(send_on, range(len(self.prefixes))))
            if not self.shards.indexes_groups
            else self._send_where_members_are(group, send_on)
        )
        skipped = await delivering
        self.group_full_skips += sum(int(count) for count in skipped)

    # -- history --------------------------------------------------------------

    def _history_keys(self, group: str) -> tuple[int, list[str]]:
        """The shard of ``group``'s history, and its history and meta keys there."""
        index = self.shards.index_for(group)
        base = self.shards.key_base(index, self.prefix)
        keys = [key.format(prefix=base, name=group) for key in (HISTORY_KEY, HISTORY_META_KEY)]
        return index, keys

    async def _append_history(self, group: str, payload: bytes) -> str:
        """Append ``payload`` to ``group``'s history (one script); its position."""
        index, keys = self._history_keys(group)
        ttl_ms = max(1, round(self.history_ttl * 1000))
        meta_ms = max(1, round(meta_ttl(self.history_ttl, self.group_expiry) * 1000))
        args = [*self.prefixes[index], self.history_size(group), ttl_ms, meta_ms]
        args += [new_epoch(), payload]
        shard = self.shards.shards[index]
        return bytes(await shard.run(HISTORY_APPEND_SCRIPT, keys, args)).decode("ascii")

    async def start_history(self, group: str) -> str:
        """``group``'s latest position, its epoch started if it has none."""
        index, keys = self._history_keys(group)
        meta_ms = max(1, round(meta_ttl(self.history_ttl, self.group_expiry) * 1000))
        args = [*self.prefixes[index], meta_ms, new_epoch()]
        reply = await self.shards.shards[index].run(HISTORY_START_SCRIPT, keys, args)
        return bytes(reply).decode("ascii")

    async def read_history(self, group: str) -> KeptHistory:
        """The live entries of ``group``'s history, with its epoch and offset."""
        index, keys = self._history_keys(group)
        shard = self.shards.shards[index]
        reply = await shard.run(HISTORY_READ_SCRIPT, keys, self.prefixes[index], retry=True)
        if not reply:
            return EMPTY
        epoch, offset, *entries = reply
        kept = []
        for entry in entries:
            number, _, payload = bytes(entry).split(b" ", 2)
            kept.append((int(number), payload))
        return KeptHistory(bytes(epoch).decode("ascii"), int(offset), kept)

    async def _send_where_members_are(
        self, group: str, send_on: Callable[[int], Awaitable[Any]]
    ) -> list[Any]:
        """On a cluster: run ``send_on`` for each bucket that the group's bucket index
        names. The index is read in the same write as the sends to the buckets it named
        last time; only buckets it names now that were not among those take a second
        round trip. A member added before the send began is in the index by then, so
        it is reached; a bucket sent to that no longer holds members finds nobody."""
        known = self._member_buckets.get(group, ())
        found, *skipped = await asyncio.gather(self._member_shards(group), *map(send_on, known))
        if len(self._member_buckets) >= MEMBER_BUCKETS_CACHE:
            self._member_buckets.clear()
        self._member_buckets[group] = tuple(found)
        missed = [index for index in found if index not in known]
        if missed:
            skipped += await asyncio.gather(*map(send_on, missed))
        return skipped

    async def _member_shards(self, group: str) -> Sequence[int]:
        """The shards that may hold members of ``group``: every shard; on a cluster,
        the buckets that the group's bucket index names (one read)."""
        if not self.shards.indexes_groups:
            return range(len(self.prefixes))
        index = self.shards.index_for(group)
        key = self._buckets_key(index, group)
        found = await self.shards.shards[index].call("SMEMBERS", key, retry=True)
        return sorted(int(bucket) for bucket in found)

    def _buckets_key(self, index: int, group: str) -> str:
        return BUCKETS_KEY.format(prefix=self.shards.key_base(index, self.prefix), name=group)

    async def _index_member_shard(self, group: str, member_index: int) -> None:
        """Note in ``group``'s bucket index that bucket ``member_index`` holds a member.
        The index lives at least as long as any membership (NX then GT: only ever
        pushed later), so it never misses a bucket that holds a live member."""
        index = self.shards.index_for(group)
        key, ttl = self._buckets_key(index, group), self._group_expiry_ms
        commands = [("SADD", key, member_index), ("PEXPIRE", key, ttl, "NX")]
        commands.append(("PEXPIRE", key, ttl, "GT"))  # NX and GT: Redis 7
        shard = self.shards.shards[index]
        for reply in await shard.call_many(commands, retry=True):
            if isinstance(reply, ResponseError):
                raise shard.failure(reply) from reply

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (on its queue's shard); refreshes its expiry.
        On a cluster, the group's bucket index notes the member's bucket, at once."""
        validate_group_name(group)
        validate_channel_name(channel)
        adding = self._change_group(GROUP_ADD_SCRIPT, group, channel, self._group_expiry_ms)
        if not self.shards.indexes_groups:
            await adding
            return
        member_index = self.shards.index_for(queue_name(channel))
        await asyncio.gather(adding, self._index_member_shard(group, member_index))

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
                    GROUP_MEMBERS_SCRIPT,
                    [self.prefixes[index][1] + group],
                    self.prefixes[index],
                    retry=True,
                )
                for index in await self._member_shards(group)
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
