"""What every part of the Redis layer shares (:class:`RedisLayerCore`): its shards,
key prefixes and TTLs, the attached local readers, and its background tasks.

The layer is one object assembled from a part per job (``receiving``, ``local``,
``sending``, then ``layer``), each a subclass of this one, so a hot path reaches any
part's state as a plain attribute, with no object in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from .._capabilities import LocalReader
from ..base import BaseChannelLayer
from .addresses import parse_redis_url
from .cluster import ClusterShards
from .scripts import GROUP_KEY, MEMBERSHIP_KEY, QUEUE_KEY
from .shards import RedisShards
from .tls import TLSOptions

#: The servers of a layer or store: a list of shards, or a cluster's buckets.
Shards = RedisShards | ClusterShards

logger = logging.getLogger(__package__)  # chanlite.layers.redis, for the whole layer


class RedisLayerCore(BaseChannelLayer):
    """The state and helpers that the parts of
    :class:`~chanlite.layers.redis.RedisChannelLayer` share; not a layer by itself."""

    def __init__(self, url: str, **options: Any) -> None:
        tls = TLSOptions.take(options)
        super().__init__(**options)
        self.shards = open_shards(url, tls)
        #: The key prefixes of queues, groups and memberships, by shard index (the
        #: same for every shard of a plain URL; a cluster bucket's carry its tag).
        self.prefixes = [
            tuple(
                key.format(prefix=self.shards.key_base(index, self.prefix), name="")
                for key in (QUEUE_KEY, GROUP_KEY, MEMBERSHIP_KEY)
            )
            for index in range(len(self.shards.shards))
        ]
        self._expiry_ms = max(1, round(self.expiry * 1000))
        self._group_expiry_ms = max(1, round(self.group_expiry * 1000))
        #: Attached local readers, by process prefix (see ``attach_reader``).
        self._local: dict[str, LocalReader] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- keys -------------------------------------------------------------------

    def queue_keys(self, index: int, names: Iterable[str]) -> list[str]:
        """The Redis keys of the queues of stored channel names, all on shard ``index``."""
        prefix = self.prefixes[index][0]
        return [prefix + name for name in names]

    def _queue_ttl(self, name: str) -> int:
        # A process-specific queue outlives its messages by group_expiry, so a group
        # send that comes late still finds the expired message and evicts the member
        # (after which the queue lives only as long as its messages: see
        # _LUA_HELPERS in scripts).
        return self._expiry_ms + (self._group_expiry_ms if name.endswith("!") else 0)

    # -- local readers and background work -----------------------------------------

    @staticmethod
    def _hand(deliver: LocalReader, channels: list[str], payload: bytes) -> None:
        """Give ``payload`` to a local reader; if it raises, the message is dropped."""
        try:
            deliver(channels, payload)
        except Exception:
            logger.exception("a local reader failed; %d message(s) dropped", len(channels))

    def spawn(self, coroutine: Any) -> None:
        """Run a background coroutine, keeping it alive until it ends."""
        self.keep(asyncio.get_running_loop().create_task(coroutine))

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Keep a background ``task`` alive until it ends, and log its failure."""
        self._tasks.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("background Redis call failed: %s", task.exception())


def open_shards(url: str, tls: TLSOptions | None = None) -> Shards:
    """The servers of a Redis URL: :class:`ClusterShards` for a ``redis+cluster://``
    or ``rediss+cluster://`` URL, else :class:`RedisShards`."""
    addresses = parse_redis_url(url)
    if addresses[0].cluster:
        return ClusterShards(addresses[0], tls or TLSOptions())
    return RedisShards(url, tls)
