"""``rediss://`` against real TLS redis-servers of our own (certificates made by
trustme), with the TLS options, and AUTH with an ACL user, for real.

Each server listens only for TLS; one also requires client certificates. Without a
redis-server binary the tests skip, or fail with CHANLITE_REQUIRE_REDIS=1.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chanlite import LayerError, get_layer
from chanlite.exceptions import ConfigurationError
from chanlite.layers import REDIS_OPTIONS, BaseChannelLayer
from chanlite.layers.redis import RedisChannelLayer
from chanlite.layers.redis.tls import TLSOptions
from chanlite.stores import get_session_store
from chanlite.stores.redis import RedisSessionStore

from ..conftest import require_redis_server
from ..stores.redis_contract import RedisStoreContract
from .contract import PATIENCE, LayerContract
from .redis_helpers import RedisServer
from .tls_helpers import ACL_PASSWORD, ACL_USER, Certificates, TLSRedisServer, make_certificates

pytestmark = pytest.mark.redis


def unique_prefix() -> str:
    return "tls" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _serving(server: TLSRedisServer) -> Iterator[TLSRedisServer]:
    require_redis_server()
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def tls_server(certificates: Certificates) -> Iterator[TLSRedisServer]:
    """A TLS-only server that takes any client."""
    yield from _serving(TLSRedisServer(certificates))


@pytest.fixture(scope="module")
def client_cert_server(certificates: Certificates) -> Iterator[TLSRedisServer]:
    """A TLS-only server that requires a client certificate from the CA."""
    yield from _serving(TLSRedisServer(certificates, client_certs=True))


def rediss(server: TLSRedisServer, userinfo: str = "") -> str:
    return f"rediss://{userinfo}127.0.0.1:{server.port}/0"


async def round_trip(layer: BaseChannelLayer) -> None:
    try:
        await layer.send("tls.check", {"n": 1})
        assert await layer.receive(["tls.check"], timeout=PATIENCE) == ("tls.check", {"n": 1})
    finally:
        await layer.aclose()


async def refused(layer: BaseChannelLayer) -> LayerError:
    """The one LayerError of a layer whose connections the server (or the client's TLS
    checks) refuse."""
    try:
        with pytest.raises(LayerError) as caught:
            await layer.send("tls.check", {"n": 1})
    finally:
        await layer.aclose()
    assert "\n" not in str(caught.value)
    return caught.value


# -- the contracts over TLS ---------------------------------------------------------


class TestRedisLayerOverTLS(LayerContract):
    @pytest.fixture(autouse=True)
    def _server(self, tls_server: TLSRedisServer) -> None:
        self.url = tls_server.url  # the CA file as a URL query parameter

    async def make_layer(self, **options: Any) -> BaseChannelLayer:
        options.setdefault("prefix", unique_prefix())
        layer = get_layer(self.url, **options)
        await layer.flush()
        return layer


class TestRedisStoreOverTLS(RedisStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, tls_server: TLSRedisServer) -> None:
        self.url = tls_server.url


# -- verification modes and client certificates ----------------------------------------


@pytest.mark.anyio
async def test_required_verification_refuses_a_server_of_an_untrusted_ca(tls_server):
    # Without ssl_ca_certs only the system's CAs are trusted, and trustme's is not one.
    error = await refused(get_layer(rediss(tls_server)))
    assert f"127.0.0.1:{tls_server.port}" in str(error)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)


@pytest.mark.anyio
async def test_no_verification_accepts_a_server_of_an_untrusted_ca(tls_server):
    await round_trip(get_layer(rediss(tls_server) + "?ssl_cert_reqs=none"))
    await round_trip(get_layer(rediss(tls_server), ssl_cert_reqs="NONE"))


@pytest.mark.anyio
async def test_optional_verification_checks_the_certificate_not_the_host_name(
    tls_server, certificates
):
    # The certificate names 127.0.0.1, not localhost.
    url = f"rediss://localhost:{tls_server.port}/0"
    await round_trip(get_layer(url, ssl_ca_certs=str(certificates.ca), ssl_cert_reqs="optional"))
    error = await refused(get_layer(url, ssl_ca_certs=str(certificates.ca)))
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)


@pytest.mark.anyio
async def test_a_server_requiring_client_certificates_takes_ours(client_cert_server, certificates):
    files = certificates
    url = f"{client_cert_server.url}&ssl_certfile={files.client_cert}"
    await round_trip(get_layer(url, ssl_keyfile=str(files.client_key)))


@pytest.mark.anyio
async def test_a_server_requiring_client_certificates_refuses_a_client_without(
    client_cert_server,
):
    error = await refused(get_layer(client_cert_server.url))
    assert f"Redis at 127.0.0.1:{client_cert_server.port}/0" in str(error)


# -- AUTH and ACL users -----------------------------------------------------------------


@pytest.mark.anyio
async def test_an_acl_user_connects_over_tls(tls_server, certificates):
    layer = get_layer(
        rediss(tls_server, f"{ACL_USER}:{ACL_PASSWORD}@"), ssl_ca_certs=str(certificates.ca)
    )
    assert isinstance(layer, RedisChannelLayer)
    assert await layer.shards.shards[0].call("ACL", "WHOAMI") == ACL_USER.encode()
    await round_trip(layer)


@pytest.mark.anyio
async def test_a_wrong_password_is_one_error_naming_the_server_not_the_password(
    tls_server, certificates
):
    layer = get_layer(
        rediss(tls_server, f"{ACL_USER}:not-the-password@"), ssl_ca_certs=str(certificates.ca)
    )
    error = await refused(layer)
    assert f"Redis at 127.0.0.1:{tls_server.port}/0" in str(error)
    assert "WRONGPASS" in str(error)
    assert "not-the-password" not in str(error)


@pytest.mark.anyio
async def test_an_acl_user_connects_without_tls():
    require_redis_server()
    server = RedisServer(None, "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all")
    server.start()
    try:
        url = f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{server.port}/0"
        layer = get_layer(url)
        assert isinstance(layer, RedisChannelLayer)
        assert await layer.shards.shards[0].call("ACL", "WHOAMI") == ACL_USER.encode()
        await round_trip(layer)
        wrong = get_layer(f"redis://{ACL_USER}:wrong@127.0.0.1:{server.port}/0")
        assert "WRONGPASS" in str(await refused(wrong))
    finally:
        server.kill()


# -- option errors --------------------------------------------------------------------


def test_the_layer_and_the_store_know_the_same_tls_options():
    assert set(REDIS_OPTIONS) == set(TLSOptions().__dataclass_fields__)


BAD_OPTIONS = [
    ({"ssl_cert_reqs": "sometimes"}, "'ssl_cert_reqs' must be one of required, optional, none"),
    ({"ssl_ca_certs": "/no/such/ca.pem"}, "'ssl_ca_certs': no such file: '/no/such/ca.pem'"),
    ({"ssl_certfile": "/no/cert.pem"}, "'ssl_certfile': no such file: '/no/cert.pem'"),
    ({"ssl_keyfile": "/no/key.pem"}, "'ssl_keyfile' needs 'ssl_certfile'"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_a_bad_tls_option_is_one_configuration_error_naming_it(options, message):
    query = "&".join(f"{name}={value}" for name, value in options.items())
    forms = [
        lambda: get_layer("rediss://127.0.0.1:6380/0", **options),
        lambda: get_layer(f"rediss://127.0.0.1:6380/0?{query}"),
        lambda: get_session_store(f"rediss://127.0.0.1:6380/0?{query}"),
        lambda: RedisSessionStore("rediss://127.0.0.1:6380/0", **options),
    ]
    for form in forms:
        with pytest.raises(ConfigurationError) as caught:
            form()
        assert message in str(caught.value)
        assert "\n" not in str(caught.value)


def test_a_file_that_holds_no_certificate_is_named(tmp_path: Path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match=f"'ssl_ca_certs': cannot load '{junk}'"):
        get_layer("rediss://127.0.0.1:6380/0", ssl_ca_certs=str(junk))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://127.0.0.1:6380/0", "this URL is redis://"),
        (
            "redis+sentinel://127.0.0.1:26379/mymaster/0",
            "this URL is redis+sentinel:// (rediss+sentinel:// speaks TLS)",
        ),
    ],
)
def test_tls_options_need_a_rediss_url(url, reason):
    for form in (
        lambda: get_layer(url, ssl_cert_reqs="none"),
        lambda: get_layer(f"{url}?ssl_cert_reqs=none"),
    ):
        with pytest.raises(
            ConfigurationError, match=re.escape(f"'ssl_cert_reqs' needs a rediss:// URL; {reason}")
        ):
            form()
    with pytest.raises(ConfigurationError, match="needs a rediss:// URL"):
        get_session_store(f"{url}?ssl_cert_reqs=none")


def test_other_layers_do_not_know_tls_options():
    with pytest.raises(ConfigurationError, match="unknown layer option 'ssl_ca_certs'"):
        get_layer("memory://", ssl_ca_certs="ca.pem")
    with pytest.raises(ConfigurationError, match="unknown layer option 'ssl_ca_certs'"):
        get_layer("sqlite:///x.db?ssl_ca_certs=ca.pem")
    with pytest.raises(ConfigurationError, match="unknown session store option 'ssl_ca_certs'"):
        get_session_store("sqlite:///x.db?ssl_ca_certs=ca.pem")
