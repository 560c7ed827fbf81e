"""``redis://``: a session store in Redis, for any number of processes and machines.

It uses the Redis layer's connection handling (:class:`~chanlite.layers.redis.RedisShards`):
the same URLs (several comma-separated shards, ``rediss://``, ``redis+sentinel://``,
``redis+cluster://``),
reconnecting with backoff, outage logging, at-most-once sending of anything that is
not safe to repeat, and :class:`~chanlite.LayerError` for every failure of a server.
:meth:`RedisSessionStore.for_layer` shares a layer's connections and key prefix (and
is closed with the layer).

Data layout (key formats are the ``*_KEY`` constants; every key starts with the
store's prefix, so stores sharing a database stay apart, and they never collide with
the layer's ``:q:``, ``:g:`` and ``:m:`` keys):

* A session is a string under ``SESSION_KEY``: the codec's encoding of its data, with
  a Redis expiry (``SET ... PX``) that each load and save pushes forward.
* An ordering cursor is a hash under ``CURSOR_KEY``: field ``next`` holds the order
  whose turn it is, and each parked message is a field named by its order (decimal)
  whose value is a flag byte (``1`` slight, ``0`` strict) followed by the payload.
  ``PEXPIRE`` gives the whole hash its expiry, so parked messages expire with it.

Each key lives on the shard its name hashes to (on a cluster, in the bucket it hashes
to, whose hash tag the key then carries: ``prefix:{tag}:s:key``), so every operation
touches one shard (one slot) in one round trip: load and both ordering steps are Lua
scripts (the ``*_SCRIPT`` constants), save is ``SET ... PX`` and delete is ``DEL``.
Expiry is always the server's (``PX``/``PEXPIRE``), never a client clock, and no
command scans keys.

Needs Redis 6.0 or later, like the layer (Redis 7 for a cluster). A store is bound to the
event loop it is first used on, as its connections are (a ``for_layer`` store to its
layer's). A store sharing a layer's prefix shares its key space too: the layer's
``flush()`` deletes the store's keys as well.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .._codec import decode, encode
from ..exceptions import ConfigurationError
from ..layers.redis import RedisScript, RedisShards
from ..layers.redis.cluster import ClusterShards, SlotShard
from ..layers.redis.core import Shards, open_shards
from ..layers.redis.shard import RedisShard
from ..layers.redis.tls import TLSOptions
from .base import (
    DEFAULT_PREFIX,
    Payload,
    SessionStore,
    check_order,
    check_prefix,
    check_ttl,
    payload_bytes,
)

if TYPE_CHECKING:
    from ..layers.redis import RedisChannelLayer

__all__ = ["CURSOR_KEY", "SESSION_KEY", "RedisSessionStore"]

#: A session's encoded data.
SESSION_KEY = "{prefix}:s:{key}"
#: A socket's ordering cursor: a hash of ``next`` and of parked order -> flag + payload.
CURSOR_KEY = "{prefix}:o:{socket}"

# -- Lua -------------------------------------------------------------------------------

# KEYS[1]: the session. ARGV[1]: ttl ms. Returns the data, or false. One script, so the
# read and the new expiry are one round trip (GETEX would need Redis 6.2).
_LOAD = """
local data = redis.call('GET', KEYS[1])
if data then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return data
"""

# KEYS[1]: the cursor. ARGV[1..4]: order, slight ('1' or '0'), payload, ttl ms.
# Returns 1 if the message may run now, 0 if it was parked. Atomic because Redis runs
# a script alone: no order_finish can advance 'next' between the check and the park,
# so a message is either free to run here or parked where the finish that frees it
# will find it; never both, never neither.
_ORDER_START = """
local cursor, order = KEYS[1], tonumber(ARGV[1])
redis.call('HSETNX', cursor, 'next', 0)
local next_order = tonumber(redis.call('HGET', cursor, 'next'))
local runs
if ARGV[2] == '1' then runs = next_order >= 1 else runs = order <= next_order end
if not runs then redis.call('HSET', cursor, ARGV[1], ARGV[2] .. ARGV[3]) end
redis.call('PEXPIRE', cursor, ARGV[4])
if runs then return 1 end
return 0
"""

# KEYS[1]: the cursor. ARGV[1..3]: order, last ('1' or '0'), ttl ms. Returns the
# payloads set free, lowest order first. Atomic because Redis runs a script alone:
# advancing 'next' and taking the parked messages that frees are one step, so a
# message parked concurrently is either seen here or sees the new 'next' itself, and
# two finishes can never both take (and run) one parked message.
_ORDER_FINISH = """
local cursor = KEYS[1]
local next_order = tonumber(redis.call('HGET', cursor, 'next') or '0')
next_order = math.max(next_order, tonumber(ARGV[1]) + 1)
redis.call('HSET', cursor, 'next', string.format('%d', next_order))

local orders, fields = {}, {}
local all = redis.call('HGETALL', cursor)
for i = 1, #all, 2 do
    if all[i] ~= 'next' then
        local order = tonumber(all[i])
        orders[#orders + 1] = order
        fields[order] = {all[i], all[i + 1]}
    end
end
table.sort(orders)

-- Every slight message is free (next >= 1 after any finish); of the strict ones only
-- the lowest, if its turn has come: the one after it waits for it to finish.
local released, strict_seen, left = {}, false, 0
for _, order in ipairs(orders) do
    local name, entry = fields[order][1], fields[order][2]
    local free = string.sub(entry, 1, 1) == '1'
    if not free and not strict_seen then
        strict_seen = true
        free = order <= next_order
    end
    if free then
        redis.call('HDEL', cursor, name)
        released[#released + 1] = string.sub(entry, 2)
    else
        left = left + 1
    end
end

if ARGV[2] == '1' and left == 0 then
    redis.call('DEL', cursor)
else
    redis.call('PEXPIRE', cursor, ARGV[3])
end
return released
"""


class _StoreScript(RedisScript):
    """A script of this store: its body alone, without the layer's Lua helpers."""

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.source = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()


LOAD_SCRIPT = _StoreScript("session_load", _LOAD)
ORDER_START_SCRIPT = _StoreScript("order_start", _ORDER_START)
ORDER_FINISH_SCRIPT = _StoreScript("order_finish", _ORDER_FINISH)


def _ms(ttl: float) -> int:
    """A ttl in whole milliseconds, at least 1."""
    return max(1, round(check_ttl(ttl) * 1000))


def _flag(value: bool) -> str:
    return "1" if value else "0"


class RedisSessionStore(SessionStore):
    """Sessions and ordering cursors in Redis (``redis://``, ``rediss://``,
    ``redis+sentinel://``, ``redis+cluster://``, ``rediss+cluster://``).

    ``url`` is a layer-style Redis URL (the store opens and, on :meth:`aclose`,
    closes its own connections) or the ready shards of a layer (``layer.shards``) to
    share (left open by :meth:`aclose`). ``tls`` are the TLS options of a
    ``rediss://`` URL (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
    ``ssl_cert_reqs``: see :mod:`chanlite.layers.redis.tls`).
    """

    schemes = (
        "redis", "rediss", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster"
    )  # fmt: skip

    def __init__(self, url: str | Shards, *, prefix: str = DEFAULT_PREFIX, **tls: Any) -> None:
        self.prefix = check_prefix(prefix)
        self.shards: Shards
        self._owns_shards = not isinstance(url, (RedisShards, ClusterShards))
        if isinstance(url, (RedisShards, ClusterShards)):
            if tls:
                raise ConfigurationError("TLS options cannot be given with shared RedisShards")
            self.shards = url
        else:
            self.shards = open_shards(url, _tls_options(tls))

    @classmethod
    def for_layer(cls, layer: RedisChannelLayer) -> RedisSessionStore:
        """A store on ``layer``'s servers and connections, under its prefix."""
        return cls(layer.shards, prefix=layer.prefix)

    # -- keys -------------------------------------------------------------------

    def session_key(self, key: str) -> str:
        """The Redis key of session ``key``."""
        return self._place(SESSION_KEY, key=key)[0]

    def cursor_key(self, socket: str) -> str:
        """The Redis key of the ordering cursor of ``socket``."""
        return self._place(CURSOR_KEY, socket=socket)[0]

    def _place(self, key_format: str, **fields: str) -> tuple[str, RedisShard | SlotShard]:
        """A key of ``key_format``, and its shard. The shard is chosen by the key under
        the bare prefix; on a cluster, the key then carries that shard's hash tag."""
        index = self.shards.index_for(key_format.format(prefix=self.prefix, **fields))
        base = self.shards.key_base(index, self.prefix)
        return key_format.format(prefix=base, **fields), self.shards.shards[index]

    # -- sessions -----------------------------------------------------------------

    async def load(self, key: str, ttl: float) -> dict[str, Any] | None:
        """One script call: GET, and PEXPIRE on a hit (safe to retry)."""
        name, shard = self._place(SESSION_KEY, key=key)
        data = await shard.run(LOAD_SCRIPT, [name], [_ms(ttl)], retry=True)
        return None if data is None else decode(data)

    async def save(self, key: str, data: dict[str, Any], ttl: float) -> None:
        """``SET key data PX ttl`` (safe to retry)."""
        ttl_ms, encoded = _ms(ttl), encode(data)
        name, shard = self._place(SESSION_KEY, key=key)
        await shard.call("SET", name, encoded, "PX", ttl_ms, retry=True)

    async def delete(self, key: str) -> None:
        """``DEL key`` (safe to retry)."""
        name, shard = self._place(SESSION_KEY, key=key)
        await shard.call("DEL", name, retry=True)

    # -- ordering cursors ---------------------------------------------------------

    async def order_start(
        self, socket: str, order: int, slight: bool, payload: Payload, ttl: float
    ) -> bool:
        """One :data:`ORDER_START_SCRIPT` call, never sent twice: had a first attempt
        parked the message and a finish freed it, a repeat would park it again."""
        args = [check_order(order), _flag(slight), payload_bytes(payload), _ms(ttl)]
        name, shard = self._place(CURSOR_KEY, socket=socket)
        return bool(await shard.run(ORDER_START_SCRIPT, [name], args))

    async def order_finish(self, socket: str, order: int, last: bool, ttl: float) -> list[bytes]:
        """One :data:`ORDER_FINISH_SCRIPT` call, never sent twice: a repeat would
        lose the payloads the first attempt took."""
        args = [check_order(order, lowest=-1), _flag(last), _ms(ttl)]
        name, shard = self._place(CURSOR_KEY, socket=socket)
        released = await shard.run(ORDER_FINISH_SCRIPT, [name], args)
        return [bytes(payload) for payload in released]

    # -- lifecycle ----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connections this store opened (shared ones stay open)."""
        if self._owns_shards:
            await self.shards.aclose()

    def __repr__(self) -> str:
        return f"<RedisSessionStore prefix={self.prefix!r} hosts={self.shards.labels}>"


def _tls_options(options: dict[str, Any]) -> TLSOptions:
    """The TLS options among a store's keyword options; any other is refused."""
    tls = TLSOptions.take(options)
    if options:
        raise ConfigurationError(f"unknown session store option {next(iter(options))!r}")
    return tls
