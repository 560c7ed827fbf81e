"""Redis Cluster (``redis+cluster://``, ``rediss+cluster://``): :class:`ClusterShards`.

The layer places names in :data:`BUCKETS` buckets, as it places them on the servers
of a sharded URL, and every key of a bucket carries the bucket's hash tag
(``prefix:{c7}:q:name``; see :data:`TAGS`). So each script touches one slot, and
the scripts are the same as on one Redis. A bucket is served by whichever master
owns its slot now: :class:`SlotShard` looks that up in the slot map that redis-py
keeps (see ``topology``) and sends over the lean connection of that master (a
:class:`~.shard.RedisShard`).

A command redirected by ``MOVED`` or ``ASK`` did not run, so it is run again through
redis-py, which follows the redirection. After a command fails on a master that went
away, the slot map is read again in the background, so the next commands go to the
replica that took its place.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from ...exceptions import LayerError
from .._resp import RespConnection
from ..base import backend_failure
from .addresses import RedisAddress
from .scripts import RedisScript, run_script
from .shard import CONNECT_PATIENCE, NETWORK_ERRORS, RedisShard, redirected
from .shards import place
from .tls import TLSOptions
from .topology import ClusterTopology

#: The hash tags of the layer's buckets: every key of bucket ``i`` holds
#: ``{TAGS[i]}``. Their slots are spread evenly over the 16384, so the buckets spread
#: over the masters of any cluster of up to 16. Every process must use the same tags.
TAGS = (
    "c0.36", "c1.128", "c2.135", "c3.8", "c4.55", "c5.49", "c6.66", "c7.268",
    "c8.218", "c9.131", "c10.49", "c11.2", "c12.317", "c13.67", "c14.322", "c15.36",
)  # fmt: skip
#: How many buckets names are placed in.
BUCKETS = len(TAGS)
#: How long a command that is safe to repeat tries one master before the slot map is
#: read again and it tries the master found then (seconds).
MASTER_PATIENCE = 0.5


class SlotShard:
    """One bucket of the layer: its hash tag's slot, on whichever master holds it.

    Offers what the layer uses of a :class:`RedisShard` (commands, scripts, blocking
    reads), each sent to the bucket's master of the moment.
    """

    def __init__(self, topology: ClusterTopology, tag: str) -> None:
        self.topology = topology
        self.tag = tag
        #: A key in this bucket's slot (for asking redis-py where it is).
        self.slot_key = "{" + tag + "}"
        self._master: RedisShard | None = None
        self._generation = -1
        self._lent: dict[RespConnection, RedisShard] = {}
        self.address = topology.seed
        self.backend = topology.backend

    def __repr__(self) -> str:
        return f"<SlotShard {{{self.tag}}} of {self.topology.seed.label}>"

    def key_base(self, prefix: str) -> str:
        """The start of every key of this bucket under ``prefix``: ``prefix:{tag}``."""
        return f"{prefix}:{{{self.tag}}}"

    # -- what the layer reads of a shard ---------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether a command goes out without connecting or looking up first."""
        master = self._master
        return (
            master is not None and self._generation == self.topology.generation and master.connected
        )

    @property
    def blmpop(self) -> bool:
        """Whether the bucket's master reads with BLMPOP (Redis 7)."""
        return self._master.blmpop if self._master is not None else True

    @blmpop.setter
    def blmpop(self, value: bool) -> None:
        if self._master is not None:
            self._master.blmpop = value

    def failure(self, error: BaseException) -> LayerError:
        """``error`` as a LayerError naming the cluster."""
        return error if isinstance(error, LayerError) else backend_failure(self.backend, error)

    def closed_error(self) -> LayerError:
        """The error of a command after :meth:`aclose`."""
        return LayerError(self.backend, "closed by aclose()")

    def transient(self, error: BaseException) -> bool:
        """Whether a blocking read that failed with ``error`` should be tried again:
        the master (or every seed node) went away, or the slot moved."""
        if isinstance(error, LayerError):
            error = error.__cause__ or error
        return isinstance(error, NETWORK_ERRORS) or redirected(error)

    def mark_down(self, error: BaseException) -> None:
        """Note a failure of this bucket's master (or, before the slot map was read,
        of every seed node); the slot map is read again."""
        if self._master is not None and isinstance(error, NETWORK_ERRORS):
            self._master.mark_down(error)
        elif self._master is None:
            self.topology.mark_down(error)
        self.topology.suspect(self.slot_key)

    # -- commands ------------------------------------------------------------------

    async def master(self) -> RedisShard:
        """The master that holds this bucket now."""
        master = self._master
        if master is None or self._generation != self.topology.generation:
            await self.topology.ready()
            self._generation = self.topology.generation
            master = self._master = self.topology.master_for(self.slot_key)
        return master

    async def call(
        self, *args: Any, retry: bool = False, patience: float = CONNECT_PATIENCE
    ) -> Any:
        """As :meth:`RedisShard.call`, on this bucket's master."""
        [reply] = await self.call_many([args], retry=retry, patience=patience)
        if isinstance(reply, ResponseError):
            raise self.failure(reply) from reply
        return reply

    async def call_many(
        self,
        commands: Sequence[Sequence[Any]],
        *,
        retry: bool = False,
        patience: float = CONNECT_PATIENCE,
    ) -> list[Any]:
        """As :meth:`RedisShard.call_many`, on this bucket's master. Commands that
        were redirected run again through redis-py; after a network failure the slot
        map is read again, and a ``retry`` command is tried on the master found."""
        deadline = time.monotonic() + patience
        while True:
            master = await self.master()
            try:
                left = max(0.0, deadline - time.monotonic())
                if retry:  # leave time to try the master that the slot map names next
                    left = min(left, MASTER_PATIENCE)
                replies = await master.call_many(commands, retry=retry, patience=left)
            except LayerError as error:
                if not isinstance(error.__cause__, NETWORK_ERRORS):
                    raise
                master.mark_down(error.__cause__)
                self.topology.suspect(self.slot_key)
                if not retry or time.monotonic() >= deadline:
                    raise
                await self.topology.settled()
                continue
            for index, reply in enumerate(replies):
                if redirected(reply):
                    replies[index] = await self.topology.follow(commands[index])
            return replies

    async def run(
        self,
        script: RedisScript,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        retry: bool = False,
        patience: float = CONNECT_PATIENCE,
    ) -> Any:
        """As :meth:`RedisShard.run`, on this bucket's master."""
        reply = await run_script(self.call_many, script, keys, args, retry, patience)
        if isinstance(reply, ResponseError):
            raise self.failure(reply) from reply
        return reply

    # -- blocking reads --------------------------------------------------------------

    async def blocking_connection(self) -> RespConnection:
        """A connection of its own, to this bucket's master, for a blocking read."""
        master = await self.master()
        connection = await master.blocking_connection()
        self._lent[connection] = master
        return connection

    async def release_blocking(self, connection: RespConnection, *, broken: bool = False) -> None:
        """Give back a blocking connection to the master that lent it."""
        master = self._lent.pop(connection, None)
        if master is not None:
            await master.release_blocking(connection, broken=broken)
        else:
            connection.close()


class ClusterShards:
    """A Redis Cluster, seen by the layer as :data:`BUCKETS` shards (see the module)."""

    #: Whether groups keep an index of the buckets that hold their members: yes, so
    #: a group send runs where members are, not on all 16 buckets.
    indexes_groups = True

    def __init__(self, seed: RedisAddress, tls: TLSOptions) -> None:
        self.addresses = [seed]
        self.topology = ClusterTopology(seed, tls)
        self.shards = [SlotShard(self.topology, tag) for tag in TAGS]
        self._placed: dict[str, int] = {}
        self.closed = False

    def __repr__(self) -> str:
        return f"<ClusterShards {self.topology.seed.label}>"

    @property
    def labels(self) -> list[str]:
        """How logs and reprs name the servers."""
        return [f"cluster {self.topology.seed.label}"]

    def key_base(self, index: int, prefix: str) -> str:
        """The start of the keys of shard ``index`` under ``prefix``."""
        return self.shards[index].key_base(prefix)

    def key_pattern(self, prefix: str) -> str:
        """A SCAN pattern of the :meth:`key_base` of every shard."""
        return f"{prefix}:{{*}}"

    async def nodes(self) -> list[RedisShard]:
        """Every master, each once (for SCAN)."""
        return await self.topology.masters()

    def index_for(self, name: str) -> int:
        """The bucket that holds ``name``."""
        index = self._placed.get(name)
        if index is None:
            index = place(name, BUCKETS)
            if len(self._placed) > 10_000:
                self._placed.clear()
            self._placed[name] = index
        return index

    def shard_for(self, name: str) -> SlotShard:
        """The bucket that holds ``name``."""
        return self.shards[self.index_for(name)]

    def refuse_if_closed(self) -> None:
        """Raise LayerError after :meth:`aclose`."""
        if self.closed:
            raise self.shards[0].closed_error()

    async def aclose(self) -> None:
        """Close every connection to the cluster, for good."""
        self.closed = True
        await self.topology.aclose()
