"""``redis://``: the production layer, on one or several Redis servers.

Data layout (key formats are the ``*_KEY`` constants; every key starts with the
layer's ``prefix`` so layers sharing a database stay apart):

* A channel is a list under ``QUEUE_KEY`` of its stored name (``prefix!`` for
  ``prefix!local``). Each entry is ``b"<expires_ms> <channels> <payload>"``: the full
  channel name travels inside the entry, so one read of ``prefix!`` serves every reply
  channel of a process. A group send stores one entry per process queue, naming all
  of that process's members, comma-separated (names cannot hold commas). Entries are
  appended in time order, so expired ones are always at the head, where every script
  trims them.
* A group is a sorted set per shard under ``GROUP_KEY`` (member -> membership expiry
  in ms) holding the members whose queues live on that shard. Keeping each member on
  its own queue's shard makes ``group_send`` one script call per shard, and lets the
  script evict a dead member atomically. ``MEMBERSHIP_KEY`` indexes the groups of a
  process-specific channel, so an expired message evicts it from all of them.
* Times come from the Redis server (``TIME``), never from client clocks.

Every operation is one Lua script call (one round trip per shard); the scripts are
the ``*_SCRIPT`` constants below. Receiving blocks in ``BLMPOP`` (``BLPOP`` before
Redis 7) on a connection of its own, so a waiting receiver wakes as soon as a message
lands, and one read takes up to a batch of entries into the process's buffer, where
the next receives find them without a round trip; see :class:`_Reader` for how that
read is shared and why a cancelled receive never loses a message.

Several hosts shard by jump consistent hash of the stored channel name:
``redis://a:6379/0,redis://b:6379/0``. ``rediss://`` uses TLS and
``redis+sentinel://s1:26379,s2:26379/mymaster/0`` finds the master through Sentinel.

When Redis goes away, commands retry connecting for ``CONNECT_PATIENCE`` seconds and
then raise :class:`~chanlite.LayerError`; a command that may have reached the
server is never sent twice (at-most-once). A waiting ``receive`` keeps waiting and
retries with backoff. Each outage is logged once per server, as a WARNING when it
starts and an INFO when the server answers again. Every failure of a server (it cannot
be reached, a connection breaks, a reply is overdue, a command is refused) and every
use of a closed layer or store is a ``LayerError`` whose ``__cause__`` is redis-py's
exception; :class:`RedisShard` turns one into the other where each command ends.

Connections are chanlite's own (see ``_resp``): per server, one pipelined connection
carries every command of the process, and each blocking read has one of its own.
The sends to one queue made in one turn of the event loop go out as one script call,
at the end of that turn. An
interface server attaches its ``prefix!`` as a local reader (``attach_reader``): what
the process itself sends there never goes through Redis.

Needs Redis 6.0 or later; not Redis Cluster (scripts touch keys they compute). A layer
is bound to the event loop it is first used on, as its asyncio connections are.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import random
import re
import string
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.sentinel import Sentinel
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._codec import decode
from .._eager import Continuation, run_eagerly
from ..exceptions import ChannelFull, ConfigurationError, LayerError
from ..names import queue_name, validate_channel_name, validate_group_name
from ._resp import RespConnection, open_connection
from .base import BaseChannelLayer, LocalReader, ReceiveResult, backend_failure

__all__ = [
    "RedisAddress",
    "RedisChannelLayer",
    "RedisScript",
    "RedisShard",
    "RedisShards",
    "parse_redis_url",
]

logger = logging.getLogger(__name__)

#: The list of entries of one stored channel name (``name`` or ``prefix!``).
QUEUE_KEY = "{prefix}:q:{name}"
#: One shard's part of a group: a sorted set of member -> membership expiry (ms).
GROUP_KEY = "{prefix}:g:{name}"
#: The groups a process-specific channel is in, for eviction when it stops reading.
MEMBERSHIP_KEY = "{prefix}:m:{name}"

#: The layer's URL when none is given.
DEFAULT_URL = "redis://localhost:6379/0"
# Default ports of a Redis server and of a Sentinel.
REDIS_PORT, SENTINEL_PORT = 6379, 26379
#: How long a command keeps trying to connect to an unreachable server (seconds).
CONNECT_PATIENCE = 2.0
# Reconnect backoff: first and longest pause between attempts (seconds).
BACKOFF_START, BACKOFF_MAX = 0.05, 1.0
#: Server-side bound of one blocking read; a reader re-issues it, so this only bounds
#: how long a silently dead connection can go unnoticed.
BLOCK_SECONDS = 5
# Extra time allowed for a blocking read's reply to arrive after its server-side timeout.
READ_GRACE = 5.0
#: Entries one blocking read takes from a process queue (``prefix!``: nobody else
#: reads it), and the fewest and most it takes from a shared channel (other
#: processes may be waiting for those; see ``_Reader.fit_batch``).
PROCESS_BATCH, SHARED_BATCH, SHARED_BATCH_MAX = 256, 8, 64
#: How much of its own work, in seconds, a process takes ahead of a shared channel.
DRAIN_TARGET = 0.01
#: Most messages one send script stores (sends to one queue in one turn of the event
#: loop are stored together).
SEND_BATCH = 256
#: How long a read of a shared channel may go on after its last receiver left before
#: it is ended early: a worker that receives again at once keeps its read.
UNBLOCK_DELAY = 0.02
#: How long a reader with nobody waiting stays, so a process that receives in a loop
#: keeps one reader; then it stops and hands its buffered entries back to Redis.
LINGER = 0.5
# Socket timeouts of command connections (seconds).
SOCKET_TIMEOUT, SOCKET_CONNECT_TIMEOUT = 5.0, 2.0
#: Idle blocking-read connections kept per server for the next reader.
IDLE_BLOCKING = 8
# Keys asked for per SCAN call in flush() and stats().
SCAN_COUNT = 1000
# Errors meaning "the server could not be reached or the connection broke".
_NETWORK_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
# Characters a channel name can hold: capacity globs are resolved against them.
_NAME_ALPHABET = string.ascii_letters + string.digits + "-_.!?"

# -- Lua -------------------------------------------------------------------------------

# Shared by every script. ARGV[1..3] are the key prefixes of queues, groups and
# memberships, so the key formats above are the only definition of them.
_LUA_HELPERS = """
local QUEUE, GROUP, MEMBERSHIP = ARGV[1], ARGV[2], ARGV[3]

local function now_ms()
    local time = redis.call('TIME')
    return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

local function stored_name(channel)
    local bang = string.find(channel, '!', 1, true)
    if bang then return string.sub(channel, 1, bang) end
    return channel
end

local function evict(channel)
    local key = MEMBERSHIP .. channel
    for _, group in ipairs(redis.call('SMEMBERS', key)) do
        redis.call('ZREM', GROUP .. group, channel)
    end
    redis.call('DEL', key)
end

-- Drop expired entries from the head; a process-specific channel whose message
-- expired unread leaves every group it is in. Its queue was kept group_expiry past
-- its messages only so that this could happen: from now on it lives as long as the
-- messages left in it, so a dead process's queue does not linger for a day.
-- Returns whether it evicted a channel.
local function trim(key, now)
    local evicted = false
    while true do
        local head = redis.call('LINDEX', key, 0)
        if not head then return evicted end
        local expires, channels = string.match(head, '^(%d+) (%S+) ')
        if tonumber(expires) > now then break end
        redis.call('LPOP', key)
        for channel in string.gmatch(channels, '[^,]+') do
            if string.find(channel, '!', 1, true) then
                evict(channel)
                evicted = true
            end
        end
    end
    if evicted then
        local last = redis.call('LINDEX', key, -1)
        redis.call('PEXPIREAT', key, string.match(last, '^(%d+) '))
    end
    return evicted
end

local function extend(key, ttl)
    if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end

local function push(key, channel, payload, expires_at, ttl)
    redis.call('RPUSH', key, string.format('%d', expires_at) .. ' ' .. channel .. ' ' .. payload)
    extend(key, ttl)
end
"""

# KEYS[1]: the queue. ARGV[4..6]: expiry ms, queue ttl ms, capacity; then pairs of
# (channel, payload), oldest first. Stores as many as there is room for, in order, and
# returns how many. Atomic because Redis runs a script alone: nothing can push or pop
# between the capacity check and the push.
_SEND = """
local now = now_ms()
trim(KEYS[1], now)
local count = math.min((#ARGV - 6) / 2, tonumber(ARGV[6]) - redis.call('LLEN', KEYS[1]))
if count <= 0 then return 0 end
local head, entries = string.format('%d', now + tonumber(ARGV[4])) .. ' ', {}
for i = 1, count do
    entries[i] = head .. ARGV[5 + 2 * i] .. ' ' .. ARGV[6 + 2 * i]
end
redis.call('RPUSH', KEYS[1], unpack(entries))
extend(KEYS[1], tonumber(ARGV[5]))
return count
"""

# KEYS[1]: this shard's part of the group. ARGV[4..8]: payload, expiry ms, queue ttl ms
# of plain and of process-specific queues, default capacity; then pairs of (Lua
# pattern, capacity) from channel_capacity. Returns how many full members were
# skipped. Atomic (one script), so expired memberships are dropped, dead members
# evicted and every live member served in one step whatever the group size; members
# are iterated, never unpacked, so no Lua stack limit applies. The members of one
# process queue get one entry naming them all, so a broadcast to a thousand sockets
# of one interface is one entry for it to read.
_GROUP_SEND = """
local capacities = {}
local function capacity_of(stored)
    if capacities[stored] then return capacities[stored] end
    local found = tonumber(ARGV[8])
    for i = 9, #ARGV, 2 do
        if string.find(stored, ARGV[i]) then found = tonumber(ARGV[i + 1]); break end
    end
    capacities[stored] = found
    return found
end

local now, group, full = now_ms(), KEYS[1], 0
local expires_at = now + tonumber(ARGV[5])
local trimmed, processes, order, evicted = {}, {}, {}, false
redis.call('ZREMRANGEBYSCORE', group, '-inf', now)
for _, member in ipairs(redis.call('ZRANGE', group, 0, -1)) do
    local stored = stored_name(member)
    local key = QUEUE .. stored
    if not trimmed[stored] then
        evicted = trim(key, now) or evicted
        trimmed[stored] = true
    end
    -- A trim may have evicted this member (from this very group): ask only then.
    if not evicted or redis.call('ZSCORE', group, member) then
        if stored ~= member then
            if not processes[stored] then processes[stored] = {}; table.insert(order, stored) end
            table.insert(processes[stored], member)
        elseif redis.call('LLEN', key) >= capacity_of(stored) then
            full = full + 1
        else
            push(key, member, ARGV[4], expires_at, tonumber(ARGV[6]))
        end
    end
end
for _, stored in ipairs(order) do
    local key, members = QUEUE .. stored, processes[stored]
    if redis.call('LLEN', key) >= capacity_of(stored) then
        full = full + #members
    else
        push(key, table.concat(members, ','), ARGV[4], expires_at, tonumber(ARGV[7]))
    end
end
return full
"""

# KEYS[1]: this shard's part of the group. Returns the live members, after dropping
# expired memberships and evicting members whose messages expired unread.
_GROUP_MEMBERS = """
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.find(member, '!', 1, true) then trim(QUEUE .. stored_name(member), now) end
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS[1]: the group part, KEYS[2]: the channel's memberships. ARGV[4..6]: group,
# channel, group expiry ms. One script, so the member and its index never disagree.
_GROUP_ADD = """
local ttl = tonumber(ARGV[6])
redis.call('ZADD', KEYS[1], now_ms() + ttl, ARGV[5])
extend(KEYS[1], ttl)
if string.find(ARGV[5], '!', 1, true) then
    redis.call('SADD', KEYS[2], ARGV[4])
    extend(KEYS[2], ttl)
end
return 1
"""

# KEYS and ARGV as for _GROUP_ADD.
_GROUP_DISCARD = """
redis.call('ZREM', KEYS[1], ARGV[5])
redis.call('SREM', KEYS[2], ARGV[4])
return 1
"""

# KEYS: queues, in the order to try. Returns {the first live entry, taken off its
# queue; the server time in ms}, or false. Atomic, so two receivers can never take the
# same entry.
_POP = """
local now = now_ms()
for _, key in ipairs(KEYS) do
    trim(key, now)
    local entry = redis.call('LPOP', key)
    if entry then return {entry, now} end
end
return false
"""

# ARGV[4..]: process-specific channels whose messages expired unread (found by a read).
_EVICT = """
for i = 4, #ARGV do evict(ARGV[i]) end
return 1
"""

# KEYS[1]: a queue. ARGV[4]: the queue ttl ms; ARGV[5..]: entries taken from it that
# nobody in the process was left to receive, oldest first. Puts them back at the head,
# in order, where they came from.
_REQUEUE = """
for i = #ARGV, 5, -1 do redis.call('LPUSH', KEYS[1], ARGV[i]) end
extend(KEYS[1], tonumber(ARGV[4]))
return 1
"""


class RedisScript:
    """A Lua script run with EVALSHA, falling back to EVAL when the server lacks it."""

    def __init__(self, name: str, body: str) -> None:
        self.name = name
        self.source = _LUA_HELPERS + body
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"<RedisScript {self.name}>"


SEND_SCRIPT = RedisScript("send", _SEND)
GROUP_SEND_SCRIPT = RedisScript("group_send", _GROUP_SEND)
GROUP_MEMBERS_SCRIPT = RedisScript("group_members", _GROUP_MEMBERS)
GROUP_ADD_SCRIPT = RedisScript("group_add", _GROUP_ADD)
GROUP_DISCARD_SCRIPT = RedisScript("group_discard", _GROUP_DISCARD)
POP_SCRIPT = RedisScript("pop", _POP)
EVICT_SCRIPT = RedisScript("evict", _EVICT)
REQUEUE_SCRIPT = RedisScript("requeue", _REQUEUE)


def lua_pattern(glob: str) -> str:
    """Translate an ``fnmatch`` glob to an anchored Lua pattern.

    Exact for channel names: a ``[...]`` set becomes the characters of the channel
    name alphabet that ``fnmatch`` itself says it matches.
    """
    out, index = ["^"], 0
    while index < len(glob):
        char = glob[index]
        index += 1
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (end := _set_end(glob, index)) >= 0:
            matched = [
                c for c in _NAME_ALPHABET if fnmatch.fnmatchcase(c, glob[index - 1 : end + 1])
            ]
            # %z (the NUL byte) is in no name: an empty set matches nothing.
            out.append("[" + "".join(map(_lua_escape, matched)) + "]" if matched else "%z")
            index = end + 1
        else:
            out.append(_lua_escape(char))
    return "".join(out) + "$"


def _set_end(glob: str, start: int) -> int:
    """Where the ``]`` closing a set opened just before ``start`` is, as fnmatch reads
    it; -1 if the ``[`` is a literal."""
    end = start
    if end < len(glob) and glob[end] == "!":
        end += 1
    if end < len(glob) and glob[end] == "]":
        end += 1
    while end < len(glob) and glob[end] != "]":
        end += 1
    return end if end < len(glob) else -1


def _lua_escape(char: str) -> str:
    return char if char.isascii() and char.isalnum() else "%" + char


# -- addresses -------------------------------------------------------------------------

SCHEMES = ("redis", "rediss", "redis+sentinel")
# A comma starting the next URL (not one between the hosts of a Sentinel URL).
_NEXT_URL = re.compile(r",(?=[a-zA-Z][a-zA-Z0-9+.-]*://)")


@dataclass(frozen=True)
class RedisAddress:
    """One server (or Sentinel-managed master) of a layer: one shard."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    db: int = 0
    service: str | None = None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """``host:port`` (or the Sentinel service and its sentinels), for logs."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.hosts)
        if self.service is not None:
            return f"{self.service} via sentinel {hosts}"
        return hosts


def parse_redis_url(url: str) -> list[RedisAddress]:
    """Parse a layer URL: one or more comma-separated ``redis://``, ``rediss://`` or
    ``redis+sentinel://`` URLs, one per shard.

    Raises :class:`~chanlite.exceptions.ConfigurationError` naming what is wrong.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"a Redis layer URL must be a non-empty str, got {url!r}")
    if "?" in url:
        raise ConfigurationError(
            f"Redis URL {_redact(url)!r} has a query string; give layer options as keyword "
            "arguments, or put them in the URL given to get_layer()"
        )
    addresses = [_parse_address(part, url) for part in _NEXT_URL.split(url)]
    seen = set()
    for address in addresses:
        where = (address.hosts, address.db, address.service)
        if where in seen:
            raise ConfigurationError(f"Redis URL {_redact(url)!r} names {address.label} twice")
        seen.add(where)
    return addresses


def _parse_address(part: str, url: str) -> RedisAddress:
    scheme = part.split("://", 1)[0].lower() if "://" in part else ""
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"{_redact(part)!r} in Redis URL {_redact(url)!r} is not a "
            "redis://, rediss:// or redis+sentinel:// URL"
        )
    parts = urlsplit(part)
    if parts.fragment:
        raise ConfigurationError(f"Redis URL {_redact(part)!r} must not have a #fragment")
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    sentinel = scheme == "redis+sentinel"
    hosts = _parse_hosts(hostlist, SENTINEL_PORT if sentinel else REDIS_PORT, part)
    if not sentinel and len(hosts) > 1:
        raise ConfigurationError(
            f"Redis URL {_redact(part)!r} names several hosts; give each shard its own URL: "
            "redis://a:6379/0,redis://b:6379/0"
        )
    service, db = _parse_path(parts.path, sentinel, part)
    return RedisAddress(
        scheme, hosts, db, service, unquote(username) or None, unquote(password) or None
    )


def _parse_hosts(hostlist: str, default_port: int, part: str) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in hostlist.split(","):
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        if not host and len(hostlist.split(",")) > 1:
            raise ConfigurationError(f"Redis URL {_redact(part)!r} has an empty host")
        hosts.append((host or "localhost", _parse_port(port_text, default_port, part)))
    return tuple(hosts)


def _parse_port(text: str, default: int, part: str) -> int:
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigurationError(
            f"Redis URL {_redact(part)!r}: the port must be a number from 1 to 65535, got {text!r}"
        )
    return int(text)


def _parse_path(path: str, sentinel: bool, part: str) -> tuple[str | None, int]:
    pieces = [piece for piece in path.split("/") if piece]
    service = pieces.pop(0) if sentinel and pieces else None
    if sentinel and service is None:
        raise ConfigurationError(
            f"Sentinel URL {_redact(part)!r} must name the master: "
            "redis+sentinel://host:26379/mymaster/0"
        )
    if len(pieces) > 1 or (pieces and not pieces[0].isdigit()):
        raise ConfigurationError(
            f"Redis URL {_redact(part)!r}: the database must be a number, got {path!r}"
        )
    return service, int(pieces[0]) if pieces else 0


def _redact(url: str) -> str:
    """``url`` with any password replaced, fit for an error message."""
    return re.sub(r"(://[^:@/,]*:)[^@/]*@", r"\1***@", url)


# -- connections -----------------------------------------------------------------------


class RedisShard:
    """One Redis server: its connections, reconnecting, and outage logging.

    Shared by anything that keeps data in Redis (the channel layer, a session store).
    Every command goes over one pipelined connection (see ``_resp``); each blocking
    read has a connection of its own, kept for reuse while it stays healthy.

    Commands raise :class:`~chanlite.LayerError` when the server fails them (see
    :meth:`call_many`), and after :meth:`aclose`, which is final: a closed shard
    never reconnects.
    """

    def __init__(self, address: RedisAddress) -> None:
        self.address = address
        #: The Sentinel client that finds the master, for ``redis+sentinel://``.
        self.sentinel: Any = None
        if address.service is not None:
            sentinel_class: Any = Sentinel  # redis-py is untyped: through Any for mypy
            self.sentinel = sentinel_class(
                list(address.hosts),
                sentinel_kwargs={
                    "socket_timeout": SOCKET_TIMEOUT,
                    "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
                },
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_CONNECT_TIMEOUT,
            )
        self._commands: RespConnection | None = None
        self._idle_blocking: list[RespConnection] = []
        self._connecting = asyncio.Lock()
        self._reachable = True
        #: How many outages have begun (each at the first failure after an answer).
        self.outages = 0
        #: Whether blocking reads use BLMPOP (Redis 7); cleared on an older server.
        self.blmpop = True
        #: Set by :meth:`aclose`: commands raise LayerError from then on.
        self.closed = False
        #: How errors name this server (never with its password).
        self.backend = f"Redis at {address.label}/{address.db}"

    def __repr__(self) -> str:
        return f"<RedisShard {self.address.label} db={self.address.db}>"

    @property
    def connected(self) -> bool:
        """Whether the command connection is open (a command goes out without
        connecting first)."""
        return self._commands is not None and self._commands.error is None

    @property
    def tls(self) -> bool:
        """Whether connections use TLS (``rediss://``)."""
        return self.address.scheme == "rediss"

    def failure(self, error: BaseException) -> LayerError:
        """``error`` of this server (redis-py's) as a LayerError caused by it."""
        return backend_failure(self.backend, error)

    def closed_error(self) -> LayerError:
        """The error of a command on this shard after :meth:`aclose`."""
        return LayerError(self.backend, "closed by aclose()")

    # -- health -----------------------------------------------------------------

    def mark_down(self, error: BaseException) -> None:
        """Note a failure; the first of an outage is logged as a WARNING."""
        if self._reachable:
            self._reachable = False
            self.outages += 1
            logger.warning("redis at %s unreachable; retrying (%s)", self.address.label, error)

    def mark_up(self, outages: int) -> None:
        """Note that the server answered a command sent when :attr:`outages` was
        ``outages``; the first answer after an outage is logged as INFO.

        Only an answer to a command sent since the outage began ends it: one to a
        command sent earlier may have arrived before the failure and been read after
        it.
        """
        if not self._reachable and outages == self.outages:
            self._reachable = True
            logger.info("redis at %s is reachable again", self.address.label)

    # -- commands -----------------------------------------------------------------

    async def call(
        self, *args: Any, retry: bool = False, patience: float = CONNECT_PATIENCE
    ) -> Any:
        """Run one command and return its raw reply.

        Connecting is retried for ``patience`` seconds. A failure after the command
        was sent is retried only if ``retry`` says the command is safe to repeat.
        Raises LayerError as :meth:`call_many` does, and when the server refuses the
        command (an error reply; its ``ResponseError`` is the cause).
        """
        replies = await self.call_many([args], retry=retry, patience=patience)
        return self._reply(replies[0])

    def _reply(self, reply: Any) -> Any:
        """``reply``, unless it is an error reply: then raise it as a LayerError."""
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
        """Send ``commands`` together and return their replies, in order (a
        :class:`ResponseError` in place of a failed command's reply). They share the
        server's one command connection with every concurrent caller.

        Raises :class:`~chanlite.LayerError`, caused by redis-py's
        ``ConnectionError`` or ``TimeoutError``, when the server cannot be reached
        (or refuses the connection's setup) within ``patience``, or the connection
        breaks after the commands went out and ``retry`` is false; and after
        :meth:`aclose`. Every command of the process ends here, so this is the one
        place where redis-py's errors become chanlite's.
        """
        connection = self._commands
        if connection is not None and connection.error is None:  # the usual case
            outages = self.outages
            try:
                replies = await connection.execute(commands)
            except _NETWORK_ERRORS as error:
                self.mark_down(error)
                if not retry or patience <= 0:
                    raise self.failure(error) from error
            else:
                if not self._reachable:
                    self.mark_up(outages)
                return replies
        return await self._call_connecting(commands, retry, time.monotonic() + patience)

    async def _call_connecting(
        self, commands: Sequence[Sequence[Any]], retry: bool, deadline: float
    ) -> list[Any]:
        """:meth:`call_many` when the command connection is not open: connect (again),
        with backoff, until ``deadline``."""
        if self.closed:
            raise self.closed_error()
        for delay in _backoff():
            outages = self.outages
            try:
                connection = await self._command_connection(deadline)
                replies = await connection.execute(commands)
            except _NETWORK_ERRORS as error:
                self.mark_down(error)
                if not retry or time.monotonic() >= deadline:
                    raise self.failure(error) from error
            except ResponseError as error:  # the server refused AUTH or SELECT
                raise self.failure(error) from error
            else:
                self.mark_up(outages)
                return replies
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        raise AssertionError("unreachable")  # pragma: no cover - _backoff never ends

    async def _command_connection(self, deadline: float) -> RespConnection:
        """The live command connection, connecting (until ``deadline``) if it broke."""
        connection = self._commands
        if connection is not None and connection.error is None:
            return connection
        async with self._connecting:
            connection = self._commands
            if connection is None or connection.error is not None:
                if connection is not None:
                    connection.close()
                    self._commands = None
                connection = self._commands = await self._connect(deadline, SOCKET_TIMEOUT)
            return connection

    async def run(
        self,
        script: RedisScript,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        retry: bool = False,
        patience: float = CONNECT_PATIENCE,
    ) -> Any:
        """Run a Lua script; loads it on the server when missing (NOSCRIPT means the
        script did not run, so running it again cannot repeat it). Raises LayerError
        as :meth:`call` does."""
        tail = (len(keys), *keys, *args)
        evalsha = ("EVALSHA", script.sha, *tail)
        [reply] = await self.call_many([evalsha], retry=retry, patience=patience)
        if isinstance(reply, NoScriptError):
            evaluate = ("EVAL", script.source, *tail)
            [reply] = await self.call_many([evaluate], retry=retry, patience=patience)
        return self._reply(reply)

    async def scan(self, pattern: str) -> AsyncIterator[list[bytes]]:
        """Yield batches of the keys matching ``pattern`` (SCAN, never KEYS)."""
        cursor = b"0"
        while True:
            reply = await self.call(
                "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, retry=True
            )
            cursor, keys = reply
            if keys:
                yield list(keys)
            if int(cursor) == 0:
                return

    async def _connect(self, deadline: float, reply_timeout: float) -> RespConnection:
        """A new connection; attempts go on until ``deadline`` (at least one)."""
        for delay in _backoff():
            outages = self.outages
            try:
                connection = await self._open(reply_timeout)
            except _NETWORK_ERRORS as error:
                self.mark_down(error)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                await asyncio.sleep(min(delay, left))
            else:
                self.mark_up(outages)  # it answered the setup commands
                return connection
        raise AssertionError("unreachable")  # pragma: no cover - _backoff never ends

    async def _open(self, reply_timeout: float) -> RespConnection:
        address = self.address
        if self.sentinel is not None:
            try:
                host, port = await self.sentinel.discover_master(address.service)
            except Exception as error:  # no sentinel answered, or none knows the master
                raise RedisConnectionError(f"no master for {address.label}: {error}") from error
        else:
            host, port = address.hosts[0]
        return await open_connection(
            host,
            port,
            db=address.db,
            username=address.username,
            password=address.password,
            tls=self.tls,
            connect_timeout=SOCKET_CONNECT_TIMEOUT,
            reply_timeout=reply_timeout,
        )

    # -- blocking reads -----------------------------------------------------------

    async def blocking_connection(self) -> RespConnection:
        """A connection of its own for a blocking read (one connection attempt).

        Its replies may take :data:`BLOCK_SECONDS` plus :data:`READ_GRACE`; one
        later than that means a dead connection. Raises redis-py's errors as they
        are (the reader tells an outage, which it waits out, from the rest), and
        LayerError after :meth:`aclose`.
        """
        if self.closed:
            raise self.closed_error()
        while self._idle_blocking:
            connection = self._idle_blocking.pop()
            if connection.error is None:
                return connection
        return await self._connect(0.0, BLOCK_SECONDS + READ_GRACE)

    async def release_blocking(self, connection: RespConnection, *, broken: bool = False) -> None:
        """Give back a blocking connection; a ``broken`` one is closed."""
        if (
            broken
            or connection.broken
            or connection.busy
            or len(self._idle_blocking) >= IDLE_BLOCKING
        ):
            connection.close()
        else:
            self._idle_blocking.append(connection)

    async def aclose(self) -> None:
        """Close every connection to this server, for good."""
        self.closed = True
        if self._commands is not None:
            self._commands.close()
            self._commands = None
        for connection in self._idle_blocking:
            connection.close()
        self._idle_blocking.clear()
        if self.sentinel is not None:
            for client in self.sentinel.sentinels:
                await client.aclose()


def _backoff() -> Iterable[float]:
    """Pauses between reconnection attempts: doubling, capped, with jitter."""
    delay = BACKOFF_START
    while True:
        yield delay * random.uniform(0.5, 1.0)
        delay = min(delay * 2, BACKOFF_MAX)


class RedisShards:
    """The servers of a comma-separated Redis URL, and which one holds a name.

    Names are placed by jump consistent hash, so adding a server at the end of the URL
    moves only the share of names the new server takes.
    """

    def __init__(self, url: str) -> None:
        self.addresses = parse_redis_url(url)
        self.shards = [RedisShard(address) for address in self.addresses]
        self._placed: dict[str, int] = {}
        #: Set by :meth:`aclose`; every shard refuses commands from then on.
        self.closed = False

    def __repr__(self) -> str:
        return f"<RedisShards {[shard.address.label for shard in self.shards]}>"

    def index_for(self, name: str) -> int:
        """The index of the shard that holds ``name``."""
        index = self._placed.get(name)
        if index is None:
            digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
            index = jump_hash(int.from_bytes(digest, "big"), len(self.shards))
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


def jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash of a 64-bit ``key``."""
    bucket, jump = -1, 0
    while jump < buckets:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


# -- receiving ------------------------------------------------------------------------


def parse_entry(entry: bytes) -> tuple[int, list[str], bytes]:
    """Split a stored entry into (expires at, in server ms; channels; payload)."""
    expires, channels, payload = entry.split(b" ", 2)
    return int(expires), channels.decode("ascii").split(","), payload


class _Taken:
    """A message taken from Redis (or handed over in the process), kept in the
    process until a receive takes it."""

    __slots__ = ("channel", "deadline", "expires", "payload")

    def __init__(self, channel: str, payload: bytes, expires: int | None, deadline: float) -> None:
        self.channel, self.payload = channel, payload
        #: Expiry in server ms (for handing it back; None for a message that never
        #: went through Redis), and on the time.monotonic() clock.
        self.expires, self.deadline = expires, deadline

    def entry(self, now_ms: int, clock: float) -> bytes:
        """The entry to store to hand this message back to Redis, when the server's
        clock reads ``now_ms`` at ``time.monotonic()`` ``clock``."""
        expires = self.expires
        if expires is None:
            expires = now_ms + max(1, round((self.deadline - clock) * 1000))
        return b"%d %s %s" % (expires, self.channel.encode("ascii"), self.payload)


class _Send:
    """A send waiting to be stored with the others of its turn."""

    __slots__ = ("channel", "future", "payload")

    def __init__(self, channel: str, payload: bytes, future: asyncio.Future[bool]) -> None:
        self.channel, self.payload, self.future = channel, payload, future


class _Waiter:
    """One waiting receive; the layer hands it one taken message."""

    __slots__ = ("future", "readers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[_Taken] = loop.create_future()
        self.readers: list[_Reader] = []

    def offer(self, taken: _Taken) -> bool:
        """Hand ``taken`` over; False if this receive is no longer waiting. Its readers
        stop counting it at once, so none reads again for a receive already served."""
        if self.future.done():
            return False
        self.future.set_result(taken)
        for reader in self.readers:
            reader.leave()
        self.readers.clear()
        return True


class _Reader:
    """The blocking read of one set of queues on one shard.

    Every local receive waiting on exactly those queues shares it, and it reads while
    one of them waits: a process reads all its reply channels with one read of
    ``prefix!``. One read takes up to :data:`PROCESS_BATCH` entries of a process queue
    (a batch fitted by :meth:`fit_batch` of a channel other processes read too) into
    the layer's buffer, where the next receives find them at once; receives wait only
    when the buffer holds nothing for them, so a process never takes more than a
    batch ahead of a shared channel. Reads also go on with nobody waiting (see
    :meth:`_awaited`): process queues, which nobody else can read, for :data:`LINGER`
    seconds after the last receive, up to a batch; shared channels for
    :data:`UNBLOCK_DELAY`, while nothing of them is buffered. So the next message is
    on its way while the last one is handled. The read runs on a connection of its
    own and is never cancelled mid-command (a cancelled read may already have taken
    messages). :data:`UNBLOCK_DELAY` after the last receiver of a shared channel left,
    ``CLIENT UNBLOCK`` ends a read still going. A reader with nobody waiting for
    :data:`LINGER` seconds stops, and hands what it buffered back to the head of its
    queues.
    """

    def __init__(self, layer: RedisChannelLayer, index: int, names: tuple[str, ...]) -> None:
        self.layer, self.index, self.names = layer, index, names
        self.shard = layer.shards.shards[index]
        #: Only this process reads process queues: they may be read ahead.
        self.ahead = all(name.endswith("!") for name in names)
        self.batch = PROCESS_BATCH if self.ahead else SHARED_BATCH
        # The size and end time of the last read of a shared channel (fit_batch).
        self._took, self._took_at = 0, 0.0
        self.users = 0
        self._idle_since = 0.0
        self.closing = False
        self._wanted = asyncio.Event()
        self._client_id: int | None = None
        self._blocking = False
        self._unblocking: asyncio.TimerHandle | None = None
        self._rotation = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    def join(self) -> None:
        """A receive started waiting on this reader."""
        self.users += 1
        self._wanted.set()

    def leave(self) -> None:
        """A receiver stopped waiting; end the read soon if it was the last and no
        receive comes back within :data:`UNBLOCK_DELAY`."""
        self.users -= 1
        if self.users <= 0:
            self._wanted.clear()
            self._idle_since = asyncio.get_running_loop().time()
            if not self.ahead:  # a read ahead of a process queue ends by itself
                self._unblock_soon()

    def _unblock_soon(self) -> None:
        """End the read :data:`UNBLOCK_DELAY` after the last receiver left, unless a
        receive comes back by then."""
        if self._unblocking is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._idle_since + UNBLOCK_DELAY - loop.time())
            self._unblocking = loop.call_later(delay, self._unblock_if_idle)

    def _unblock_if_idle(self) -> None:
        self._unblocking = None
        if self.users <= 0:
            self.wake()

    def poke(self) -> None:
        """Make an idle reader look again at whether to read ahead."""
        if self.users <= 0:
            self._wanted.set()

    def stop(self) -> None:
        """Stop reading for good (the layer is closing)."""
        self.closing = True
        if self._unblocking is not None:
            self._unblocking.cancel()
            self._unblocking = None
        self._wanted.set()
        self.wake()

    def wake(self) -> None:
        """Unblock a read in flight, so the reader notices it has nobody to read for."""
        if self._blocking and self._client_id is not None:
            self.layer.spawn(self.shard.call("CLIENT", "UNBLOCK", self._client_id, retry=True))

    async def _run(self) -> None:
        connection: RespConnection | None = None
        delays = iter(_backoff())
        try:
            while await self._awaited():
                try:
                    connection = connection or await self.shard.blocking_connection()
                    popped = await self._pop(connection)
                except Exception as error:
                    self._failed(error)
                    if connection is not None:
                        await self.shard.release_blocking(connection, broken=True)
                        connection = None
                    await asyncio.sleep(next(delays))
                    continue
                delays = iter(_backoff())
                if popped is not None:
                    self._accept(*popped)
        finally:
            self.layer.reader_done(self)
            if connection is not None:
                await self.shard.release_blocking(connection)
            await self.layer.hand_back(self.names)

    async def _awaited(self) -> bool:
        """Whether to read now: a receive waits, or the queues may be read ahead;
        else wait up to :data:`LINGER` for a receive. False: stop reading.

        A process queue is read ahead for :data:`LINGER` seconds, up to a batch. A
        shared channel is read ahead only within :data:`UNBLOCK_DELAY` of its last
        receive, and only when nothing of it is buffered: a process that receives in
        a loop has its next message on the way while it handles the last, and still
        never holds more than one batch that another process could have taken.
        """
        loop = asyncio.get_running_loop()
        while not self.closing:
            if self.users:
                return True
            idle = loop.time() - self._idle_since
            buffered = self.layer.buffered(self.names)
            if self.ahead and idle < LINGER and buffered < self.batch:
                return True
            if not self.ahead and idle < UNBLOCK_DELAY and not buffered:
                return True
            self._wanted.clear()  # set by a receive joining, or by poke()
            try:
                async with asyncio.timeout(max(0.0, LINGER - idle)):
                    await self._wanted.wait()
            except TimeoutError:
                return self.users > 0 and not self.closing
        return False

    def _failed(self, error: Exception) -> None:
        if isinstance(error, _NETWORK_ERRORS):
            self.shard.mark_down(error)  # an outage: keep waiting, and retry
        else:  # say, a key of the wrong type: the receivers would wait forever
            logger.error("reading %s failed: %s", ", ".join(self.names), error)
            self.layer.fail_waiters(self.names, self.shard.failure(error))

    async def _pop(self, connection: RespConnection) -> tuple[list[bytes], int] | None:
        """One blocking read, pipelined with TIME (to judge expiry by the server's
        clock); returns (entries, server time in ms)."""
        keys = self.layer.queue_keys(self._rotated())
        if not self.ahead:
            self.fit_batch()
        if self.shard.blmpop:
            read: tuple[Any, ...] = ("BLMPOP", BLOCK_SECONDS, len(keys), *keys)
            read += ("LEFT", "COUNT", self.batch)
        else:
            read = ("BLPOP", *keys, BLOCK_SECONDS)
        replies = connection.execute([read, ("TIME",)])
        self._client_id = connection.client_id
        self._blocking = True
        if self.closing:
            self.wake()
        elif not (self.users or self.ahead):  # a read ahead of a shared channel
            self._unblock_soon()
        try:
            reply, clock = await replies
        finally:
            self._blocking = False
        if isinstance(reply, ResponseError):
            if "unknown command" not in str(reply).lower():
                raise reply
            self.shard.blmpop = False  # Redis before 7.0: one entry per read
            return None
        if reply is None:
            return None
        seconds, micros = clock
        entries = list(reply[1]) if self.shard.blmpop else [reply[1]]
        self._took, self._took_at = len(entries), time.monotonic()
        return entries, int(seconds) * 1000 + int(micros) // 1000

    def fit_batch(self) -> None:
        """Size the next read of a shared channel to about :data:`DRAIN_TARGET` seconds
        of this process's work, between :data:`SHARED_BATCH` and
        :data:`SHARED_BATCH_MAX`.

        Reads happen when the buffer is empty, so the last batch was handled in the
        time since it arrived. Only a full batch (more was waiting) lets the next
        grow: a process whose consumers are quick takes more at a time, one whose
        consumers are slow leaves the rest to other processes. A batch that came
        back less than half full halves the next.
        """
        took, self._took = self._took, 0
        if took and took >= self.batch:
            rate = took / max(time.monotonic() - self._took_at, 1e-6)
            self.batch = max(SHARED_BATCH, min(SHARED_BATCH_MAX, int(rate * DRAIN_TARGET)))
        elif took and took < self.batch // 2:
            self.batch = max(SHARED_BATCH, self.batch // 2)

    def _accept(self, entries: list[bytes], now_ms: int) -> None:
        try:
            self.layer.accept(entries, now_ms)
        except Exception as error:  # a broken entry must not stop the reader
            logger.exception("dropped messages that could not be read: %s", error)

    def _rotated(self) -> list[str]:
        # Start each read at another queue, so a busy queue cannot starve the rest.
        start = self._rotation % len(self.names)
        self._rotation += 1
        return [*self.names[start:], *self.names[:start]]


async def _finish(rest: Continuation) -> None:
    await rest


# -- the layer ------------------------------------------------------------------------


class RedisChannelLayer(BaseChannelLayer):
    """A channel layer on Redis (``redis://``, ``rediss://``, ``redis+sentinel://``)."""

    schemes = ("redis", "rediss", "redis+sentinel")
    # A send joins a batch and waits on its future; group sends wait on gather().
    task_neutral_sends = True

    def __init__(self, url: str = DEFAULT_URL, **options: Any) -> None:
        super().__init__(**options)
        self.shards = RedisShards(url)
        self._prefixes = tuple(
            key.format(prefix=self.prefix, name="")
            for key in (QUEUE_KEY, GROUP_KEY, MEMBERSHIP_KEY)
        )
        self._expiry_ms = max(1, round(self.expiry * 1000))
        self._group_expiry_ms = max(1, round(self.group_expiry * 1000))
        self._capacity_args = [
            arg
            for glob, capacity in self.capacity_patterns
            for arg in (lua_pattern(glob), capacity)
        ]
        self._waiters: dict[str, deque[_Waiter]] = {}
        #: Attached local readers, by process prefix.
        self._local: dict[str, LocalReader] = {}
        #: Sends waiting for the next turn, by stored name (see send_encoded).
        self._batches: dict[str, list[_Send]] = {}
        #: Messages taken from Redis that no receive has taken yet, by stored name.
        self._buffers: dict[str, deque[_Taken]] = {}
        self._readers: dict[tuple[int, tuple[str, ...]], _Reader] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rotation = 0

    def __repr__(self) -> str:
        hosts = [f"{shard.address.label}/{shard.address.db}" for shard in self.shards.shards]
        return f"<RedisChannelLayer prefix={self.prefix!r} hosts={hosts}>"

    # -- keys -------------------------------------------------------------------

    def queue_keys(self, names: Iterable[str]) -> list[str]:
        """The Redis keys of the queues of stored channel names."""
        return [self._prefixes[0] + name for name in names]

    def _queue_ttl(self, name: str) -> int:
        # A process-specific queue outlives its messages by group_expiry, so a group
        # send that comes late still finds the expired message and evicts the member
        # (after which the queue lives only as long as its messages: see _LUA_HELPERS).
        return self._expiry_ms + (self._group_expiry_ms if name.endswith("!") else 0)

    def _group_keys(self, group: str, channel: str) -> list[str]:
        return [
            GROUP_KEY.format(prefix=self.prefix, name=group),
            MEMBERSHIP_KEY.format(prefix=self.prefix, name=channel),
        ]

    # -- sending --------------------------------------------------------------

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        """Append ``payload`` to ``channel`` in one script call; ChannelFull if full."""
        name = queue_name(channel)
        if self._local:
            deliver = self._local.get(name)
            if deliver is not None:  # only this process reads it: no need for Redis
                self._hand(deliver, [channel], payload)
                return
        # Stored with the other sends to its queue of this turn of the loop, in one
        # script call: a burst of frames or replies costs Redis one wake-up, not one
        # per message (and one write, whatever else is in flight).
        if not await self._join_batch(name, channel, payload):
            raise ChannelFull(channel, self.capacity_for(name))

    async def _store(self, shard: RedisShard, name: str, pairs: list[Any]) -> int:
        """Store (channel, payload) ``pairs`` (flattened) on queue ``name``, in order,
        in one script call; returns how many fitted."""
        args = [*self._prefixes, self._expiry_ms, self._queue_ttl(name), self.capacity_for(name)]
        return int(await shard.run(SEND_SCRIPT, self.queue_keys([name]), [*args, *pairs]))

    def _join_batch(self, name: str, channel: str, payload: bytes) -> asyncio.Future[bool]:
        """Queue a send to go out with the others to ``name`` on the next turn; the
        future says whether it was stored."""
        loop = asyncio.get_running_loop()
        if not self._batches:
            loop.call_soon(self._flush_batches)
        send = _Send(channel, payload, loop.create_future())
        batch = self._batches.get(name)
        if batch is None:
            self._batches[name] = [send]
        else:
            batch.append(send)
        return send.future

    def _flush_batches(self) -> None:
        batches, self._batches = self._batches, {}
        for name, batch in batches.items():
            sends = [send for send in batch if not send.future.cancelled()]
            shard = self.shards.shard_for(name)
            for start in range(0, len(sends), SEND_BATCH):
                sending = self._send_batch(name, sends[start : start + SEND_BATCH])
                if not shard.connected:  # connecting takes a task
                    self.spawn(sending)
                    continue
                # Started here, so the script call is written now, not a turn later.
                rest = run_eagerly(sending)
                if rest is not None:
                    self.spawn(_finish(rest))

    async def _send_batch(self, name: str, sends: list[_Send]) -> None:
        pairs = [item for send in sends for item in (send.channel, send.payload)]
        try:
            stored = await self._store(self.shards.shard_for(name), name, pairs)
        except Exception as error:
            for send in sends:
                if not send.future.done():
                    send.future.set_exception(error)
            return
        for index, send in enumerate(sends):
            if not send.future.done():
                send.future.set_result(index < stored)

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

    # -- receiving ------------------------------------------------------------

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> ReceiveResult:
        """Take the next message from any of ``channels`` (see the base contract)."""
        names = self.cached_receive_names(channels)
        taken = self._take_buffered(names)
        if taken is None:
            if timeout is not None and timeout <= 0:
                taken = await self._receive_now(names)
            else:
                taken = await self._receive_waiting(names, timeout)
        if taken is None:
            return None, None
        return taken.channel, decode(taken.payload)

    def _take_buffered(self, names: list[str]) -> _Taken | None:
        """The oldest live buffered message of one of ``names`` (rotating), or None."""
        if not self._buffers:
            return None
        for name in self._rotated(names) if len(names) > 1 else names:
            buffer = self._buffers.get(name)
            if buffer:
                taken = self._next_live(buffer)
                if not buffer:
                    del self._buffers[name]
                    self._poke_readers(names)
                if taken is not None:
                    return taken
        return None

    def _poke_readers(self, names: list[str]) -> None:
        """The buffer of one of ``names`` ran dry: their idle readers may read ahead."""
        for key in self._by_shard(names):
            reader = self._readers.get(key)
            if reader is not None:
                reader.poke()

    async def _receive_now(self, names: list[str]) -> _Taken | None:
        """One non-blocking pop; what it took stays buffered if cancelled meanwhile."""
        await asyncio.shield(asyncio.ensure_future(self._pop_now(names)))
        return self._take_buffered(names)

    async def _pop_now(self, names: list[str]) -> None:
        for index, group in self._rotated(self._by_shard(names)):
            keys = self.queue_keys(self._rotated(list(group)))
            shard = self.shards.shards[index]
            popped = await shard.run(POP_SCRIPT, keys, self._prefixes, patience=0.0)
            if popped:
                self.accept([bytes(popped[0])], int(popped[1]))
                return

    async def _receive_waiting(self, names: list[str], timeout: float | None) -> _Taken | None:
        self.shards.refuse_if_closed()  # its readers would only ever fail
        waiter = _Waiter(asyncio.get_running_loop())
        for name in names:
            self._waiters.setdefault(name, deque()).append(waiter)
        for index, group in self._by_shard(names):
            reader = self._reader_for(index, group)
            reader.join()
            waiter.readers.append(reader)
        try:
            async with asyncio.timeout(timeout):
                return await waiter.future
        except TimeoutError:
            return self._settle(waiter, take=True)  # one handed over as time ran out
        except asyncio.CancelledError:
            self._settle(waiter, take=False)
            raise
        finally:
            self._forget(waiter, names)

    def _reader_for(self, index: int, names: tuple[str, ...]) -> _Reader:
        """The reader of ``names`` (sorted, all on shard ``index``), started if need be."""
        reader = self._readers.get((index, names))
        if reader is None:
            reader = self._readers[index, names] = _Reader(self, index, names)
        return reader

    # -- local readers --------------------------------------------------------

    def attach_reader(self, prefix: str, deliver: LocalReader) -> bool:
        """Hand every message for ``prefix`` + local names to ``deliver`` (see the base
        contract). One blocking read of ``prefix`` stays on while it is attached and
        hands over each entry it takes as it arrives: a group entry naming a thousand
        local members is one call. What this process sends to ``prefix`` names goes
        straight to ``deliver`` and never through Redis."""
        validate_channel_name(prefix)
        if not prefix.endswith("!"):
            raise ValueError(f"a local reader needs a process prefix ending in '!', not {prefix!r}")
        self.shards.refuse_if_closed()
        if prefix in self._local:
            self._local[prefix] = deliver
            return True
        self._local[prefix] = deliver
        self._reader_for(self.shards.index_for(prefix), (prefix,)).join()
        buffered = self._buffers.pop(prefix, None)
        if buffered:
            clock = time.monotonic()
            for taken in buffered:
                if taken.deadline > clock:
                    self._hand(deliver, [taken.channel], taken.payload)
        return True

    def detach_reader(self, prefix: str) -> None:
        """Stop handing ``prefix``'s messages to its local reader; they queue again."""
        if self._local.pop(prefix, None) is None:
            return
        reader = self._readers.get((self.shards.index_for(prefix), (prefix,)))
        if reader is not None:
            reader.leave()

    @staticmethod
    def _hand(deliver: LocalReader, channels: list[str], payload: bytes) -> None:
        try:
            deliver(channels, payload)
        except Exception:
            logger.exception("a local reader failed; %d message(s) dropped", len(channels))

    def _settle(self, waiter: _Waiter, *, take: bool) -> _Taken | None:
        """End a wait that did not see its result: take what was handed over, or give
        it back to the buffer, in front, for the next receive. Synchronous, so a
        cancelled receive settles without awaiting."""
        future = waiter.future
        if not future.done():
            future.cancel()  # nothing can be handed over after this
            return None
        if future.cancelled() or future.exception() is not None:
            return None
        taken = future.result()
        if take:
            return taken
        name = queue_name(taken.channel)
        self._buffers.setdefault(name, deque()).appendleft(taken)
        self._dispatch(name)
        return None

    def _forget(self, waiter: _Waiter, names: list[str]) -> None:
        for name in names:
            waiters = self._waiters.get(name)
            if waiters is not None:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[name]
        for reader in waiter.readers:
            reader.leave()

    def _by_shard(self, names: list[str]) -> list[tuple[int, tuple[str, ...]]]:
        groups: dict[int, list[str]] = {}
        for name in names:
            groups.setdefault(self.shards.index_for(name), []).append(name)
        return [(index, tuple(sorted(group))) for index, group in sorted(groups.items())]

    def _rotated(self, items: list[Any]) -> list[Any]:
        start = self._rotation % len(items)
        self._rotation += 1
        return [*items[start:], *items[:start]]

    # -- the buffer of taken messages ----------------------------------------------

    def accept(self, entries: list[bytes], now_ms: int) -> None:
        """Buffer entries taken from Redis at server time ``now_ms``, one message per
        channel an entry names, and hand them to waiting receives. Expired entries
        are dropped, evicting their process-specific channels from their groups."""
        clock = time.monotonic()
        touched: dict[str, None] = {}
        local = self._local
        for entry in entries:
            expires, channels, payload = parse_entry(entry)
            if expires <= now_ms:
                self._evict(channels)
                continue
            name = queue_name(channels[0])  # one entry names channels of one stored name
            if local:
                deliver = local.get(name)
                if deliver is not None:
                    self._hand(deliver, channels, payload)
                    continue
            deadline = clock + (expires - now_ms) / 1000
            buffer = self._buffers.get(name)
            if buffer is None:
                buffer = self._buffers[name] = deque()
            buffer.extend(_Taken(channel, payload, expires, deadline) for channel in channels)
            touched[name] = None
        for name in touched:
            self._dispatch(name)

    def buffered(self, names: Iterable[str]) -> int:
        """How many taken messages of ``names`` wait in the buffer."""
        return sum(len(self._buffers.get(name, ())) for name in names)

    def _dispatch(self, name: str) -> None:
        """Hand buffered messages of ``name`` to its waiting receives, oldest first."""
        buffer = self._buffers.get(name)
        while buffer and (waiter := self._first_waiter(name)) is not None:
            taken = self._next_live(buffer)
            if taken is not None:
                waiter.offer(taken)
        if buffer is not None and not buffer:
            del self._buffers[name]

    def _next_live(self, buffer: deque[_Taken]) -> _Taken | None:
        """Pop the oldest message of ``buffer`` that has not expired."""
        clock = time.monotonic()
        while buffer:
            taken = buffer.popleft()
            if taken.deadline > clock:
                return taken
            self._evict([taken.channel])
        return None

    def _evict(self, channels: list[str]) -> None:
        """Evict process-specific ``channels`` whose messages expired unread from
        their groups (in the background)."""
        by_shard: dict[int, list[str]] = {}
        for channel in channels:
            if "!" in channel:
                by_shard.setdefault(self.shards.index_for(queue_name(channel)), []).append(channel)
        for index, evicted in by_shard.items():
            shard = self.shards.shards[index]
            self.spawn(shard.run(EVICT_SCRIPT, [], [*self._prefixes, *evicted], retry=True))

    async def hand_back(self, names: Iterable[str]) -> None:
        """Put the buffered messages of ``names`` that nobody here waits for back at
        the head of their queues, in order (when their reader stops)."""
        for name in names:
            if name in self._waiters or name not in self._buffers:
                continue
            shard = self.shards.shard_for(name)
            taken = self._buffers.pop(name)
            try:
                await self._requeue(shard, name, taken)
            except LayerError as error:
                logger.warning(
                    "lost %d message(s) for %s: could not put them back (%s)",
                    len(taken),
                    name,
                    error,
                )

    async def _requeue(self, shard: RedisShard, name: str, taken: deque[_Taken]) -> None:
        now_ms = 0
        if any(item.expires is None for item in taken):  # never went through Redis
            seconds, micros = await shard.call("TIME", retry=True)
            now_ms = int(seconds) * 1000 + int(micros) // 1000
        clock = time.monotonic()
        entries = [item.entry(now_ms, clock) for item in taken if item.deadline > clock]
        if entries:
            args = [*self._prefixes, self._queue_ttl(name), *entries]
            await shard.run(REQUEUE_SCRIPT, self.queue_keys([name]), args)

    def _first_waiter(self, name: str) -> _Waiter | None:
        for waiter in self._waiters.get(name, ()):
            if not waiter.future.done():
                return waiter
        return None

    def reader_done(self, reader: _Reader) -> None:
        """Forget a reader that has stopped (called by the reader itself)."""
        if self._readers.get((reader.index, reader.names)) is reader:
            del self._readers[reader.index, reader.names]
        if reader.users > 0:  # the layer was closed under waiting receives
            self.fail_waiters(reader.names, reader.shard.closed_error())

    def fail_waiters(self, names: Iterable[str], error: Exception) -> None:
        """Make the receives waiting on ``names`` raise ``error``."""
        for name in names:
            for waiter in self._waiters.get(name, ()):
                if not waiter.future.done():
                    waiter.future.set_exception(error)

    def spawn(self, coroutine: Any) -> None:
        """Run a background coroutine, keeping it alive until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.debug("background Redis call failed: %s", task.exception())

    # -- groups ---------------------------------------------------------------

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

    def waiting_receivers(self, channel: str) -> int:
        """How many receives of this layer wait on ``channel``'s queue now."""
        waiters = self._waiters.get(queue_name(channel), ())
        return sum(not waiter.future.done() for waiter in waiters)

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
