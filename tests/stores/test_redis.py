"""The ``redis://`` session store: the store contract, plus what only Redis promises.

Tests use the server on 127.0.0.1:6379, database 13 (the layer tests use 14), each
store under a key prefix of its own whose keys are deleted before and after the test;
or redis-server processes of their own on free ports (sharding, command counting,
outages). Without Redis they skip, or fail with CHANLITE_REQUIRE_REDIS=1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from chanlite import LayerError
from chanlite._codec import decode
from chanlite.layers.redis import RedisChannelLayer
from chanlite.stores import get_session_store
from chanlite.stores.redis import CURSOR_KEY, SESSION_KEY, RedisSessionStore

from ..conftest import private_redis_servers, require_redis
from ..layers.redis_helpers import RedisServer
from .contract import TTL
from .redis_contract import RedisStoreContract, purge, unique_prefix

#: The shared test server's database for these tests.
TEST_URL = "redis://127.0.0.1:6379/13"


@pytest.mark.redis
class TestRedisStore(RedisStoreContract):
    @pytest.fixture(autouse=True)
    def _url(self) -> None:
        require_redis()
        self.url = TEST_URL


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
async def shared_store() -> AsyncIterator[RedisSessionStore]:
    """A store on the shared test server, with a prefix of its own."""
    require_redis()
    store = RedisSessionStore(TEST_URL, prefix=unique_prefix())
    yield store
    await purge(store.shards, store.prefix)
    await store.aclose()


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    """A plain redis-py client on the test database, to look at what the store did."""
    require_redis()
    connection: Any = redis.asyncio.Redis.from_url(TEST_URL)
    yield connection
    await connection.aclose()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A private redis-server for this test alone; killed by PID afterwards."""
    with private_redis_servers() as [server]:
        yield server


@pytest.fixture
def two_servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    with private_redis_servers(2) as [first, second]:
        yield first, second


# -- layout on the server ---------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_session_is_a_string_with_a_server_expiry(shared_store, client):
    key = SESSION_KEY.format(prefix=shared_store.prefix, key="http:abc")
    assert key == f"{shared_store.prefix}:s:http:abc"
    await shared_store.save("http:abc", {"a": b"\x00"}, 30)
    assert decode(await client.get(key)) == {"a": b"\x00"}
    assert 0 < await client.pttl(key) <= 30_000
    assert await shared_store.load("http:abc", 300) == {"a": b"\x00"}
    assert 30_000 < await client.pttl(key) <= 300_000  # the load pushed it forward
    await shared_store.delete("http:abc")
    assert await client.exists(key) == 0


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_cursor_is_a_hash_of_next_and_flagged_parked_payloads(shared_store, client):
    key = CURSOR_KEY.format(prefix=shared_store.prefix, socket="ws!abc")
    assert key == f"{shared_store.prefix}:o:ws!abc"
    assert await shared_store.order_start("ws!abc", 0, False, b"", 30)
    assert not await shared_store.order_start("ws!abc", 2, False, b"strict", 30)
    assert not await shared_store.order_start("ws!abc", 3, True, b"slight", 30)
    assert await client.hgetall(key) == {b"next": b"0", b"2": b"0strict", b"3": b"1slight"}
    assert 0 < await client.pttl(key) <= 30_000
    assert await shared_store.order_finish("ws!abc", 0, False, 300) == [b"slight"]
    assert await client.hgetall(key) == {b"next": b"1", b"2": b"0strict"}
    assert 30_000 < await client.pttl(key) <= 300_000
    assert await shared_store.order_finish("ws!abc", 1, True, 30) == [b"strict"]
    assert await shared_store.order_finish("ws!abc", 2, True, 30) == []
    assert await client.exists(key) == 0


@pytest.mark.redis
@pytest.mark.anyio
async def test_stores_with_two_prefixes_on_one_database_are_independent(client):
    require_redis()
    first = RedisSessionStore(TEST_URL, prefix=unique_prefix())
    second = RedisSessionStore(TEST_URL, prefix=unique_prefix())
    try:
        await first.save("same", {"by": "first"}, TTL)
        await second.save("same", {"by": "second"}, TTL)
        assert await first.load("same", TTL) == {"by": "first"}
        assert await second.load("same", TTL) == {"by": "second"}
        assert await first.order_start("same", 0, False, b"", TTL)
        assert await first.order_finish("same", 0, False, TTL) == []
        assert not await second.order_start("same", 1, False, b"", TTL)
        assert {key async for key in client.scan_iter(f"{first.prefix}:*")} == {
            f"{first.prefix}:s:same".encode(),
            f"{first.prefix}:o:same".encode(),
        }
    finally:
        for store in (first, second):
            await purge(store.shards, store.prefix)
            await store.aclose()


# -- sharing the layer's connections ----------------------------------------------------


@pytest.mark.redis
@pytest.mark.anyio
async def test_for_layer_shares_the_layers_connections_and_prefix_and_leaves_them_open():
    require_redis()
    layer = RedisChannelLayer(TEST_URL, prefix=unique_prefix())
    try:
        store = RedisSessionStore.for_layer(layer)
        assert store.shards is layer.shards
        assert store.prefix == layer.prefix
        await store.save("http:x", {"n": 1}, TTL)
        await store.aclose()
        await layer.send("after.close", {"n": 2})  # the shared connections still work
        assert await layer.receive(["after.close"], timeout=2) == ("after.close", {"n": 2})
        assert await RedisSessionStore.for_layer(layer).load("http:x", TTL) == {"n": 1}
    finally:
        await layer.flush()  # every key under the prefix: the store's too
        await layer.aclose()


# -- URLs -------------------------------------------------------------------------------


def test_store_urls_are_read_like_layer_urls():
    store = RedisSessionStore("redis://a.example:6379/0,rediss://user:s3cret@b.example:6380/2")
    assert [(a.scheme, a.hosts, a.db) for a in store.shards.addresses] == [
        ("redis", (("a.example", 6379),), 0),
        ("rediss", (("b.example", 6380),), 2),
    ]
    assert store.prefix == "chanlite"
    assert "s3cret" not in repr(store)


def test_a_sentinel_url_finds_the_master_through_its_sentinels():
    store = RedisSessionStore("redis+sentinel://s1:26379,s2:26380/mymaster/4", prefix="app")
    (address,) = store.shards.addresses
    assert (address.hosts, address.service, address.db) == (
        (("s1", 26379), ("s2", 26380)),
        "mymaster",
        4,
    )
    assert store.prefix == "app"


# -- private servers --------------------------------------------------------------------


@pytest.mark.anyio
async def test_keys_spread_over_shards_and_each_is_found_on_its_own(two_servers):
    url = ",".join(server.url for server in two_servers)
    store = RedisSessionStore(url, prefix=unique_prefix())
    try:
        for n in range(40):
            await store.save(f"k{n}", {"n": n}, TTL)
            assert await store.order_start(f"sock{n}", 0, False, b"", TTL)
        for n in range(40):
            assert await store.load(f"k{n}", TTL) == {"n": n}
            assert await store.order_finish(f"sock{n}", 0, False, TTL) == []
        sizes = [await shard.call("DBSIZE") for shard in store.shards.shards]
        assert sum(sizes) == 80
        assert all(sizes), f"every shard should hold some keys: {sizes}"
    finally:
        await store.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_each_operation_is_one_round_trip_of_one_command(shared_store, monkeypatch):
    sent: list[list[str]] = []
    for shard in shared_store.shards.shards:
        call_many = shard.call_many

        async def recording(commands: Any, *, _call: Any = call_many, **options: Any) -> Any:
            sent.append([str(command[0]) for command in commands])
            return await _call(commands, **options)

        monkeypatch.setattr(shard, "call_many", recording)
    await shared_store.load("warm", TTL)  # the first use of a script may need an EVAL
    await shared_store.order_start("warm", 0, False, b"", TTL)
    await shared_store.order_finish("warm", 0, False, TTL)
    operations: list[tuple[Callable[[], Awaitable[Any]], str]] = [
        (lambda: shared_store.save("k", {"n": 1}, TTL), "SET"),
        (lambda: shared_store.load("k", TTL), "EVALSHA"),
        (lambda: shared_store.delete("k"), "DEL"),
        (lambda: shared_store.order_start("s", 1, False, b"p", TTL), "EVALSHA"),
        (lambda: shared_store.order_finish("s", 0, False, TTL), "EVALSHA"),
    ]
    for operation, command in operations:
        sent.clear()
        await operation()
        assert sent == [[command]]


@pytest.mark.anyio
async def test_the_store_rides_out_a_server_restart(own_server):
    store = RedisSessionStore(own_server.url)
    try:
        await store.save("k", {"n": 1}, TTL)
        own_server.kill()
        with pytest.raises(LayerError) as caught:
            await store.load("k", TTL)
        assert isinstance(caught.value.__cause__, RedisConnectionError)
        own_server.start()  # same port, empty: nothing persisted
        assert await store.load("k", TTL) is None
        await store.save("k", {"n": 2}, TTL)
        assert await store.load("k", TTL) == {"n": 2}
    finally:
        await store.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_get_session_store_builds_a_redis_store_with_the_url_prefix():
    require_redis()
    store = get_session_store(f"{TEST_URL}?prefix=fromurl")
    try:
        assert isinstance(store, RedisSessionStore)
        assert store.prefix == "fromurl"
    finally:
        await store.aclose()
