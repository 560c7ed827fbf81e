"""``rediss+sentinel://`` against a real TLS-only Sentinel deployment of our own: a
master, its replica and three sentinels (see ``sentinel_helpers``), their certificates
made by trustme (see ``tls_helpers``).

Every process listens only for TLS, so both the question to the sentinels (redis-py's
Sentinel client finds the master) and the data (chanlite's own connection to the
master) go over TLS, checked against the CA given in the URL's query or as a keyword
option: a message, a group send and a session all make the round trip. A CA that did
not sign the certificates is refused at the first operation, and a missing CA file
when the layer is made; a failover under traffic, over TLS, leaves the layer working.
Without a redis-server binary these tests skip, or fail with CHANLITE_REQUIRE_REDIS=1.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from chanlite import LayerError, get_layer
from chanlite.exceptions import ConfigurationError
from chanlite.layers import BaseChannelLayer
from chanlite.layers.redis import RedisChannelLayer
from chanlite.layers.redis.shard import RedisShard
from chanlite.stores import SessionStore, get_session_store
from chanlite.stores.redis import RedisSessionStore

from ..conftest import require_redis_server
from ..stores.redis_contract import purge, with_prefix
from .contract import PATIENCE, until
from .sentinel_helpers import SERVICE, SentinelDeployment, sentinel_deployment
from .tls_helpers import Certificates, make_certificates
from .traffic import Traffic

pytestmark = pytest.mark.anyio

#: The database the tests use on the shared deployment.
DB = 2
#: How soon an untrusted deployment must be refused (it answers at once, over loopback).
REFUSAL_PATIENCE = 5.0
#: How soon traffic must flow again once the sentinels have promoted the replica.
RECOVERY = 5.0


def unique_prefix() -> str:
    return "stls" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[SentinelDeployment]:
    """One TLS-only deployment shared by the tests that never fail it over."""
    require_redis_server()
    directory = tmp_path_factory.mktemp("sentinel-tls")
    with sentinel_deployment(directory, tls=certificates) as started:
        yield started


async def check_traffic(
    deployment: SentinelDeployment, layer: BaseChannelLayer, store: SessionStore
) -> None:
    """A message, a group send and a session all make the round trip, and the
    layer's data connection is to the master (which listens only for TLS). Closes
    both."""
    assert isinstance(layer, RedisChannelLayer)
    assert isinstance(store, RedisSessionStore)
    try:
        await layer.send("tls.one", {"n": 1})
        assert await layer.receive(["tls.one"], timeout=PATIENCE) == ("tls.one", {"n": 1})
        names = ["tls.a", "tls.b"]
        for name in names:
            await layer.group_add("room", name)
        await layer.group_send("room", {"n": 2})
        for name in names:
            assert await layer.receive([name], timeout=PATIENCE) == (name, {"n": 2})
        await store.save("session", {"user": 7}, 60)
        assert await store.load("session", 60) == {"user": 7}
        [shard] = layer.shards.shards
        assert isinstance(shard, RedisShard)
        assert shard.tls
        tls_port = await shard.call("CONFIG", "GET", "tls-port")
        assert tls_port == [b"tls-port", str(deployment.master.port).encode()]
    finally:
        await layer.flush()
        await layer.aclose()
        await purge(store.shards, store.prefix)
        await store.aclose()


async def test_the_ca_in_the_url_carries_messages_groups_and_sessions(
    deployment: SentinelDeployment, certificates: Certificates
) -> None:
    url = f"{deployment.url(DB)}?ssl_ca_certs={certificates.ca}"
    assert url.startswith("rediss+sentinel://127.0.0.1:")
    layer = get_layer(url, prefix=unique_prefix())
    store = get_session_store(with_prefix(url, unique_prefix()))
    await check_traffic(deployment, layer, store)


async def test_the_ca_as_a_keyword_carries_messages_groups_and_sessions(
    deployment: SentinelDeployment, certificates: Certificates
) -> None:
    url, ca = deployment.url(DB), str(certificates.ca)
    layer = get_layer(url, prefix=unique_prefix(), ssl_ca_certs=ca)
    store = RedisSessionStore(url, prefix=unique_prefix(), ssl_ca_certs=ca)
    await check_traffic(deployment, layer, store)


async def refusals(deployment: SentinelDeployment, directory: Path) -> list[str]:
    """The messages of the one LayerError that a layer's first send and a store's
    first load each raise, within :data:`REFUSAL_PATIENCE`, when they trust only a
    CA that did not sign the certificates (made in ``directory``)."""
    stranger = make_certificates(directory)
    url = deployment.url(DB)
    layer = get_layer(url, ssl_ca_certs=str(stranger.ca))
    store = RedisSessionStore(url, ssl_ca_certs=str(stranger.ca))
    try:
        with anyio.fail_after(REFUSAL_PATIENCE), pytest.raises(LayerError) as sending:
            await layer.send("anything", {"n": 1})
        with anyio.fail_after(REFUSAL_PATIENCE), pytest.raises(LayerError) as loading:
            await store.load("session", 60)
    finally:
        await layer.aclose()
        await store.aclose()
    return [str(sending.value), str(loading.value)]


async def test_a_ca_that_did_not_sign_the_certificates_is_refused_at_once(
    deployment: SentinelDeployment, tmp_path: Path
) -> None:
    sentinels = ",".join(f"127.0.0.1:{s.port}" for s in deployment.sentinels[:2])
    for message in await refusals(deployment, tmp_path):
        assert message.startswith(f"Redis at {SERVICE} via sentinel {sentinels}/{DB}: "), message
        assert "\n" not in message


async def test_the_refusal_of_untrusted_sentinels_names_the_certificate_check(
    deployment: SentinelDeployment, tmp_path: Path
) -> None:
    # Also on redis-py before 5.1, whose connection error garbles the SSL error's
    # text (redis/redis-py#3209).
    for message in await refusals(deployment, tmp_path):
        assert "the TLS handshake with the sentinels failed" in message, message
        assert "CERTIFICATE_VERIFY_FAILED" in message, message


async def test_the_verification_mode_is_taken_in_any_case(
    deployment: SentinelDeployment, tmp_path: Path
) -> None:
    # NONE checks nothing: a CA that signed nothing here is no obstacle.
    stranger = make_certificates(tmp_path)
    url = f"{deployment.url(DB)}?ssl_cert_reqs=NONE&ssl_ca_certs={stranger.ca}"
    layer = get_layer(url, prefix=unique_prefix())
    store = get_session_store(with_prefix(url, unique_prefix()))
    await check_traffic(deployment, layer, store)


def test_a_missing_ca_file_is_one_configuration_error_naming_it(
    deployment: SentinelDeployment, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    url = deployment.url(DB)
    forms: list[Callable[[], object]] = [
        lambda: get_layer(f"{url}?ssl_ca_certs={missing}"),
        lambda: get_layer(url, ssl_ca_certs=str(missing)),
        lambda: get_session_store(f"{url}?ssl_ca_certs={missing}"),
        lambda: RedisSessionStore(url, ssl_ca_certs=str(missing)),
    ]
    for form in forms:
        with pytest.raises(ConfigurationError) as caught:
            form()
        message = str(caught.value)
        assert f"TLS option 'ssl_ca_certs': no such file: '{missing}'" in message
        assert "\n" not in message


# -- failover -------------------------------------------------------------------------


async def test_the_layer_survives_a_failover_under_traffic_over_tls(
    tmp_path: Path, certificates: Certificates
) -> None:
    require_redis_server()
    ca = str(certificates.ca)
    with sentinel_deployment(tmp_path, tls=certificates) as deployment:
        url = deployment.url()
        layer = get_layer(url, prefix=unique_prefix(), capacity=100_000, ssl_ca_certs=ca)
        traffic = Traffic(layer, "traffic")
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(traffic.send)
                tasks.start_soon(traffic.receive)
                await until(lambda: len(traffic.received) >= 50, "traffic before the failover")

                deployment.master.kill()  # the sentinels notice, and promote the replica
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
            # A store finds the new master too.
            store = RedisSessionStore(url, prefix=unique_prefix(), ssl_ca_certs=ca)
            try:
                await store.save("after-failover", {"n": 1}, 60)
                assert await store.load("after-failover", 60) == {"n": 1}
            finally:
                await purge(store.shards, store.prefix)
                await store.aclose()
        finally:
            await layer.aclose()

    received = traffic.received
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert received == sorted(received), "messages arrived out of order"
    assert set(received) <= {*traffic.sent, *traffic.failed}
    after = [number for number in traffic.sent if number > promoted]
    assert after, "nothing was sent after the failover"
    assert set(after) <= set(received), "a message sent after the failover was lost"
