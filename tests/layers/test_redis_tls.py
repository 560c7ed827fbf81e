"""TLS options of ``rediss://`` URLs (and of the Redis session store): each bad one
is a one-line ConfigurationError naming it, in the URL and keyword forms alike."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chanlite import get_layer
from chanlite.exceptions import ConfigurationError
from chanlite.layers import REDIS_OPTIONS
from chanlite.layers.redis.tls import TLSOptions
from chanlite.stores import get_session_store
from chanlite.stores.redis import RedisSessionStore

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
            "redis+sentinel:// does not support TLS yet",
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
