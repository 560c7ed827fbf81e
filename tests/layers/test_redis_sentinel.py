"""``redis+sentinel://`` against a real Sentinel deployment: a master, its replica and
three sentinels of our own (see ``sentinel_helpers``).

The layer and store contracts run through the sentinels, and a failover under traffic
(the master is SIGKILLed, the sentinels promote the replica) must leave the layer
working: traffic flows again, nothing arrives twice, and what arrives keeps its order.
Without a redis-server binary these tests skip, or fail with CHANLITE_REQUIRE_REDIS=1.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from chanlite.layers import BaseChannelLayer
from chanlite.layers.redis import RedisChannelLayer
from chanlite.stores.redis import RedisSessionStore

from ..conftest import require_redis_server
from ..stores.redis_contract import RedisStoreContract, purge
from .closing import ClosedLayerContract
from .contract import LayerContract, until
from .sentinel_helpers import (
    SERVICE,
    SentinelDeployment,
    client,
    sentinel_deployment,
)
from .traffic import Traffic

#: The database the contract suites use on the deployment.
DB = 3
#: How soon traffic must flow again once the sentinels have promoted the replica
#: (DESIGN §10 promises 5 s for a cluster).
RECOVERY = 5.0


def unique_prefix() -> str:
    return "s" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelDeployment]:
    """One deployment shared by the contract suites, which never fail it over."""
    require_redis_server()
    with sentinel_deployment(tmp_path_factory.mktemp("sentinel")) as started:
        yield started


class TestSentinelLayer(LayerContract, ClosedLayerContract):
    @pytest.fixture(autouse=True)
    def _url(self, deployment: SentinelDeployment) -> None:
        self.url = deployment.url(DB)

    async def make_layer(self, **options: Any) -> BaseChannelLayer:
        options.setdefault("prefix", unique_prefix())
        layer = RedisChannelLayer(self.url, **options)
        await layer.flush()
        return layer


class TestSentinelStore(RedisStoreContract):
    @pytest.fixture(autouse=True)
    def _url(self, deployment: SentinelDeployment) -> None:
        self.url = deployment.url(DB)


# -- failover -------------------------------------------------------------------------


async def store_round_trip(url: str) -> None:
    store = RedisSessionStore(url, prefix=unique_prefix())
    try:
        await store.save("after-failover", {"n": 1}, 60)
        assert await store.load("after-failover", 60) == {"n": 1}
    finally:
        await purge(store.shards, store.prefix)
        await store.aclose()


def kill_master(deployment: SentinelDeployment) -> None:
    """The realistic failover: the master dies (SIGKILL) and the sentinels notice."""
    deployment.master.kill()


def force_failover(deployment: SentinelDeployment) -> None:
    """The deterministic one: a sentinel demotes the live master to a replica."""
    with client(deployment.sentinels[0].port) as sentinel:
        sentinel.sentinel_failover(SERVICE)


@pytest.mark.anyio
# A forced failover takes over 10 s: the sentinels demote the old master only on
# their next look at it.
@pytest.mark.parametrize(
    "fail_over", [kill_master, pytest.param(force_failover, marks=pytest.mark.slow)]
)
async def test_layer_survives_a_failover_under_traffic(
    tmp_path: Path, fail_over: Callable[[SentinelDeployment], None]
) -> None:
    require_redis_server()
    with sentinel_deployment(tmp_path) as deployment:
        layer = RedisChannelLayer(deployment.url(), prefix=unique_prefix(), capacity=100_000)
        traffic = Traffic(layer, "traffic")
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(traffic.send)
                tasks.start_soon(traffic.receive)
                await until(lambda: len(traffic.received) >= 50, "traffic before the failover")

                fail_over(deployment)
                await anyio.to_thread.run_sync(deployment.wait_for_failover)
                promoted = traffic.next - 1  # every later message is sent after it
                await until(
                    lambda: traffic.has_received_after(promoted),
                    "a message sent after the failover",
                    within=RECOVERY,
                    pause=0.01,
                )
                traffic.sending = False
                await until(
                    lambda: traffic.received[-1] >= traffic.sent[-1],
                    "the last message sent",
                    pause=0.01,
                )
                tasks.cancel_scope.cancel()
            await store_round_trip(deployment.url())  # a store finds the new master too
        finally:
            await layer.aclose()

    received = traffic.received
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert received == sorted(received), "messages arrived out of order"
    assert set(received) <= {*traffic.sent, *traffic.failed}
    after = [number for number in traffic.sent if number > promoted]
    assert after, "nothing was sent after the failover"
    assert set(after) <= set(received), "a message sent after the failover was lost"
