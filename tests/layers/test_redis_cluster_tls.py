"""``rediss+cluster://`` against a real TLS-only Redis Cluster of our own: three
masters and no replicas (see ``cluster_helpers``), its certificates made by trustme
(see ``tls_helpers``).

Every node listens only for TLS and talks TLS to its peers, so both the slot map
(redis-py's client) and the data (chanlite's own connections to each master) go over
TLS, checked against the CA given in the URL's query or as a keyword option: messages
to a name on each master, a group spread over them all, and a session store. A CA
that did not sign the nodes' certificates is refused at the first operation, and a
missing CA file when the layer is made. Without a redis-server binary these tests
skip, or fail with CHANLITE_REQUIRE_REDIS=1.
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
from chanlite.layers.redis.cluster import TAGS
from chanlite.stores import SessionStore, get_session_store
from chanlite.stores.redis import RedisSessionStore

from ..conftest import require_redis_server
from ..stores.redis_contract import purge, with_prefix
from .cluster_helpers import ClusterDeployment, cluster_deployment, key_slot, serves, slot_map
from .contract import PATIENCE
from .tls_helpers import Certificates, make_certificates

pytestmark = pytest.mark.anyio

#: How soon an untrusted cluster must be refused (it answers at once, over loopback).
REFUSAL_PATIENCE = 5.0


def unique_prefix() -> str:
    return "ctls" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, certificates: Certificates
) -> Iterator[ClusterDeployment]:
    """One TLS-only cluster of three masters, shared by every test here."""
    require_redis_server()
    directory = tmp_path_factory.mktemp("cluster")
    with cluster_deployment(directory, replicas=0, tls=certificates) as started:
        yield started


def names_on_every_master(layer: RedisChannelLayer, cluster: ClusterDeployment) -> list[str]:
    """A channel name on each master of the cluster, found by the slots of their
    buckets' hash tags."""
    slots = slot_map(cluster.views(cluster.ports[0]))
    names: dict[int, str] = {}
    for n in range(1000):
        name = f"spread.{n}"
        owner = serves(slots, key_slot("{" + TAGS[layer.shards.index_for(name)] + "}"))
        assert owner is not None
        names.setdefault(owner, name)
        if len(names) == cluster.masters:
            return list(names.values())
    raise AssertionError(f"no names found on every master, only on {sorted(names)}")


async def check_traffic(
    cluster: ClusterDeployment, layer: BaseChannelLayer, store: SessionStore
) -> None:
    """Messages to a name on each master, a group of those names, and a session all
    make the round trip; then every master was spoken to over TLS. Closes both."""
    assert isinstance(layer, RedisChannelLayer)
    assert isinstance(store, RedisSessionStore)
    try:
        names = names_on_every_master(layer, cluster)
        for name in names:
            await layer.send(name, {"to": name})
        for name in names:
            assert await layer.receive([name], timeout=PATIENCE) == (name, {"to": name})
        for name in names:
            await layer.group_add("room", name)
        await layer.group_send("room", {"n": 1})
        for name in names:
            assert await layer.receive([name], timeout=PATIENCE) == (name, {"n": 1})
        await store.save("session", {"user": 7}, 60)
        assert await store.load("session", 60) == {"user": 7}
        masters = await layer.shards.nodes()
        assert sorted(master.address.hosts[0][1] for master in masters) == sorted(
            cluster.master_ports()
        )
        assert all(master.tls for master in masters)
    finally:
        await layer.flush()
        await layer.aclose()
        await purge(store.shards, store.prefix)
        await store.aclose()


async def test_the_ca_in_the_url_carries_messages_groups_and_sessions(
    cluster: ClusterDeployment, certificates: Certificates
) -> None:
    url = f"{cluster.url()}?ssl_ca_certs={certificates.ca}"
    assert url.startswith("rediss+cluster://127.0.0.1:")
    layer = get_layer(url, prefix=unique_prefix())
    store = get_session_store(with_prefix(url, unique_prefix()))
    await check_traffic(cluster, layer, store)


async def test_the_ca_as_a_keyword_carries_messages_groups_and_sessions(
    cluster: ClusterDeployment, certificates: Certificates
) -> None:
    ca = str(certificates.ca)
    layer = get_layer(cluster.url(), prefix=unique_prefix(), ssl_ca_certs=ca)
    store = RedisSessionStore(cluster.url(), prefix=unique_prefix(), ssl_ca_certs=ca)
    await check_traffic(cluster, layer, store)


async def refusals(cluster: ClusterDeployment, directory: Path) -> list[str]:
    """The messages of the one LayerError that a layer's first send and a store's
    first load each raise, within :data:`REFUSAL_PATIENCE`, when they trust only a
    CA that did not sign the nodes' certificates (made in ``directory``)."""
    stranger = make_certificates(directory)
    layer = get_layer(cluster.url(), ssl_ca_certs=str(stranger.ca))
    store = RedisSessionStore(cluster.url(), ssl_ca_certs=str(stranger.ca))
    try:
        with anyio.fail_after(REFUSAL_PATIENCE), pytest.raises(LayerError) as sending:
            await layer.send("anything", {"n": 1})
        with anyio.fail_after(REFUSAL_PATIENCE), pytest.raises(LayerError) as loading:
            await store.load("session", 60)
    finally:
        await layer.aclose()
        await store.aclose()
    return [str(sending.value), str(loading.value)]


async def test_a_ca_that_did_not_sign_the_nodes_is_refused_at_once(
    cluster: ClusterDeployment, tmp_path: Path
) -> None:
    seeds = ",".join(f"127.0.0.1:{port}" for port in cluster.master_ports()[:2])
    for message in await refusals(cluster, tmp_path):
        assert message.startswith(f"Redis Cluster at {seeds}: "), message
        assert "\n" not in message


async def test_the_refusal_of_an_untrusted_cluster_names_the_certificate_check(
    cluster: ClusterDeployment, tmp_path: Path
) -> None:
    # Also on redis-py before 5.1, whose connection error garbles the SSL error's
    # text (redis/redis-py#3209): chanlite reads the reason from the error's chain.
    for message in await refusals(cluster, tmp_path):
        assert "the TLS handshake with the seed nodes failed" in message, message
        assert "CERTIFICATE_VERIFY_FAILED" in message, message


def test_a_missing_ca_file_is_one_configuration_error_naming_it(
    cluster: ClusterDeployment, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-ca.pem"
    url = cluster.url()
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
