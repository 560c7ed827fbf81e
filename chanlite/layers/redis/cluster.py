"""Redis Cluster (``redis+cluster://``, ``rediss+cluster://``): :class:`ClusterShards`.

The layer places names in :data:`BUCKETS` buckets, as it places them on the servers
of a sharded URL, and every key of a bucket carries the bucket's hash tag
(``prefix:{c7}:q:name``; see :data:`TAGS`). So each script touches one slot, and
the scripts are the same as on one Redis. A bucket is served by whichever master
owns its slot now: :class:`SlotShard` looks that up in redis-py's slot map and
sends over the lean connection of that master (a :class:`~.shard.RedisShard`).

redis-py's ``RedisCluster`` owns the topology: it reads the slot map from the seed
nodes, follows ``MOVED`` and ``ASK`` (a redirected command is run again through it),
and finds the new master after a failover. chanlite never parses a redirection.
A command redirected by ``MOVED`` or ``ASK`` did not run, so running it again
through redis-py cannot repeat it. After a command fails on a master that went away,
the slot map is read again in the background, so the next commands go to the
replica that took its place.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from ...exceptions import ConfigurationError, LayerError
from .._resp import RespConnection
from ..base import backend_failure
from .addresses import RedisAddress
from .scripts import RedisScript
from .shard import (
    CONNECT_PATIENCE,
    NETWORK_ERRORS,
    SOCKET_CONNECT_TIMEOUT,
    SOCKET_TIMEOUT,
    RedisShard,
    redirected,
)
from .shards import place
from .tls import TLSOptions

logger = logging.getLogger(__package__)  # chanlite.layers.redis, for the whole layer

#: The hash tags of the layer's buckets: every key of bucket ``i`` holds
#: ``{TAGS[i]}``. Their slots are spread evenly over the 16384, so the buckets spread
#: over the masters of any cluster of up to 16. Every process must use the same tags.
TAGS = (
    "c0.36", "c1.128", "c2.135", "c3.8", "c4.55", "c5.49", "c6.66", "c7.268",
    "c8.218", "c9.131", "c10.49", "c11.2", "c12.317", "c13.67", "c14.322", "c15.36",
)  # fmt: skip
#: How many buckets names are placed in.
BUCKETS = len(TAGS)
# What redis-py's cluster client raises (RedisClusterException is no RedisError).
CLIENT_ERRORS = (RedisError, RedisClusterException)
#: How long a command that is safe to repeat tries one master before the slot map is
#: read again and it tries the master found then (seconds).
MASTER_PATIENCE = 0.5
#: Least time between two reads of the slot map after failures (seconds).
REFRESH_INTERVAL = 0.25


class ClusterTopology:
    """The cluster's masters, as redis-py's slot map names them, and a lean
    connection (:class:`RedisShard`) to each.

    :meth:`ready` reads the slot map once; :attr:`generation` counts the changes of
    the map since, so a :class:`SlotShard` knows when to look its master up again.
    """

    def __init__(self, seed: RedisAddress, tls: TLSOptions) -> None:
        self.seed = seed
        self._tls_context = tls.context() if seed.scheme == "rediss+cluster" else None
        kwargs: dict[str, Any] = {}
        if self._tls_context is not None:
            kwargs = tls.redis_kwargs()
        elif tls.given:
            raise ConfigurationError(
                f"TLS option {tls.given[0]!r} needs a rediss+cluster:// URL; this URL is "
                "redis+cluster://"
            )
        client_class: Any = RedisCluster  # redis-py is untyped: through Any for mypy
        self.client = client_class(
            startup_nodes=[ClusterNode(host, port) for host, port in seed.hosts],
            username=seed.username,
            password=seed.password,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_CONNECT_TIMEOUT,
            **kwargs,
        )
        #: Bumped each time the slot map may have changed.
        self.generation = 0
        self._masters: dict[tuple[str, int], RedisShard] = {}
        self._ready = False
        self._unreachable = False
        self._starting = asyncio.Lock()
        self._refreshed_at = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self.closed = False
        #: How errors name the cluster (never with its password).
        self.backend = f"Redis Cluster at {seed.label}"

    async def ready(self) -> None:
        """Read the slot map, once. Raises LayerError when no seed node answers as
        a cluster node, naming why."""
        if self._ready:
            return
        async with self._starting:
            if self._ready:
                return
            if self.closed:
                raise LayerError(self.backend, "closed by aclose()")
            try:
                await self.client.initialize()
            except CLIENT_ERRORS as error:
                failure = _startup_failure(self.backend, error)
                raise failure from failure.__cause__
            self._ready = True
            if self._unreachable:
                self._unreachable = False
                logger.info("%s is reachable again", self.backend)

    def mark_down(self, error: BaseException) -> None:
        """Note that no seed node answered; the first time is logged as a WARNING
        (after that, each master's outages are logged by its own connection)."""
        if not self._unreachable:
            self._unreachable = True
            logger.warning("%s unreachable; retrying (%s)", self.backend, error)

    def master_for(self, key: str) -> RedisShard:
        """The connection to the master that holds ``key``'s slot now (after :meth:`ready`)."""
        node = self.client.get_node_from_key(key)
        return self.master_at(node.host, int(node.port))

    def master_at(self, host: str, port: int) -> RedisShard:
        """The lean connection to the node at ``host:port`` (made on first use)."""
        shard = self._masters.get((host, port))
        if shard is None:
            scheme = "rediss" if self._tls_context is not None else "redis"
            seed = self.seed
            address = RedisAddress(scheme, ((host, port),), 0, None, seed.username, seed.password)
            shard = self._masters[host, port] = RedisShard(address, self._tls_context)
            if self.closed:
                shard.closed = True
        return shard

    async def masters(self) -> list[RedisShard]:
        """Every master of the cluster now."""
        await self.ready()
        return [self.master_at(n.host, int(n.port)) for n in self.client.get_primaries()]

    async def follow(self, command: Sequence[Any]) -> Any:
        """Run one redirected command through redis-py, which follows ``MOVED`` and
        ``ASK`` and updates its slot map; the reply, or the error reply as a
        ResponseError."""
        try:
            reply = await self.client.execute_command(*command)
        except ResponseError as error:  # includes NoScriptError
            reply = error
        except CLIENT_ERRORS as error:
            raise LayerError(self.backend, str(error)) from error
        finally:
            self.generation += 1
        return reply

    def suspect(self, key: str) -> None:
        """A command on ``key``'s master failed: read the slot map again soon, in
        the background (at most one read at a time, :data:`REFRESH_INTERVAL` apart)."""
        if self._refreshing is not None or self.closed:
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh(key))

    async def settled(self) -> None:
        """Return once a read of the slot map that :meth:`suspect` started is over."""
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)

    async def _refresh(self, key: str) -> None:
        try:
            await asyncio.sleep(max(0.0, self._refreshed_at + REFRESH_INTERVAL - time.monotonic()))
            # A keyed command through redis-py: on a dead master it reads the slot
            # map again from the other nodes, and on MOVED it updates it.
            await self.client.execute_command("EXISTS", key)
        except CLIENT_ERRORS as error:
            logger.debug("reading the slot map of %s failed: %s", self.backend, error)
        finally:
            self._refreshed_at = time.monotonic()
            self.generation += 1
            self._refreshing = None

    async def aclose(self) -> None:
        """Close every connection, for good."""
        self.closed = True
        if self._refreshing is not None:
            self._refreshing.cancel()
        for shard in self._masters.values():
            await shard.aclose()
        await self.client.aclose()


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
        tail = (len(keys), *keys, *args)
        [reply] = await self.call_many(
            [("EVALSHA", script.sha, *tail)], retry=retry, patience=patience
        )
        if isinstance(reply, NoScriptError):
            [reply] = await self.call_many(
                [("EVAL", script.source, *tail)], retry=retry, patience=patience
            )
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


def _startup_failure(backend: str, error: Exception) -> LayerError:
    """A failed first read of the slot map as one LayerError that says why. When no
    seed node could be reached (or completed a TLS handshake), its cause is a
    ConnectionError, as for any outage (receives wait it out); otherwise ``error``."""
    text = str(error)
    cause: BaseException = error
    refused = _tls_refusal(error)
    if any(sign in text.lower() for sign in _NOT_A_CLUSTER):
        problem = "the seed node is not a cluster node (cluster mode is off); use redis://"
    elif refused is not None:
        problem = f"the TLS handshake with the seed nodes failed ({refused})"
        cause = RedisConnectionError(problem)
    elif isinstance(error, RedisClusterException) and "connect" in text.lower():
        problem = f"no seed node could be reached ({text})"
        cause = RedisConnectionError(text)
    else:
        problem = text
    failure = LayerError(backend, problem)
    failure.__cause__ = cause
    return failure


def _tls_refusal(error: BaseException) -> str | None:
    """The reason of the SSL error behind ``error`` (redis-py keeps it in the chain of
    its connection error, whose own text some versions garble), if there is one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return str(current.reason or current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# How redis-py's versions say that a seed node runs without cluster mode.
_NOT_A_CLUSTER = ("cluster mode is not enabled", "cluster support disabled")
