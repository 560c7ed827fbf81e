"""A Redis Cluster's topology (:class:`ClusterTopology`): redis-py's view of its slot
map, and a lean connection to each master.

redis-py's ``RedisCluster`` reads the slot map from the seed nodes, follows ``MOVED``
and ``ASK`` (a redirected command is run again through it, see :meth:`follow`) and
finds the new master after a failover; chanlite never parses a redirection. The data
itself goes over chanlite's own connections (:class:`~.shard.RedisShard`), one per
master, made as the slot map names them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from ...exceptions import ConfigurationError, LayerError
from .addresses import RedisAddress
from .shard import SOCKET_CONNECT_TIMEOUT, SOCKET_TIMEOUT, RedisShard
from .tls import TLSOptions, chained_tls_refusal

logger = logging.getLogger(__package__)  # chanlite.layers.redis, for the whole layer

# What redis-py's cluster client raises (RedisClusterException is no RedisError).
CLIENT_ERRORS = (RedisError, RedisClusterException)
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


def _startup_failure(backend: str, error: Exception) -> LayerError:
    """A failed first read of the slot map as one LayerError that says why. When no
    seed node could be reached (or completed a TLS handshake), its cause is a
    ConnectionError, as for any outage (receives wait it out); otherwise ``error``."""
    text = str(error)
    cause: BaseException = error
    refused = chained_tls_refusal(error)
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


# How redis-py's versions say that a seed node runs without cluster mode.
_NOT_A_CLUSTER = ("cluster mode is not enabled", "cluster support disabled")
