"""Group presence in Redis (DESIGN §12): key formats and the Lua scripts.

A group's presence lives in the group's own shard (on a cluster, its bucket, so each
key carries the bucket's hash tag):

* ``PRESENCE_KEY``: a hash of channel -> entry, ``b"<held_ms> <n> <client><data>"``:
  the end of the entry's grace in server ms (0 while its socket is open), then the
  client id, ``n`` bytes long (0: none), then the encoded data.
* ``PRESENCE_VALUES_KEY``: a hash of encoded data -> how many entries have it; its
  ``HLEN`` is the count of distinct values, one read.
* ``PRESENCE_CLIENTS_KEY``: a hash of client id -> the channel it is on.

Beside them, one set of keys per shard, for the sweep: ``HELD_KEY``, a sorted set of
``b"<channel> <group>"`` by the end of their grace; ``PROCESSES_KEY``, the process
prefixes that have entries in the shard; and per process ``PROCESS_KEY``, its entries
there. ``CHANNEL_GROUPS_KEY`` (in the channel's own shard) names the groups a channel
has presence in, for the socket that closes. ``ALIVE_KEY`` (in the shard of the
process prefix) is a process's heartbeat: a key that expires.

Every script below declares all the keys it touches, which all live in the group's
shard, and runs alone on the server: so a leave is returned by the one call that
removed its entry, and announced once.
"""

from __future__ import annotations

from .scripts import RedisScript

#: One group's entries, value counts and client ids (in the group's shard).
PRESENCE_KEY = "{prefix}:p:{name}"
PRESENCE_VALUES_KEY = "{prefix}:pv:{name}"
PRESENCE_CLIENTS_KEY = "{prefix}:pc:{name}"
#: Per shard: entries held in their grace; processes with entries; a process's entries.
HELD_KEY = "{prefix}:ph"
PROCESSES_KEY = "{prefix}:pp"
PROCESS_KEY = "{prefix}:pp:{name}"
#: The groups a channel has presence in (in the channel's shard).
CHANNEL_GROUPS_KEY = "{prefix}:pm:{name}"
#: A process's heartbeat (in the process prefix's shard).
ALIVE_KEY = "{prefix}:alive:{name}"

# KEYS of every script but _DUE: the group's entries, value counts, client ids; the
# shard's held entries and processes; the channel's process's entries (a key nobody
# uses when the channel has no process), and for _JOIN the same of the channel that
# the client's entry moves from.
_PRESENCE_HELPERS = """
local P, PV, PC, PH, PPS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local function parse(entry)
    local held, size, rest = string.match(entry, '^(%d+) (%d+) (.*)$')
    size = tonumber(size)
    local client = false
    if size > 0 then client = string.sub(rest, 1, size) end
    return tonumber(held), client, string.sub(rest, size + 1)
end

local function pack(held, client, data)
    client = client or ''
    return string.format('%d %d ', held, #client) .. client .. data
end

local function process_of(channel)
    local bang = string.find(channel, '!', 1, true)
    if bang then return string.sub(channel, 1, bang) end
    return false
end

local function count(value, delta)
    if redis.call('HINCRBY', PV, value, delta) <= 0 then redis.call('HDEL', PV, value) end
end

-- Remove channel's entry (which is entry) and what indexes it; returns its data.
local function drop(group, channel, entry, process_key)
    local _, client, data = parse(entry)
    local member = channel .. ' ' .. group
    redis.call('HDEL', P, channel)
    count(data, -1)
    if client and redis.call('HGET', PC, client) == channel then redis.call('HDEL', PC, client) end
    redis.call('ZREM', PH, member)
    local process = process_of(channel)
    if process then
        redis.call('SREM', process_key, member)
        if redis.call('SCARD', process_key) == 0 then redis.call('SREM', PPS, process) end
    end
    return data
end
"""

# ARGV: group, channel, data, client id ('' none), the channel the client was on when
# the caller looked ('' none), ttl ms. Returns 1 if the entry was added (announce the
# join), 0 if it was updated or taken over from the client's other channel, -1 if the
# client moved since the caller looked (look again: KEYS[7] may be the wrong key).
_JOIN = """
local group, channel, data, client = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local added = 1
if client ~= '' then
    local old = redis.call('HGET', PC, client) or ''
    if old ~= ARGV[5] then return -1 end
    local entry = old ~= '' and redis.call('HGET', P, old)
    if entry then
        added = 0
        if old ~= channel then drop(group, old, entry, KEYS[7]) end
    end
else
    client = false
end
local current = redis.call('HGET', P, channel)
if current then
    drop(group, channel, current, KEYS[6])
    added = 0
end
redis.call('HSET', P, channel, pack(0, client, data))
count(data, 1)
if client then redis.call('HSET', PC, client, channel) end
local process = process_of(channel)
if process then
    redis.call('SADD', KEYS[6], channel .. ' ' .. group)
    redis.call('SADD', PPS, process)
end
for i = 1, 7 do extend(KEYS[i], tonumber(ARGV[6])) end
return added
"""

# ARGV: group, channel, 'open' or 'due'. Removes the entry if its socket is open
# ('open'), or if its grace ended ('due'); returns its data if it did.
_REMOVE = """
local entry = redis.call('HGET', P, ARGV[2])
if not entry then return false end
local held = parse(entry)
if ARGV[3] == 'due' then
    if held == 0 or held > now_ms() then return false end
elseif held ~= 0 then
    return false
end
return drop(ARGV[1], ARGV[2], entry, KEYS[6])
"""

# ARGV: group, channel, grace ms. An entry with a client id is held until the grace
# ends (returns 0); one without is removed (returns its data).
_CLOSE = """
local entry = redis.call('HGET', P, ARGV[2])
if not entry then return false end
local held, client, data = parse(entry)
if not client then return drop(ARGV[1], ARGV[2], entry, KEYS[6]) end
if held == 0 then
    local ends = now_ms() + tonumber(ARGV[3])
    redis.call('HSET', P, ARGV[2], pack(ends, client, data))
    redis.call('ZADD', PH, ends, ARGV[2] .. ' ' .. ARGV[1])
end
return 0
"""

# KEYS[1]: a shard's held entries. Returns those whose grace ended (server time).
_DUE = """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms())
"""

JOIN_SCRIPT = RedisScript("presence_join", _PRESENCE_HELPERS + _JOIN)
REMOVE_SCRIPT = RedisScript("presence_remove", _PRESENCE_HELPERS + _REMOVE)
CLOSE_SCRIPT = RedisScript("presence_close", _PRESENCE_HELPERS + _CLOSE)
DUE_SCRIPT = RedisScript("presence_due", _DUE)
