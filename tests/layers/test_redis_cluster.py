"""``redis+cluster://`` against a real Redis Cluster of our own: three masters and
three replicas (see ``cluster_helpers``).

The layer and store contracts run on it unchanged. Beyond them: receivers in three
processes share 5,000 messages exactly once, a 2,000-member group spread over every
master gets every message, and traffic survives a master's death (its replica takes
over) and a slot moving between masters, losing at most what was in flight and
never delivering a message twice. Without a redis-server binary these tests skip, or
fail with CHANLITE_REQUIRE_REDIS=1.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from chanlite import LayerError
from chanlite.exceptions import ConfigurationError
from chanlite.layers import BaseChannelLayer, get_layer
from chanlite.layers.redis import RedisChannelLayer
from chanlite.layers.redis.cluster import BUCKETS, TAGS
from chanlite.stores.redis import RedisSessionStore

from ..conftest import require_redis, require_redis_server
from ..stores.redis_contract import RedisStoreContract, purge
from .closing import ClosedLayerContract
from .cluster_helpers import ClusterDeployment, cluster_deployment, key_slot
from .contract import PATIENCE, LayerContract, until
from .redis_helpers import free_port, shared_by_three_processes
from .traffic import Traffic

pytestmark = pytest.mark.anyio

#: How soon traffic must flow again once the cluster answers (DESIGN §10).
RECOVERY = 5.0
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The Redis that is not a cluster (the one the plain layer tests use).
PLAIN_SEED = "127.0.0.1:6379"


def unique_prefix() -> str:
    return "c" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDeployment]:
    """One cluster shared by the tests that never fail it over or move its slots."""
    require_redis_server()
    with cluster_deployment(tmp_path_factory.mktemp("cluster")) as started:
        yield started


class TestClusterLayer(LayerContract, ClosedLayerContract):
    @pytest.fixture(autouse=True)
    def _url(self, cluster: ClusterDeployment) -> None:
        self.url = cluster.url()

    async def make_layer(self, **options: Any) -> BaseChannelLayer:
        options.setdefault("prefix", unique_prefix())
        layer = RedisChannelLayer(self.url, **options)
        await layer.flush()
        return layer


class TestClusterStore(RedisStoreContract):
    @pytest.fixture(autouse=True)
    def _url(self, cluster: ClusterDeployment) -> None:
        self.url = cluster.url()


# -- key layout ------------------------------------------------------------------------


def test_bucket_tags_spread_over_the_slots() -> None:
    slots = [key_slot("{" + tag + "}") for tag in TAGS]
    assert len(TAGS) == BUCKETS == 16
    assert slots == sorted(slots)
    for index, slot in enumerate(slots):
        assert index * 1024 <= slot < (index + 1) * 1024


async def test_every_key_carries_a_bucket_tag(cluster: ClusterDeployment) -> None:
    layer = RedisChannelLayer(cluster.url(), prefix=unique_prefix())
    store = RedisSessionStore(layer.shards, prefix=layer.prefix)
    try:
        await layer.send("tagged", {"n": 1})
        await layer.group_add("room", await layer.new_channel("proc!"))
        await store.save("session", {"n": 1}, 60)
        keys = [key for node in await layer.shards.nodes() async for key in _keys(node, layer)]
        # queue, group part, membership, the group's bucket index, session
        assert len(keys) == 5, keys
        for key in keys:
            tag = key.split("{", 1)[1].split("}", 1)[0]
            assert key.startswith(f"{layer.prefix}:{{{tag}}}:") and tag in TAGS
    finally:
        await layer.flush()
        await layer.aclose()


async def _keys(node: Any, layer: RedisChannelLayer) -> Any:
    async for keys in node.scan(f"{layer.prefix}:*"):
        for key in keys:
            yield key.decode()


async def test_a_group_send_runs_only_on_the_buckets_that_hold_members(
    cluster: ClusterDeployment,
) -> None:
    layer = RedisChannelLayer(cluster.url(), prefix=unique_prefix())
    try:
        members = [await layer.new_channel("one.process!") for _ in range(20)]
        for member in members:  # all in the bucket of the queue "one.process!"
            await layer.group_add("room", member)
        before = await script_calls(layer)
        await layer.group_send("room", {"n": 1})
        assert await script_calls(layer) - before == 1
        got = await layer.receive(["one.process!"], timeout=PATIENCE)
        assert got[0] in members and got[1] == {"n": 1}
    finally:
        await layer.flush()
        await layer.aclose()


async def test_a_group_send_reaches_a_bucket_another_process_added_since_the_last(
    cluster: ClusterDeployment,
) -> None:
    sender = RedisChannelLayer(cluster.url(), prefix=unique_prefix())
    other = RedisChannelLayer(cluster.url(), prefix=sender.prefix)  # another process
    try:
        first = next(f"a{n}.x" for n in range(100) if sender.shards.index_for(f"a{n}.x") == 0)
        later = next(f"b{n}.x" for n in range(100) if sender.shards.index_for(f"b{n}.x") == 1)
        await sender.group_add("room", first)
        await sender.group_send("room", {"n": 1})  # the sender now knows bucket 0 only
        await other.group_add("room", later)
        await sender.group_send("room", {"n": 2})
        assert await sender.receive([later], timeout=PATIENCE) == (later, {"n": 2})
        got = [await sender.receive([first], timeout=PATIENCE) for _ in range(2)]
        assert got == [(first, {"n": 1}), (first, {"n": 2})]
    finally:
        await sender.flush()
        await sender.aclose()
        await other.aclose()


async def script_calls(layer: RedisChannelLayer) -> int:
    """EVALSHA calls so far, summed over the cluster's masters."""
    total = 0
    for node in await layer.shards.nodes():
        stats = (await node.call("INFO", "commandstats")).decode()
        for line in stats.splitlines():
            if line.startswith("cmdstat_evalsha:"):
                total += int(line.split("calls=", 1)[1].split(",", 1)[0])
    return total


# -- scale -----------------------------------------------------------------------------


async def test_three_receiver_processes_get_each_of_5000_messages_exactly_once(
    cluster: ClusterDeployment,
) -> None:
    count = 5000
    received = await shared_by_three_processes(cluster.url(), unique_prefix(), count)
    assert len(received) == count
    assert sorted(received) == list(range(count))


async def test_a_group_spread_over_every_master_gets_every_message(
    cluster: ClusterDeployment,
) -> None:
    layer = RedisChannelLayer(cluster.url(), prefix=unique_prefix())
    try:
        members = [await layer.new_channel("member?") for _ in range(2000)]
        for member in members:
            await layer.group_add("crowd", member)
        queues = [f"{layer.prefix}:{{{TAGS[layer.shards.index_for(m)]}}}:q:{m}" for m in members]
        owners = {cluster.owner_of(key_slot(queue)) for queue in queues}
        assert owners == set(cluster.master_ports()), "the members do not span every master"
        for n in range(100):
            await layer.group_send("crowd", {"n": n})
        depths = (await layer.stats())["channels"]
        assert {member: depths.get(member) for member in members} == dict.fromkeys(members, 100)
        for member in (members[0], members[-1]):
            got = [(await layer.receive([member], timeout=1))[1] for _ in range(100)]
            assert got == [{"n": n} for n in range(100)]
    finally:
        await layer.flush()
        await layer.aclose()


# -- failover and resharding -------------------------------------------------------------


async def run_traffic_through(
    layer: BaseChannelLayer, disturb: Callable[[], Awaitable[float]]
) -> tuple[Traffic, int]:
    """Run traffic, call ``disturb`` (which returns the monotonic time from which the
    cluster answers again), and return once a message sent after that arrived within
    :data:`RECOVERY` and the sending is drained. Returns the traffic and the number of
    the last message sent before the cluster answered again."""
    traffic = Traffic(layer, "traffic")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(traffic.send)
        tasks.start_soon(traffic.receive)
        await until(lambda: len(traffic.received) >= 50, "traffic before the disturbance")
        answered_at = await disturb()
        settled = traffic.next - 1  # every later message is sent after it
        await until(
            lambda: traffic.has_received_after(settled),
            "a message sent after the cluster answered again",
            within=RECOVERY - (time.monotonic() - answered_at),
            pause=0.01,
        )
        traffic.sending = False
        await until(
            lambda: traffic.received[-1] >= traffic.sent[-1], "the last message sent", pause=0.01
        )
        tasks.cancel_scope.cancel()
    return traffic, settled


def check_nothing_twice_nothing_lost(traffic: Traffic, settled: int) -> None:
    received = traffic.received
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert received == sorted(received), "messages arrived out of order"
    assert set(received) <= {*traffic.sent, *traffic.failed}
    after = [number for number in traffic.sent if number > settled]
    assert after, "nothing was sent after the cluster answered again"
    assert set(after) <= set(received), "a message sent after recovery was lost"


def traffic_slot(layer: RedisChannelLayer) -> int:
    return key_slot("{" + TAGS[layer.shards.index_for("traffic")] + "}")


async def test_traffic_survives_the_death_of_a_master(tmp_path: Path) -> None:
    require_redis_server()
    with cluster_deployment(tmp_path) as cluster:
        layer = RedisChannelLayer(cluster.url(), prefix=unique_prefix(), capacity=100_000)
        victim = cluster.owner_of(traffic_slot(layer))

        async def kill_the_master() -> float:
            cluster.kill(victim)
            await anyio.to_thread.run_sync(cluster.wait_for_promotion, victim)
            assert cluster.promoted_at is not None
            return cluster.promoted_at

        try:
            traffic, settled = await run_traffic_through(layer, kill_the_master)
            store = RedisSessionStore(cluster.url(), prefix=layer.prefix)
            await store.save("after-failover", {"n": 1}, 60)  # the store finds it too
            assert await store.load("after-failover", 60) == {"n": 1}
            await purge(store.shards, store.prefix)
            await store.aclose()
            assert cluster.owner_of(traffic_slot(layer)) != victim
        finally:
            await layer.aclose()
    check_nothing_twice_nothing_lost(traffic, settled)


async def test_traffic_survives_its_slot_moving_to_another_master(tmp_path: Path) -> None:
    require_redis_server()
    with cluster_deployment(tmp_path) as cluster:
        layer = RedisChannelLayer(cluster.url(), prefix=unique_prefix(), capacity=100_000)
        slot = traffic_slot(layer)
        source = cluster.owner_of(slot)
        target = next(port for port in cluster.master_ports() if port != source)

        async def move_the_slot() -> float:
            await anyio.to_thread.run_sync(lambda: cluster.migrate_slot(slot, target, batch=1))
            return time.monotonic()

        try:
            traffic, settled = await run_traffic_through(layer, move_the_slot)
        finally:
            await layer.flush()
            await layer.aclose()
        assert cluster.owner_of(slot) == target
    check_nothing_twice_nothing_lost(traffic, settled)


# -- bad input -------------------------------------------------------------------------


async def test_a_cluster_url_naming_a_plain_server_says_so() -> None:
    require_redis()
    layer = get_layer(f"redis+cluster://{PLAIN_SEED}")
    try:
        with pytest.raises(LayerError, match="not a cluster node") as raised:
            await layer.send("anything", {"n": 1})
        assert "use redis://" in str(raised.value)
    finally:
        await layer.aclose()


async def test_an_unreachable_seed_node_says_so() -> None:
    port = free_port()
    layer = get_layer(f"redis+cluster://127.0.0.1:{port}")
    try:
        with pytest.raises(LayerError, match=f"127.0.0.1:{port}.*no seed node could be reached"):
            await layer.send("anything", {"n": 1})
    finally:
        await layer.aclose()


async def test_a_receive_waits_out_an_unreachable_cluster_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="chanlite.layers.redis")
    port = free_port()
    layer = get_layer(f"redis+cluster://127.0.0.1:{port}")
    try:
        assert await layer.receive(["anything"], timeout=0.5) == (None, None)
    finally:
        await layer.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"Redis Cluster at 127.0.0.1:{port} unreachable; retrying")


async def test_a_plain_url_naming_a_cluster_node_says_to_use_the_cluster_url(
    cluster: ClusterDeployment,
) -> None:
    # Some slot of another master: this node answers MOVED (or CROSSSLOT).
    port = cluster.master_ports()[0]
    layer = get_layer(f"redis://127.0.0.1:{port}/0", prefix=unique_prefix())
    try:
        with pytest.raises(LayerError, match=r"is a Redis Cluster node .*redis\+cluster://"):
            for n in range(50):  # some of these names live on another master
                await layer.send(f"name{n}", {"n": n})
    finally:
        await layer.aclose()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://a:7000,redis+sentinel://s:26379/mymaster", "combines a cluster URL"),
        ("redis+cluster://a:7000,redis+cluster://b:7001", "combines a cluster URL"),
        ("redis://a:6379/0,redis+cluster://b:7000", "combines a cluster URL"),
        ("redis+cluster://a:7000/2", "a Redis Cluster has only database 0"),
        ("redis+cluster://a:7000?ssl_ca_certs=ca.pem", "needs a rediss\\+cluster:// URL"),
    ],
)
def test_bad_cluster_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        get_layer(url)
