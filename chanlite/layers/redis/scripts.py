"""The layer's data in Redis: key formats, the entry format, and the Lua scripts.

Key formats are the ``*_KEY`` constants; every key starts with the layer's ``prefix``
so layers sharing a database stay apart (on a cluster the prefix is followed by its
bucket's hash tag, ``prefix:{tag}``, so a script's keys share one slot; see
``cluster``):

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
the ``*_SCRIPT`` constants below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError

#: The list of entries of one stored channel name (``name`` or ``prefix!``).
QUEUE_KEY = "{prefix}:q:{name}"
#: One shard's part of a group: a sorted set of member -> membership expiry (ms).
GROUP_KEY = "{prefix}:g:{name}"
#: The groups a process-specific channel is in, for eviction when it stops reading.
MEMBERSHIP_KEY = "{prefix}:m:{name}"
#: A group's history (DESIGN §11), in the group's own shard: a list of
#: ``b"<offset> <expires_ms> <payload>"`` entries, oldest first, and a hash of its
#: ``epoch`` and latest ``offset``.
HISTORY_KEY = "{prefix}:h:{name}"
HISTORY_META_KEY = "{prefix}:hm:{name}"
#: On a cluster only, in the group's own bucket: the indexes of the buckets that hold
#: members of the group (a set), so a group send runs only where members are.
BUCKETS_KEY = "{prefix}:b:{name}"


def parse_entry(entry: bytes) -> tuple[int, list[str], bytes]:
    """Split a stored entry into (expires at, in server ms; channels; payload)."""
    expires, channels, payload = entry.split(b" ", 2)
    return int(expires), channels.decode("ascii").split(","), payload


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
-- Returns whether it evicted a channel, and how many entries it dropped.
local function trim(key, now)
    local evicted, dropped = false, 0
    while true do
        local head = redis.call('LINDEX', key, 0)
        if not head then return evicted, dropped end
        local expires, channels = string.match(head, '^(%d+) (%S+) ')
        if tonumber(expires) > now then break end
        redis.call('LPOP', key)
        dropped = dropped + 1
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
    return evicted, dropped
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
    if stored == member then
        -- A queue of its own. Most are empty (their reader keeps up): those need no
        -- trim, and one made by this push has no expiry to compare with.
        local length = redis.call('LLEN', key)
        if length > 0 then
            local _, dropped = trim(key, now)
            length = length - dropped
        end
        if length >= capacity_of(stored) then
            full = full + 1
        elseif length == 0 then
            local entry = string.format('%d', expires_at) .. ' ' .. member .. ' ' .. ARGV[4]
            redis.call('RPUSH', key, entry)
            redis.call('PEXPIRE', key, ARGV[6])
        else
            push(key, member, ARGV[4], expires_at, tonumber(ARGV[6]))
        end
    else
        if not trimmed[stored] then
            evicted = trim(key, now) or evicted
            trimmed[stored] = true
        end
        -- A trim may have evicted this member (from this very group): ask only then.
        if not evicted or redis.call('ZSCORE', group, member) then
            if not processes[stored] then processes[stored] = {}; table.insert(order, stored) end
            table.insert(processes[stored], member)
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

# ARGV[4..]: process-specific channels whose messages expired unread (found by a read);
# KEYS: their membership keys (which name the slot on a cluster).
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


# KEYS: the history, its meta. ARGV[4..8]: messages kept, entry ttl ms, meta ttl ms, the
# epoch to start if the history has none, payload. Returns the message's position,
# "<epoch>:<offset>". Atomic, so offsets follow the order of the appends.
_HISTORY_APPEND = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
    epoch = ARGV[7]
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
local expires = now_ms() + tonumber(ARGV[5])
redis.call('RPUSH', KEYS[1], string.format('%d %d ', offset, expires) .. ARGV[8])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[4]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return epoch .. ':' .. offset
"""

# KEYS: the history, its meta. ARGV[4..5]: meta ttl ms, the epoch to start if the
# history has none. Returns the latest position, "<epoch>:<offset>".
_HISTORY_START = """
local epoch = redis.call('HGET', KEYS[2], 'epoch')
local offset = 0
if epoch then
    offset = redis.call('HGET', KEYS[2], 'offset')
else
    epoch = ARGV[5]
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return epoch .. ':' .. offset
"""

# KEYS: the history, its meta. Returns {} for a group with no history, else {epoch,
# offset, the live entries...}, oldest first.
_HISTORY_READ = """
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'offset')
if not meta[1] then return {} end
local now, kept = now_ms(), {meta[1], meta[2]}
for _, entry in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    if tonumber(string.match(entry, '^%d+ (%d+) ')) > now then table.insert(kept, entry) end
end
return kept
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
HISTORY_APPEND_SCRIPT = RedisScript("history_append", _HISTORY_APPEND)
HISTORY_READ_SCRIPT = RedisScript("history_read", _HISTORY_READ)
HISTORY_START_SCRIPT = RedisScript("history_start", _HISTORY_START)


async def run_script(
    call_many: Callable[..., Awaitable[list[Any]]],
    script: RedisScript,
    keys: Sequence[str],
    args: Sequence[Any],
    retry: bool,
    patience: float,
) -> Any:
    """Run ``script`` with EVALSHA through ``call_many`` (a shard's), and with EVAL if
    the server lacks it (NOSCRIPT: it did not run, so running it again cannot repeat
    it). Returns the raw reply: an error reply comes back as a ResponseError."""
    tail = (len(keys), *keys, *args)
    [reply] = await call_many([("EVALSHA", script.sha, *tail)], retry=retry, patience=patience)
    if isinstance(reply, NoScriptError):
        [reply] = await call_many([("EVAL", script.source, *tail)], retry=retry, patience=patience)
    return reply
