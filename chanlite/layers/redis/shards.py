"""Which server of a layer URL holds a name: :class:`RedisShards` and its
:func:`jump_hash`. Every process must list the same servers in the same order."""

from __future__ import annotations

import hashlib

from ...exceptions import ConfigurationError
from .addresses import RedisAddress, parse_redis_url
from .shard import RedisShard
from .tls import TLSOptions


class RedisShards:
    """The servers of a comma-separated Redis URL, and which one holds a name.

    Names are placed by jump consistent hash, so adding a server at the end of the URL
    moves only the share of names the new server takes. ``tls`` applies to every
    ``rediss://`` (and ``rediss+sentinel://``) server; given with any other kind of
    URL, it is a ConfigurationError.
    """

    #: Whether groups keep an index of the shards that hold their members (no: a
    #: group send asks every shard, and a URL names only a few).
    indexes_groups = False

    def __init__(self, url: str, tls: TLSOptions | None = None) -> None:
        self.addresses = parse_redis_url(url)
        tls = tls or TLSOptions()
        context = None
        if any(address.tls for address in self.addresses):
            context = tls.context()  # one for all: each file is read once
        elif tls.given:
            _refuse_tls(self.addresses, tls)
        self.shards = [
            RedisShard(address, context, tls.redis_kwargs()) if address.tls else RedisShard(address)
            for address in self.addresses
        ]
        self._placed: dict[str, int] = {}
        #: Set by :meth:`aclose`; every shard refuses commands from then on.
        self.closed = False

    def __repr__(self) -> str:
        return f"<RedisShards {[shard.address.label for shard in self.shards]}>"

    @property
    def labels(self) -> list[str]:
        """How logs and reprs name the servers."""
        return [f"{shard.address.label}/{shard.address.db}" for shard in self.shards]

    def key_base(self, index: int, prefix: str) -> str:
        """The start of the keys of shard ``index`` under ``prefix``: the prefix itself."""
        return prefix

    def key_pattern(self, prefix: str) -> str:
        """A SCAN pattern of the :meth:`key_base` of every shard."""
        return prefix

    async def nodes(self) -> list[RedisShard]:
        """Every server, each once (for SCAN)."""
        return self.shards

    def index_for(self, name: str) -> int:
        """The index of the shard that holds ``name``."""
        index = self._placed.get(name)
        if index is None:
            index = place(name, len(self.shards))
            if len(self._placed) > 10_000:
                self._placed.clear()
            self._placed[name] = index
        return index

    def shard_for(self, name: str) -> RedisShard:
        """The shard that holds ``name``."""
        return self.shards[self.index_for(name)]

    def refuse_if_closed(self) -> None:
        """Raise LayerError if :meth:`aclose` has been called (for work that starts
        without a command, such as a blocking read)."""
        if self.closed:
            raise self.shards[0].closed_error()

    async def aclose(self) -> None:
        """Close every connection to every shard, for good."""
        self.closed = True
        for shard in self.shards:
            await shard.aclose()


def _refuse_tls(addresses: list[RedisAddress], tls: TLSOptions) -> None:
    if any(address.service is not None for address in addresses):
        reason = "this URL is redis+sentinel:// (rediss+sentinel:// speaks TLS)"
    else:
        reason = "this URL is redis://"
    raise ConfigurationError(f"TLS option {tls.given[0]!r} needs a rediss:// URL; {reason}")


def place(name: str, buckets: int) -> int:
    """Which of ``buckets`` holds ``name``: jump hash of its BLAKE2b digest."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "big"), buckets)


def jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash of a 64-bit ``key``."""
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket
