"""``redis://``: the production layer, on one or several Redis servers, or on a Redis
Cluster (``redis+cluster://``).

Needs Redis 6.0 or later (7 for a cluster). A layer is bound to the event loop it is
first used on, as its asyncio connections are.

One job per module:

* ``addresses``: layer URLs, one per shard, or one naming a cluster's seed nodes.
* ``tls``: the TLS options of ``rediss://`` URLs.
* ``shard``: one server: connections, reconnecting, outages, commands and scripts.
* ``shards``: which server holds a name.
* ``topology``: a cluster's slot map (redis-py's) and a connection to each master.
* ``cluster``: a cluster's buckets, each on the master that holds its slot.
* ``scripts``: key formats, the entry format and the Lua scripts.
* ``core``: the state every part of the layer shares, and which servers a URL names.
* ``reader``: the blocking reads that fill the process's buffer.
* ``receiving``: that buffer, and the receives waiting on it.
* ``local``: local readers, handed their process's own messages.
* ``sending``: sends, stored in batches per turn of the event loop.
* ``layer``: :class:`RedisChannelLayer` itself, with groups, flush, stats, closing.

The constants below are re-exported for reading; code reads each one from its own
module, so a test that patches one patches it there (``...redis.reader.LINGER``).
"""

from __future__ import annotations

from .addresses import DEFAULT_URL as DEFAULT_URL
from .addresses import REDIS_PORT as REDIS_PORT
from .addresses import SCHEMES as SCHEMES
from .addresses import SENTINEL_PORT as SENTINEL_PORT
from .addresses import RedisAddress, parse_redis_url
from .layer import RedisChannelLayer
from .lua_glob import lua_pattern as lua_pattern
from .reader import DRAIN_TARGET as DRAIN_TARGET
from .reader import LINGER as LINGER
from .reader import PROCESS_BATCH as PROCESS_BATCH
from .reader import SHARED_BATCH as SHARED_BATCH
from .reader import SHARED_BATCH_MAX as SHARED_BATCH_MAX
from .reader import UNBLOCK_DELAY as UNBLOCK_DELAY
from .scripts import EVICT_SCRIPT as EVICT_SCRIPT
from .scripts import GROUP_ADD_SCRIPT as GROUP_ADD_SCRIPT
from .scripts import GROUP_DISCARD_SCRIPT as GROUP_DISCARD_SCRIPT
from .scripts import GROUP_KEY as GROUP_KEY
from .scripts import GROUP_MEMBERS_SCRIPT as GROUP_MEMBERS_SCRIPT
from .scripts import GROUP_SEND_SCRIPT as GROUP_SEND_SCRIPT
from .scripts import MEMBERSHIP_KEY as MEMBERSHIP_KEY
from .scripts import POP_SCRIPT as POP_SCRIPT
from .scripts import QUEUE_KEY as QUEUE_KEY
from .scripts import REQUEUE_SCRIPT as REQUEUE_SCRIPT
from .scripts import SEND_SCRIPT as SEND_SCRIPT
from .scripts import RedisScript
from .scripts import parse_entry as parse_entry
from .sending import SEND_BATCH as SEND_BATCH
from .shard import BACKOFF_MAX as BACKOFF_MAX
from .shard import BACKOFF_START as BACKOFF_START
from .shard import BLOCK_SECONDS as BLOCK_SECONDS
from .shard import CONNECT_PATIENCE as CONNECT_PATIENCE
from .shard import IDLE_BLOCKING as IDLE_BLOCKING
from .shard import READ_GRACE as READ_GRACE
from .shard import SCAN_COUNT as SCAN_COUNT
from .shard import SOCKET_CONNECT_TIMEOUT as SOCKET_CONNECT_TIMEOUT
from .shard import SOCKET_TIMEOUT as SOCKET_TIMEOUT
from .shard import RedisShard
from .shards import RedisShards
from .shards import jump_hash as jump_hash

__all__ = [
    "RedisAddress",
    "RedisChannelLayer",
    "RedisScript",
    "RedisShard",
    "RedisShards",
    "parse_redis_url",
]
