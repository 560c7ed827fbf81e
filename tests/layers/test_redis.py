"""The ``redis://`` layer: the layer contract, plus what only Redis promises.

Tests that need Redis use the server on 127.0.0.1:6379 (database 14, a key prefix of
their own, flushed before use), or redis-server processes of their own on free ports
(sharding, outages, command counting). Without Redis they skip, or fail with
CHANLITE_REQUIRE_REDIS=1.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import logging
import re
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chanlite import ChanliteError, ChannelFull, LayerError, Message, Routes, get_layer
from chanlite._codec import decode
from chanlite.exceptions import ConfigurationError
from chanlite.layers import BaseChannelLayer
from chanlite.layers._resp import open_connection
from chanlite.layers.redis import (
    BLOCK_SECONDS,
    CONNECT_PATIENCE,
    GROUP_SEND_SCRIPT,
    SEND_SCRIPT,
    SHARED_BATCH,
    SHARED_BATCH_MAX,
    RedisChannelLayer,
    RedisShards,
    jump_hash,
    lua_pattern,
    parse_entry,
    parse_redis_url,
)
from chanlite.worker import Worker

from ..conftest import private_redis_servers, require_redis, require_redis_server
from .closing import ClosedLayerContract
from .contract import PATIENCE, WAKE_WITHIN, LayerContract, until
from .redis_helpers import RedisServer, free_port, shared_by_three_processes

#: The shared test server's database for these tests.
TEST_URL = "redis://127.0.0.1:6379/14"
REPO_ROOT = Path(__file__).resolve().parents[2]
LOGGER = "chanlite.layers.redis"


def unique_prefix() -> str:
    return "t" + secrets.token_hex(6)


@pytest.mark.redis
class TestRedisLayer(LayerContract, ClosedLayerContract):
    async def make_layer(self, **options: Any) -> BaseChannelLayer:
        require_redis()
        options.setdefault("prefix", unique_prefix())
        layer = RedisChannelLayer(TEST_URL, **options)
        await layer.flush()
        return layer


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
async def shared_layer() -> AsyncIterator[RedisChannelLayer]:
    """A layer on the shared test server, with a prefix of its own."""
    require_redis()
    layer = RedisChannelLayer(TEST_URL, prefix=unique_prefix())
    yield layer
    await layer.flush()
    await layer.aclose()


@pytest.fixture(scope="module")
def two_servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    """Two private redis-servers, for sharding; killed by PID afterwards."""
    with private_redis_servers(2) as [first, second]:
        yield first, second


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A private redis-server for this test alone."""
    with private_redis_servers() as [server]:
        yield server


@pytest.fixture
async def sharded(
    two_servers: tuple[RedisServer, RedisServer],
) -> AsyncIterator[RedisChannelLayer]:
    url = ",".join(server.url for server in two_servers)
    layer = RedisChannelLayer(url, prefix=unique_prefix(), capacity=1000)
    yield layer
    await layer.flush()
    await layer.aclose()


async def inspect(url: str) -> redis.asyncio.Redis:
    """A plain redis-py client, to look at what the layer stored."""
    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(url)
    return client


# What the layer's Lua scripts call; Redis counts those calls in commandstats too.
SCRIPT_COMMANDS = {
    command.lower()
    for script in (SEND_SCRIPT, GROUP_SEND_SCRIPT)
    for command in re.findall(r"redis\.call\('(\w+)'", script.source)
}


async def command_calls(client: redis.asyncio.Redis) -> dict[str, int]:
    """Commands clients sent since the last CONFIG RESETSTAT (not those scripts ran,
    nor the inspecting client's own)."""
    stats = await client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}
    ignored = SCRIPT_COMMANDS | {"info", "config|resetstat"}
    return {name: count for name, count in calls.items() if name not in ignored}


# -- URLs and options ------------------------------------------------------------------


def test_several_urls_make_several_shards():
    layer = RedisChannelLayer("redis://a.example:6379/0,redis://b.example:6380/2")
    shards = layer.shards.shards
    assert [(s.address.hosts, s.address.db) for s in shards] == [
        ((("a.example", 6379),), 0),
        ((("b.example", 6380),), 2),
    ]


def test_url_defaults_are_localhost_6379_db_0():
    (address,) = parse_redis_url("redis://")
    assert (address.hosts, address.db, address.scheme) == ((("localhost", 6379),), 0, "redis")


def test_db_number_comes_from_the_path():
    (address,) = parse_redis_url("redis://cache:7000/11")
    assert (address.hosts, address.db) == ((("cache", 7000),), 11)


def test_credentials_are_read_and_never_shown():
    layer = RedisChannelLayer("redis://user:s3cret@host:6379/1")
    (address,) = layer.shards.addresses
    assert (address.username, address.password) == ("user", "s3cret")
    assert "s3cret" not in repr(layer) + repr(address) + repr(layer.shards)


def test_rediss_url_connects_with_tls():
    layer = RedisChannelLayer("rediss://secure.example:6380/3")
    shard = layer.shards.shards[0]
    assert shard.address.scheme == "rediss"
    assert shard.tls is True
    assert RedisChannelLayer("redis://plain.example/0").shards.shards[0].tls is False


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_tls_connection_to_a_plain_server_fails_as_a_connection_error():
    require_redis()
    plain = await open_connection("127.0.0.1", 6379, connect_timeout=1, reply_timeout=1)
    plain.close()
    # The server does not speak TLS: the handshake never completes.
    with pytest.raises((RedisConnectionError, RedisTimeoutError)):
        await open_connection(
            "127.0.0.1",
            6379,
            tls=ssl.create_default_context(),
            connect_timeout=0.5,
            reply_timeout=0.5,
        )


def test_sentinel_url_finds_the_master_through_its_sentinels():
    layer = get_layer("redis+sentinel://s1:26379,s2:26380/mymaster/4")
    assert isinstance(layer, RedisChannelLayer)
    (shard,) = layer.shards.shards
    assert shard.address.hosts == (("s1", 26379), ("s2", 26380))
    assert (shard.address.service, shard.address.db) == ("mymaster", 4)
    assert isinstance(shard.sentinel, Sentinel)
    asked = [client.connection_pool.connection_kwargs for client in shard.sentinel.sentinels]
    assert [(kwargs["host"], kwargs["port"]) for kwargs in asked] == [("s1", 26379), ("s2", 26380)]
    assert "mymaster via sentinel s1:26379" in shard.address.label


@pytest.mark.anyio
async def test_a_layer_behind_a_real_sentinel_sends_and_receives(tmp_path):
    require_redis_server()
    master = RedisServer()
    master.start()
    port = free_port()
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
    )
    sentinel = RedisServer(port)
    sentinel.sentinel_config = str(config)
    sentinel.start()
    layer = RedisChannelLayer(
        f"redis+sentinel://127.0.0.1:{port}/mymaster/3", prefix=unique_prefix()
    )
    client = await inspect(master.url.replace("/0", "/3"))
    try:
        await layer.send("through-sentinel", {"n": 1})
        assert await client.llen(f"{layer.prefix}:q:through-sentinel") == 1
        assert await layer.receive(["through-sentinel"], timeout=PATIENCE) == (
            "through-sentinel",
            {"n": 1},
        )
    finally:
        await client.aclose()
        await layer.aclose()
        sentinel.kill()
        master.kill()


@pytest.mark.anyio
async def test_a_password_protected_server_needs_the_right_password():
    require_redis_server()
    server = RedisServer(None, "--requirepass", "s3cret-pass")
    server.start()
    url = f"redis://:s3cret-pass@127.0.0.1:{server.port}/2"
    good = RedisChannelLayer(url, prefix=unique_prefix())
    bad = RedisChannelLayer(url.replace("s3cret-pass", "wrong"), prefix=unique_prefix())
    try:
        await good.send("locked", {"n": 1})
        assert await good.receive(["locked"], timeout=PATIENCE) == ("locked", {"n": 1})
        with pytest.raises(LayerError) as refused:
            await bad.send("locked", {"n": 2})
        assert isinstance(refused.value.__cause__, AuthenticationError)
        assert "wrong" not in str(refused.value)
    finally:
        await good.aclose()
        await bad.aclose()
        server.kill()


def test_sentinel_default_port_is_26379():
    (address,) = parse_redis_url("redis+sentinel://watcher/main")
    assert address.hosts == (("watcher", 26379),)


@pytest.mark.parametrize("scheme", ["redis", "rediss", "redis+sentinel"])
def test_get_layer_builds_a_redis_layer_for_each_scheme(scheme):
    path = "/mymaster/0" if scheme == "redis+sentinel" else "/0"
    assert isinstance(get_layer(f"{scheme}://localhost{path}"), RedisChannelLayer)


def test_query_options_reach_the_layer():
    layer = get_layer("redis://a:6379/0,redis://b:6379/1?capacity=5&expiry=2.5&prefix=app")
    assert (layer.capacity, layer.expiry, layer.prefix) == (5, 2.5, "app")
    assert len(layer.shards.shards) == 2


def test_keyword_options_reach_the_layer():
    layer = get_layer("redis://localhost/0", group_expiry=30, channel_capacity={"big.*": 500})
    assert (layer.group_expiry, layer.capacity_for("big.one")) == (30.0, 500)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://host:notaport/0", "port"),
        ("redis://host:70000/0", "port"),
        ("redis://host/abc", "database"),
        ("redis://host/0/1", "database"),
        ("redis+sentinel://host:26379", "master"),
        ("redis+sentinel://host:26379/", "master"),
        ("redis://a/0,http://b/0", "'http://b/0'"),
        ("redis://a:6379,b:6380/0", "several hosts"),
        ("redis://a/0,redis://a/0", "twice"),
        ("redis://host/0#part", "fragment"),
        ("redis://host/0?capacity=5", "query string"),
        ("", "non-empty"),
    ],
)
def test_bad_url_raises_configuration_error_naming_the_problem(url, problem):
    with pytest.raises(ConfigurationError, match=problem) as caught:
        RedisChannelLayer(url)
    assert isinstance(caught.value, ValueError)


def test_bad_url_error_hides_the_password():
    with pytest.raises(ConfigurationError) as caught:
        RedisChannelLayer("redis://user:s3cret@host:bad/0")
    assert "s3cret" not in str(caught.value)


def test_bad_query_option_through_get_layer_is_named():
    with pytest.raises(ValueError, match="capacity"):
        get_layer("redis://localhost/0?capacity=lots")


# -- placement ------------------------------------------------------------------------------


def test_jump_hash_moves_only_the_new_shares_when_a_shard_is_added():
    keys = [int.from_bytes(secrets.token_bytes(8), "big") for _ in range(5000)]
    before = [jump_hash(key, 3) for key in keys]
    after = [jump_hash(key, 4) for key in keys]
    moved = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert all(new == 3 for _, new in moved)
    assert 0.15 < len(moved) / len(keys) < 0.35  # about a quarter


def test_names_spread_over_shards_and_stay_put():
    shards = RedisShards("redis://a/0,redis://b/0,redis://c/0")
    counts = [0, 0, 0]
    for n in range(3000):
        counts[shards.index_for(f"chan.{n}")] += 1
    assert min(counts) > 800
    assert RedisShards("redis://a/0,redis://b/0,redis://c/0").index_for("x") == shards.index_for(
        "x"
    )


# -- capacity globs in Lua ----------------------------------------------------------------

GLOBS = [
    "*",
    "*!*",
    "http.*",
    "big.?",
    "[ab]*",
    "[!ab]*",
    "x[a-c]y",
    "[]x]*",
    "[!]]",
    "a[",
    "*.*.*",
]
# Stored channel names (the globs' other characters can never be in one).
NAMES = ["a", "b!", "http.request", "big.1", "big.12", "xby", "xdy", "x", "a.b.c", "c", "B-_.?"]


@pytest.mark.anyio
@pytest.mark.redis
async def test_capacity_globs_match_in_lua_as_in_fnmatch(shared_layer):
    shard = shared_layer.shards.shards[0]
    script = "return string.find(ARGV[1], ARGV[2]) and 1 or 0"
    for glob in GLOBS:
        for name in NAMES:
            found = await shard.call("EVAL", script, 0, name, lua_pattern(glob))
            assert bool(found) == fnmatch.fnmatchcase(name, glob), (glob, name)


@pytest.mark.anyio
@pytest.mark.redis
async def test_group_send_applies_capacity_globs_per_member():
    require_redis()
    layer = RedisChannelLayer(
        TEST_URL, prefix=unique_prefix(), capacity=1, channel_capacity={"roomy.*": 3, "*!*": 2}
    )
    try:
        for name in ("roomy.a", "tight", "proc!x"):
            await layer.group_add("caps", name)
        for n in range(4):
            await layer.group_send("caps", {"n": n})
        stats = await layer.stats()
        assert stats["channels"] == {"roomy.a": 3, "tight": 1, "proc!": 2}
        assert layer.group_full_skips == 1 + 3 + 2
    finally:
        await layer.flush()
        await layer.aclose()


# -- storage -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.redis
async def test_abandoned_queues_expire_from_redis(shared_layer):
    client = await inspect(TEST_URL)
    try:
        await shared_layer.send("plain", {"n": 1})
        await shared_layer.send("proc!a", {"n": 1})
        plain_ttl = await client.pttl(f"{shared_layer.prefix}:q:plain")
        process_ttl = await client.pttl(f"{shared_layer.prefix}:q:proc!")
    finally:
        await client.aclose()
    assert 0 < plain_ttl <= 60_000
    # Kept for group_expiry longer, so a late group send still sees the expired message.
    assert 86_400_000 < process_ttl <= 86_460_000


@pytest.mark.anyio
@pytest.mark.redis
async def test_message_expired_in_a_blocking_read_evicts_its_channel():
    require_redis()
    layer = RedisChannelLayer(TEST_URL, prefix=unique_prefix(), expiry=0.1)
    try:
        await layer.group_add("evicted", "dead!a")
        await layer.send("dead!a", {"n": 1})
        await anyio.sleep(0.2)
        # The BLPOP takes the expired entry; the layer drops it and evicts dead!a.
        assert await layer.receive(["dead!"], timeout=0.3) == (None, None)
        assert await layer.group_channels("evicted") == set()
    finally:
        await layer.flush()
        await layer.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_message_expired_in_the_buffer_is_dropped_and_evicts_its_channel():
    require_redis()
    layer = RedisChannelLayer(TEST_URL, prefix=unique_prefix(), expiry=0.3)
    try:
        await layer.group_add("evicted", "late!b")
        await layer.send("late!a", {"n": 1})
        await layer.send("late!b", {"n": 2})
        # One read takes both; late!b's message then expires in the process's buffer.
        assert await layer.receive(["late!"], timeout=5) == ("late!a", {"n": 1})
        await anyio.sleep(0.4)
        assert await layer.receive(["late!"], timeout=0) == (None, None)
        assert await eventually(lambda: layer.group_channels("evicted"), set(), within=5)
    finally:
        await layer.flush()
        await layer.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_one_read_takes_a_batch_of_a_process_queue(shared_layer):
    client = await inspect(TEST_URL)
    try:
        for n in range(5):
            await shared_layer.send(f"batch!{n}", {"n": n})
        assert await shared_layer.receive(["batch!"], timeout=5) == ("batch!0", {"n": 0})
        # All five came in that one read: the rest need no round trip.
        assert await client.llen(f"{shared_layer.prefix}:q:batch!") == 0
        rest = [await shared_layer.receive(["batch!"], timeout=0) for _ in range(4)]
        assert rest == [(f"batch!{n}", {"n": n}) for n in range(1, 5)]
    finally:
        await client.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_group_send_to_members_of_one_process_is_one_read(shared_layer):
    client = await inspect(TEST_URL)
    members = [f"fan!{n}" for n in range(50)]
    try:
        for member in members:
            await shared_layer.group_add("fans", member)
        await shared_layer.group_send("fans", {"text": "hi"})
        assert await client.llen(f"{shared_layer.prefix}:q:fan!") == 1
        got = [await shared_layer.receive(["fan!"], timeout=5) for _ in members]
        assert sorted(got) == sorted((member, {"text": "hi"}) for member in members)
        assert await shared_layer.receive(["fan!"], timeout=0) == (None, None)
    finally:
        await client.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_batch_nobody_receives_goes_back_to_the_head_of_its_queue(shared_layer):
    client, other = await inspect(TEST_URL), RedisChannelLayer(TEST_URL, prefix=shared_layer.prefix)
    key = f"{shared_layer.prefix}:q:work"
    try:
        for n in range(SHARED_BATCH + 4):
            await shared_layer.send("work", {"n": n})
        assert await shared_layer.receive(["work"], timeout=5) == ("work", {"n": 0})
        assert await client.llen(key) == 4  # a batch of a shared channel is small
        # Nobody here receives again: the reader stops and hands its batch back.
        assert await eventually(lambda: client.llen(key), SHARED_BATCH + 3, within=5)
        got = [await other.receive(["work"], timeout=5) for _ in range(SHARED_BATCH + 3)]
        assert [message["n"] for _, message in got] == list(range(1, SHARED_BATCH + 4))
    finally:
        await client.aclose()
        await other.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_quick_receiver_takes_bigger_batches_of_a_shared_channel(shared_layer):
    client = await inspect(TEST_URL)
    key = f"{shared_layer.prefix}:q:work"
    try:
        for n in range(100):  # the default capacity
            await shared_layer.send("work", {"n": n})
        # The first batch is the smallest; it is handled at once, so the next is the
        # largest.
        for _ in range(SHARED_BATCH + 1):
            await shared_layer.receive(["work"], timeout=PATIENCE)
        assert await client.llen(key) == 100 - SHARED_BATCH - SHARED_BATCH_MAX
    finally:
        await client.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_slow_receiver_leaves_the_rest_of_a_shared_channel_to_others(shared_layer):
    client = await inspect(TEST_URL)
    key = f"{shared_layer.prefix}:q:work"
    try:
        for n in range(100):
            await shared_layer.send("work", {"n": n})
        for _ in range(2 * SHARED_BATCH + 1):
            await shared_layer.receive(["work"], timeout=PATIENCE)
            await asyncio.sleep(0.01)  # each message takes this process 10 ms of work
        # 8 messages took 80 ms: a bigger batch would hold work others could do.
        assert await client.llen(key) == 100 - 3 * SHARED_BATCH
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_a_server_without_blmpop_is_read_with_blpop():
    require_redis_server()
    server = RedisServer(None, "--rename-command", "BLMPOP", "")
    server.start()
    layer = RedisChannelLayer(server.url, prefix=unique_prefix())
    try:
        for n in range(3):
            await layer.send("old", {"n": n})
        got = [await layer.receive(["old"], timeout=5) for _ in range(3)]
        assert got == [("old", {"n": n}) for n in range(3)]
        assert layer.shards.shards[0].blmpop is False
    finally:
        await layer.aclose()
        server.kill()


@pytest.mark.anyio
@pytest.mark.redis
async def test_stats_report_depths_and_group_sizes(shared_layer):
    await shared_layer.send("depth", {"n": 1})
    await shared_layer.send("depth", {"n": 2})
    await shared_layer.send("proc!a", {"n": 3})
    await shared_layer.group_add("room", "proc!a")
    assert await shared_layer.stats() == {
        "channels": {"depth": 2, "proc!": 1},
        "groups": {"room": 1},
    }


@pytest.mark.anyio
@pytest.mark.redis
async def test_layers_with_other_prefixes_do_not_share_messages(shared_layer):
    other = RedisChannelLayer(TEST_URL, prefix=unique_prefix())
    try:
        await shared_layer.send("mine", {"n": 1})
        assert await other.receive(["mine"], timeout=0) == (None, None)
        assert await shared_layer.receive(["mine"], timeout=0) == ("mine", {"n": 1})
    finally:
        await other.aclose()


# -- round trips, SCAN and blocking reads, counted on a private server -------------------


@pytest.mark.anyio
@pytest.mark.redis
async def test_send_is_one_script_call(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix())
    client = await inspect(own_server.url)
    try:
        await layer.send("warm", {"n": 0})  # loads the script
        await client.config_resetstat()
        await layer.send("counted", {"n": 1})
        calls = await command_calls(client)
    finally:
        await client.aclose()
        await layer.aclose()
    assert calls == {"evalsha": 1}


class Collector:
    """A local reader that records what it is handed."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    def __call__(self, channels: list[str], payload: bytes) -> None:
        self.calls.append((channels, decode(payload)))
        self.arrived.set()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_local_reader_gets_what_this_process_sends_without_redis(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix())
    client = await inspect(own_server.url)
    reader = Collector()
    try:
        assert layer.attach_reader("iface!", reader) is True
        await layer.send("warm", {"n": 0})  # loads the script
        await client.config_resetstat()
        for n in range(3):
            await layer.send(f"iface!{n}", {"n": n})
        calls = await command_calls(client)
        # Handed over in order, as they were sent; nothing went to Redis.
        assert reader.calls == [([f"iface!{n}"], {"n": n}) for n in range(3)]
        assert "evalsha" not in calls
        assert await layer.receive(["iface!"], timeout=0) == (None, None)
    finally:
        await client.aclose()
        await layer.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_local_reader_gets_a_group_entry_for_all_its_members_in_one_call(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix())
    sender = RedisChannelLayer(own_server.url, prefix=layer.prefix)  # another process
    reader = Collector()
    members = [f"iface!{n}" for n in range(100)]
    try:
        layer.attach_reader("iface!", reader)
        for member in members:
            await sender.group_add("room", member)
        await sender.send("iface!solo", {"text": "first"})
        await sender.group_send("room", {"text": "hi"})
        with anyio.fail_after(PATIENCE):
            while len(reader.calls) < 2:
                reader.arrived.clear()
                await reader.arrived.wait()
        assert reader.calls[0] == (["iface!solo"], {"text": "first"})
        channels, message = reader.calls[1]
        assert sorted(channels) == sorted(members) and message == {"text": "hi"}
    finally:
        await sender.aclose()
        await layer.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_detached_prefix_is_read_with_receive_again(shared_layer):
    reader = Collector()
    shared_layer.attach_reader("iface!", reader)
    await shared_layer.send("iface!a", {"n": 1})
    shared_layer.detach_reader("iface!")
    await shared_layer.send("iface!a", {"n": 2})
    assert await shared_layer.receive(["iface!"], timeout=PATIENCE) == ("iface!a", {"n": 2})
    assert reader.calls == [(["iface!a"], {"n": 1})]


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_local_reader_needs_a_process_prefix(shared_layer):
    with pytest.raises(ValueError, match="ending in '!'"):
        shared_layer.attach_reader("plain", Collector())


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_worker_stores_the_replies_of_a_read_together(own_server):
    routes = Routes()

    @routes.consumer("jobs")
    async def reply(message: Message) -> None:
        await message.reply_channel.asend({"n": message["n"]})  # type: ignore[union-attr]

    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix(), capacity=1000)
    client = await inspect(own_server.url)
    worker = Worker(routes, layer)
    try:
        for n in range(40):
            await layer.send("jobs", {"n": n, "reply_channel": "proc!a"})
        await client.config_resetstat()
        running = asyncio.get_running_loop().create_task(worker.run())
        got = [await layer.receive(["proc!"], timeout=PATIENCE) for _ in range(40)]
        worker.stop()
        await running
        calls = await command_calls(client)
        assert sorted(message["n"] for _, message in got) == list(range(40))
        # The worker read them in a few batches (8, then more), and each batch's
        # replies went out in one script call, not one per message.
        assert calls["evalsha"] <= calls["blmpop"] <= 6
    finally:
        await layer.flush()
        await layer.aclose()
        await client.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_concurrent_sends_to_one_channel_are_stored_together_in_order(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix(), capacity=150)
    client = await inspect(own_server.url)
    try:
        await layer.send("warm", {"n": -1})  # loads the script
        await client.config_resetstat()
        results = await asyncio.gather(
            *(layer.send("crowd", {"n": n}) for n in range(200)), return_exceptions=True
        )
        calls = await command_calls(client)
        # The first 150 fit, the rest are refused, as if sent one by one.
        assert results[:150] == [None] * 150
        assert all(isinstance(result, ChannelFull) for result in results[150:])
        # ... but far fewer script calls than sends went to Redis.
        assert calls["evalsha"] < 20
        got = [await layer.receive(["crowd"], timeout=PATIENCE) for _ in range(150)]
        assert [message["n"] for _, message in got] == list(range(150))
    finally:
        await client.aclose()
        await layer.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_flush_uses_scan_and_keeps_other_prefixes(own_server):
    mine = RedisChannelLayer(own_server.url, prefix="mine")
    theirs = RedisChannelLayer(own_server.url, prefix="mine2")
    client = await inspect(own_server.url)
    try:
        for layer in (mine, theirs):
            await layer.send("chan", {"n": 1})
            await layer.send("proc!a", {"n": 1})
            await layer.group_add("room", "proc!a")
        await client.set("mine-not-a-layer", b"x")
        await client.config_resetstat()
        await mine.flush()
        calls = await command_calls(client)
        left = sorted(key.decode() for key in await client.keys("*"))
        assert await theirs.receive(["chan"], timeout=0) == ("chan", {"n": 1})
    finally:
        await client.aclose()
        await mine.aclose()
        await theirs.aclose()
    assert "scan" in calls
    assert "keys" not in calls
    assert left == [
        "mine-not-a-layer",
        "mine2:g:room",
        "mine2:m:proc!a",
        "mine2:q:chan",
        "mine2:q:proc!",
    ]


@pytest.mark.anyio
@pytest.mark.redis
async def test_process_reads_all_its_reply_channels_with_one_blocking_read(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix())
    client = await inspect(own_server.url)
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(layer.receive, ["proc!"], 5)
            await until(lambda: layer.waiting_receivers("proc!") == 3, "3 receives waiting")
            assert await eventually(lambda: blocked_clients(client), 1, within=PATIENCE)
            info = await client.info("clients")
            for local in ("a", "b", "c"):
                await layer.send(f"proc!{local}", {"n": 1})
    finally:
        await client.aclose()
        await layer.aclose()
    assert info["blocked_clients"] == 1


@pytest.mark.anyio
@pytest.mark.redis
async def test_cancelled_receive_ends_its_blocking_read(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix())
    client = await inspect(own_server.url)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(layer.receive, ["idle"])
            assert await eventually(lambda: blocked_clients(client), 1, within=PATIENCE)
            tg.cancel_scope.cancel()
        assert await eventually(lambda: blocked_clients(client), 0, within=WAKE_WITHIN)
        await layer.send("idle", {"n": 1})
        assert await layer.receive(["idle"], timeout=0) == ("idle", {"n": 1})
    finally:
        await client.aclose()
        await layer.aclose()


@pytest.mark.anyio
async def test_a_receiver_in_a_loop_has_its_next_message_read_ahead(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix())
    client = await inspect(own_server.url)
    key = f"{layer.prefix}:q:loop"
    try:
        await layer.send("loop", {"n": 0})
        assert await layer.receive(["loop"], timeout=PATIENCE) == ("loop", {"n": 0})
        # Sent just after a receive: the read that went on takes it, with no receive
        # waiting, and the next receive finds it in the process.
        await layer.send("loop", {"n": 1})
        assert await eventually(lambda: client.llen(key), 0, within=PATIENCE)
        assert await layer.receive(["loop"], timeout=0) == ("loop", {"n": 1})
    finally:
        await client.aclose()
        await layer.aclose()


@pytest.mark.anyio
async def test_a_read_ahead_of_a_shared_channel_ends_soon_without_a_receive(own_server):
    first = RedisChannelLayer(own_server.url, prefix=unique_prefix())
    other = RedisChannelLayer(own_server.url, prefix=first.prefix)  # another process
    client = await inspect(own_server.url)
    try:
        await first.send("shared", {"n": 0})
        assert await first.receive(["shared"], timeout=PATIENCE) == ("shared", {"n": 0})
        # The first process stops reading soon after its last receive (UNBLOCK_DELAY),
        # long before its blocking read would time out: what comes next is for
        # whoever receives it.
        assert await eventually(lambda: blocked_clients(client), 0, within=BLOCK_SECONDS / 2)
        await first.send("shared", {"n": 1})
        assert await other.receive(["shared"], timeout=PATIENCE) == ("shared", {"n": 1})
    finally:
        await client.aclose()
        await other.aclose()
        await first.aclose()


async def blocked_clients(client: redis.asyncio.Redis) -> int:
    return int((await client.info("clients"))["blocked_clients"])


async def eventually(probe: Callable[[], Awaitable[Any]], expected: Any, *, within: float) -> bool:
    """Whether ``probe()`` returns ``expected`` within ``within`` seconds. Redis sends no
    event when its state changes, so this asks again every few milliseconds."""
    deadline = time.monotonic() + within
    for _ in itertools.count():
        if await probe() == expected:
            return True
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.005)
    return False


# -- sharding ------------------------------------------------------------------------------


async def keys_per_server(servers: tuple[RedisServer, ...], prefix: str) -> list[list[str]]:
    found = []
    for server in servers:
        client = await inspect(server.url)
        try:
            found.append(sorted([key.decode() async for key in client.scan_iter(f"{prefix}:*")]))
        finally:
            await client.aclose()
    return found


@pytest.mark.anyio
@pytest.mark.redis
async def test_messages_to_many_channels_land_on_both_shards(sharded, two_servers):
    names = [f"spread.{n}" for n in range(100)]
    for name in names:
        await sharded.send(name, {"to": name})
    first, second = await keys_per_server(two_servers, sharded.prefix)
    assert len(first) + len(second) == 100
    assert len(first) > 20 and len(second) > 20
    for name in names:
        assert await sharded.receive([name], timeout=0) == (name, {"to": name})


@pytest.mark.anyio
@pytest.mark.redis
async def test_receive_across_shards_wakes_for_either(sharded):
    left, right = two_names_on_different_shards(sharded)

    sent_at: list[float] = []

    async def send_once_receiving() -> None:
        await until(lambda: sharded.waiting_receivers(right) == 1, "a receive waiting")
        sent_at.append(time.monotonic())
        await sharded.send(right, {"n": 1})

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_once_receiving)
        result = await sharded.receive([left, right], timeout=5)
    assert result == (right, {"n": 1})
    assert time.monotonic() - sent_at[0] < WAKE_WITHIN
    await sharded.send(left, {"n": 2})
    assert await sharded.receive([left, right], timeout=PATIENCE) == (left, {"n": 2})


@pytest.mark.anyio
@pytest.mark.redis
async def test_receive_across_shards_takes_one_message_and_leaves_the_other(sharded):
    left, right = two_names_on_different_shards(sharded)
    await sharded.send(left, {"n": 1})
    await sharded.send(right, {"n": 2})
    # Both shards' reads may take a message; the one not returned is put back.
    first = await sharded.receive([left, right], timeout=PATIENCE)
    second = await sharded.receive([left, right], timeout=PATIENCE)
    assert sorted([first, second]) == [(left, {"n": 1}), (right, {"n": 2})]
    assert await sharded.receive([left, right], timeout=0.2) == (None, None)


def two_names_on_different_shards(layer: RedisChannelLayer) -> tuple[str, str]:
    index = layer.shards.index_for
    right = next(f"cross.{n}" for n in range(1, 100) if index(f"cross.{n}") != index("cross.0"))
    return "cross.0", right


@pytest.mark.anyio
@pytest.mark.redis
async def test_group_spanning_shards_delivers_to_every_member(sharded):
    members = [f"member.{n}" for n in range(20)] + [f"proc{n}!x" for n in range(20)]
    for member in members:
        await sharded.group_add("wide", member)
    assert {sharded.shards.index_for(member.split("!")[0] + "!") for member in members[20:]} == {
        0,
        1,
    }
    assert {sharded.shards.index_for(member) for member in members[:20]} == {0, 1}
    assert await sharded.group_channels("wide") == set(members)
    await sharded.group_send("wide", {"all": True})
    for member in members:
        stored = member.split("!")[0] + "!" if "!" in member else member
        assert await sharded.receive([stored], timeout=0) == (member, {"all": True})


@pytest.mark.anyio
@pytest.mark.redis
async def test_group_send_is_one_script_call_per_shard(sharded, two_servers):
    for n in range(50):
        await sharded.group_add("counted", f"counted.{n}")
    await sharded.group_send("counted", {"warm": True})  # loads the script
    clients = [await inspect(server.url) for server in two_servers]
    try:
        for client in clients:
            await client.config_resetstat()
        await sharded.group_send("counted", {"n": 1})
        calls = [await command_calls(client) for client in clients]
    finally:
        for client in clients:
            await client.aclose()
    assert calls == [{"evalsha": 1}, {"evalsha": 1}]


@pytest.mark.anyio
@pytest.mark.redis
async def test_process_specific_channels_of_one_prefix_share_a_shard(sharded, two_servers):
    for n in range(30):
        await sharded.send(f"proc!{n}", {"n": n})
    first, second = await keys_per_server(two_servers, sharded.prefix)
    assert sorted([first, second], key=len) == [[], [f"{sharded.prefix}:q:proc!"]]
    received = [await sharded.receive(["proc!"], timeout=0) for _ in range(30)]
    assert received == [(f"proc!{n}", {"n": n}) for n in range(30)]


@pytest.mark.anyio
@pytest.mark.redis
async def test_flush_clears_both_shards(sharded, two_servers):
    for n in range(40):
        await sharded.send(f"flushed.{n}", {"n": n})
        await sharded.group_add("flushed", f"flushed!{n}")
    assert all(await keys_per_server(two_servers, sharded.prefix))
    await sharded.flush()
    assert await keys_per_server(two_servers, sharded.prefix) == [[], []]


@pytest.mark.anyio
@pytest.mark.redis
async def test_stats_add_up_over_shards(sharded):
    for n in range(10):
        await sharded.send(f"counted.{n}", {"n": n})
        await sharded.group_add("all", f"counted.{n}")
    stats = await sharded.stats()
    assert stats == {
        "channels": {f"counted.{n}": 1 for n in range(10)},
        "groups": {"all": 10},
    }


# -- volume ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.redis
async def test_group_of_2000_members_gets_every_message_of_100_sends():
    require_redis()
    prefix = unique_prefix()
    layer = RedisChannelLayer(TEST_URL, prefix=prefix, channel_capacity={"*!*": 100_000})
    plain = [f"big.{n}" for n in range(1500)]
    process = [f"bigp{n % 10}!{n}" for n in range(500)]
    client = await inspect(TEST_URL)
    try:
        await layer.flush()
        for member in plain + process:
            await layer.group_add("huge", member)
        for n in range(100):  # exactly the default capacity of 100 for the plain members
            await layer.group_send("huge", {"n": n})
        assert layer.group_full_skips == 0
        # One entry per send for all the members of a process queue, one per plain member.
        assert await client.llen(f"{prefix}:q:bigp3!") == 100
        delivered = await delivered_numbers(client, prefix, plain, process)
        assert await layer.receive(["big.7"], timeout=0) == ("big.7", {"n": 0})
    finally:
        await client.aclose()
        await layer.flush()
        await layer.aclose()
    assert sum(len(numbers) for numbers in delivered.values()) == 200_000
    assert all(numbers == list(range(100)) for numbers in delivered.values())


async def delivered_numbers(
    client: redis.asyncio.Redis, prefix: str, plain: list[str], process: list[str]
) -> dict[str, list[int]]:
    """Every message waiting for each member, read straight from Redis."""
    stored = plain + sorted({name.split("!")[0] + "!" for name in process})
    async with client.pipeline(transaction=False) as pipe:
        for name in stored:
            pipe.lrange(f"{prefix}:q:{name}", 0, -1)
        queues = await pipe.execute()
    delivered: dict[str, list[int]] = {name: [] for name in plain + process}
    for entries in queues:
        for entry in entries:
            _, channels, payload = parse_entry(entry)
            for channel in channels:
                delivered[channel].append(decode(payload)["n"])
    return delivered


@pytest.mark.anyio
@pytest.mark.redis
async def test_three_receiver_processes_get_each_of_5000_messages_exactly_once():
    require_redis()
    count = 5000
    received = await shared_by_three_processes(TEST_URL, unique_prefix(), count)
    assert len(received) == count
    assert sorted(received) == list(range(count))


# -- outages ---------------------------------------------------------------------------------


def outage_records(caplog: pytest.LogCaptureFixture) -> tuple[list[str], list[str]]:
    records = [r for r in caplog.records if r.name == LOGGER]
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    infos = [r.getMessage() for r in records if r.levelno == logging.INFO]
    return warnings, infos


@pytest.mark.anyio
async def test_commands_raise_after_trying_to_connect_for_a_while(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    port = free_port()
    layer = RedisChannelLayer(f"redis://127.0.0.1:{port}/0")
    try:
        started = time.monotonic()
        with pytest.raises(LayerError) as sent:
            await layer.send("nowhere", {"n": 1})
        assert CONNECT_PATIENCE - 0.1 < time.monotonic() - started < CONNECT_PATIENCE + 0.5
        assert isinstance(sent.value.__cause__, RedisConnectionError)
        assert sent.value.backend == f"Redis at 127.0.0.1:{port}/0"
        with pytest.raises(LayerError) as received:
            await layer.receive(["nowhere"], timeout=0)  # timeout=0 does not wait
        assert isinstance(received.value.__cause__, RedisConnectionError)
    finally:
        await layer.aclose()
    warnings, _ = outage_records(caplog)
    assert len(warnings) == 1
    assert warnings[0].startswith(f"redis at 127.0.0.1:{port} unreachable; retrying")


@pytest.mark.anyio
async def test_waiting_receive_times_out_quietly_while_redis_is_down(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    layer = RedisChannelLayer(f"redis://127.0.0.1:{free_port()}/0")
    try:
        started = time.monotonic()
        assert await layer.receive(["nowhere"], timeout=0.3) == (None, None)
        assert time.monotonic() - started < 0.3 + WAKE_WITHIN
    finally:
        await layer.aclose()
    warnings, _ = outage_records(caplog)
    assert len(warnings) == 1


@pytest.mark.anyio
@pytest.mark.redis
async def test_traffic_survives_a_redis_restart(own_server, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix(), capacity=100_000)
    traffic = Traffic(layer)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(traffic.receive)
            tg.start_soon(traffic.send)
            await traffic.received_at_least(200)
            own_server.kill()  # mid-traffic
            with anyio.fail_after(2 * CONNECT_PATIENCE + 5):
                # The second failure comes after a send spent its patience connecting.
                await traffic.failed_twice.wait()
            own_server.start()  # same port
            restarted, first_new = time.monotonic(), traffic.attempts
            await traffic.received_number_above(first_new, within=5)
            assert time.monotonic() - restarted < 5
            await traffic.received_number_above(first_new + 100, within=5)
            tg.cancel_scope.cancel()
    finally:
        await layer.aclose()
    assert len(traffic.received) == len(set(traffic.received))  # never twice
    after = [n for n in traffic.received if n >= first_new]
    assert after == list(range(first_new, first_new + len(after)))  # none lost since
    warnings, infos = outage_records(caplog)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"redis at 127.0.0.1:{own_server.port} unreachable; retrying")
    assert infos == [f"redis at 127.0.0.1:{own_server.port} is reachable again"]


@pytest.mark.anyio
async def test_an_idle_connection_closed_by_a_restart_is_replaced_before_use(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix())
    shard = layer.shards.shards[0]
    try:
        await layer.send("before", {"n": 0})  # the command connection is open, and idle
        own_server.kill()

        async def noticed() -> bool:
            return shard._commands is None or shard._commands.broken

        # Every connection is read all the time: the server closing it is seen at once.
        assert await eventually(noticed, True, within=PATIENCE)
        own_server.start()  # same port
        # A send is never repeated, so it would fail if it went out on the dead
        # connection; it goes out on a new one.
        await layer.send("after", {"n": 1})
        assert await layer.receive(["after"], timeout=PATIENCE) == ("after", {"n": 1})
    finally:
        await layer.aclose()


class Traffic:
    """A sender and a receiver that keep going through an outage."""

    def __init__(self, layer: RedisChannelLayer) -> None:
        self.layer = layer
        self.attempts = 0
        self.failures = 0
        self.received: list[int] = []
        self.failed_twice = anyio.Event()
        self._arrived = anyio.Event()

    async def send(self) -> None:
        while True:
            # A new number for every attempt: a failed send may still have been stored.
            self.attempts += 1
            try:
                await self.layer.send("traffic", {"n": self.attempts - 1})
            except LayerError:
                self.failures += 1
                if self.failures >= 2:
                    self.failed_twice.set()

    async def receive(self) -> None:
        while True:
            _, message = await self.layer.receive(["traffic"])
            assert message is not None
            self.received.append(message["n"])
            self._arrived.set()

    async def received_at_least(self, count: int) -> None:
        with anyio.fail_after(10):
            while len(self.received) < count:
                await self._wait()

    async def received_number_above(self, number: int, *, within: float) -> None:
        with anyio.fail_after(within):
            while not self.received or self.received[-1] < number:
                await self._wait()

    async def _wait(self) -> None:
        self._arrived = anyio.Event()
        await self._arrived.wait()


@pytest.mark.anyio
async def test_a_server_that_stops_makes_every_kind_of_command_raise_layer_error(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix())
    commands: dict[str, Callable[[], Awaitable[Any]]] = {
        "a send (never repeated)": lambda: layer.send("down", {"n": 1}),
        "a receive that does not wait": lambda: layer.receive(["down"], timeout=0),
        "a group change (repeated while connecting)": lambda: layer.group_add("down", "one"),
        "a read of every shard": lambda: layer.group_channels("down"),
    }
    try:
        await layer.send("up", {"n": 0})  # the connection is open
        own_server.kill()
        for name, command in commands.items():
            with pytest.raises(LayerError) as caught:
                await command()
            assert isinstance(caught.value.__cause__, (RedisConnectionError, RedisTimeoutError)), (
                name
            )
            assert caught.value.backend == f"Redis at 127.0.0.1:{own_server.port}/0", name
    finally:
        await layer.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_command_redis_refuses_raises_layer_error_caused_by_its_error_reply(
    shared_layer, caplog
):
    client = await inspect(TEST_URL)
    try:
        # A key of the wrong type where the channel's list belongs: every command on it
        # gets an error reply.
        await client.set(f"{shared_layer.prefix}:q:wrong", "not a list")
        with pytest.raises(LayerError, match="WRONGTYPE") as sent:
            await shared_layer.send("wrong", {"n": 1})
        assert isinstance(sent.value.__cause__, ResponseError)
        with pytest.raises(LayerError, match="WRONGTYPE") as taken:
            await shared_layer.receive(["wrong"], timeout=0)
        assert isinstance(taken.value.__cause__, ResponseError)
        with pytest.raises(LayerError, match="WRONGTYPE") as waited:  # the blocking read
            await shared_layer.receive(["wrong"], timeout=PATIENCE)
        assert isinstance(waited.value.__cause__, ResponseError)
    finally:
        await client.aclose()
    assert any("reading wrong failed" in record.getMessage() for record in caplog.records)


@pytest.mark.anyio
async def test_a_server_that_does_not_speak_resp_raises_layer_error():
    async def gibberish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"?no idea\r\n")
        writer.close()

    server = await asyncio.start_server(gibberish, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    layer = RedisChannelLayer(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(LayerError, match="unexpected reply from Redis") as caught:
            await layer.send("anything", {"n": 1})
        assert isinstance(caught.value.__cause__, RedisConnectionError)
    finally:
        await layer.aclose()
        server.close()
        await server.wait_closed()


@pytest.mark.anyio
async def test_chanlite_errors_still_come_from_the_layer_during_an_outage():
    layer = RedisChannelLayer(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(ChanliteError):
            await layer.send("bad name", {"n": 1})  # refused before any connection
    finally:
        await layer.aclose()


# -- one command connection ---------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_commands_share_one_connection(own_server):
    layer = RedisChannelLayer(own_server.url, prefix=unique_prefix(), capacity=1000)
    client = await inspect(own_server.url)
    try:
        before = int((await client.info("stats"))["total_connections_received"])
        await asyncio.gather(*(layer.send("many", {"n": n}) for n in range(500)))
        after = int((await client.info("stats"))["total_connections_received"])
        assert after - before == 1
        assert await client.llen(f"{layer.prefix}:q:many") == 500
    finally:
        await client.aclose()
        await layer.aclose()


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_cancelled_command_does_not_shift_the_replies_of_others(shared_layer):
    await shared_layer.group_add("left", "one")
    await shared_layer.group_add("right", "two")
    for _ in range(20):
        cancelled = asyncio.ensure_future(shared_layer.group_channels("left"))
        await asyncio.sleep(0)  # the command is on its way out
        cancelled.cancel()
        right, left = await asyncio.gather(
            shared_layer.group_channels("right"), shared_layer.group_channels("left")
        )
        assert (right, left) == ({"two"}, {"one"})
