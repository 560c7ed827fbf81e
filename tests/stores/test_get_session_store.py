"""``get_session_store``: settings to stores, one store per layer, and clear errors."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from chanlite import get_layer
from chanlite.exceptions import ConfigurationError
from chanlite.layers import BaseChannelLayer
from chanlite.layers.memory import InMemoryChannelLayer
from chanlite.layers.redis import RedisChannelLayer
from chanlite.layers.sqlite import SQLiteChannelLayer
from chanlite.stores import get_session_store
from chanlite.stores.memory import MemorySessionStore
from chanlite.stores.redis import RedisSessionStore
from chanlite.stores.sqlite import SQLiteSessionStore

from .contract import ROOT

ACCEPTED = "memory://, redis://host:port/db"


@pytest.fixture
async def closing() -> AsyncIterator[list[Any]]:
    """Stores and layers to close after the test."""
    opened: list[Any] = []
    yield opened
    for thing in opened:
        await thing.aclose()


# -- instances and None --------------------------------------------------------------------


def test_a_store_instance_is_returned_as_it_is():
    store = MemorySessionStore()
    assert get_session_store(store) is store
    assert get_session_store(store, InMemoryChannelLayer()) is store


def test_none_without_a_layer_is_a_new_memory_store():
    first, second = get_session_store(), get_session_store(None)
    assert isinstance(first, MemorySessionStore)
    assert isinstance(second, MemorySessionStore)
    assert first is not second


def test_none_with_a_memory_layer_is_one_memory_store_per_layer():
    layer, other = InMemoryChannelLayer(), InMemoryChannelLayer()
    store = get_session_store(None, layer)
    assert isinstance(store, MemorySessionStore)
    assert get_session_store(None, layer) is store  # every worker of the layer shares it
    assert get_session_store(None, other) is not store


@pytest.mark.anyio
async def test_none_with_a_redis_layer_is_a_store_on_its_connections(closing):
    layer = RedisChannelLayer("redis://127.0.0.1:6379/13", prefix="cached")
    closing.append(layer)
    store = get_session_store(None, layer)
    assert isinstance(store, RedisSessionStore)
    assert (store.shards, store.prefix) == (layer.shards, "cached")
    assert get_session_store(None, layer) is store


@pytest.mark.anyio
async def test_none_with_a_sqlite_layer_is_a_store_in_its_file(closing, tmp_path):
    layer = get_layer(f"sqlite:///{tmp_path / 'layer.db'}", prefix="lite")
    assert isinstance(layer, SQLiteChannelLayer)
    store = get_session_store(None, layer)
    closing.extend([store, layer])
    assert isinstance(store, SQLiteSessionStore)
    assert (store.path, store.prefix) == (layer.path, "lite")
    assert get_session_store(None, layer) is store


def test_the_cache_does_not_keep_a_layer_alive():
    layer = InMemoryChannelLayer()
    get_session_store(None, layer)
    gone = weakref.ref(layer)
    del layer
    gc.collect()
    assert gone() is None


class CustomLayer(BaseChannelLayer):
    """A layer of a backend chanlite has no store for (it is never used to send)."""

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        raise NotImplementedError

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> Any:
        raise NotImplementedError

    async def group_add(self, group: str, channel: str) -> None:
        raise NotImplementedError

    async def group_discard(self, group: str, channel: str) -> None:
        raise NotImplementedError

    async def group_channels(self, group: str) -> set[str]:
        raise NotImplementedError

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        raise NotImplementedError

    async def flush(self) -> None:
        raise NotImplementedError


def test_a_layer_that_keeps_no_session_store_needs_an_explicit_setting():
    with pytest.raises(ConfigurationError, match="keeps no session store") as info:
        get_session_store(None, CustomLayer())
    assert ACCEPTED in str(info.value)


def test_a_layer_must_be_a_layer():
    with pytest.raises(ConfigurationError, match="layer must be a BaseChannelLayer or None"):
        get_session_store(None, "memory://")  # type: ignore[arg-type]


# -- URLs ------------------------------------------------------------------------------------


def test_memory_url_builds_a_new_memory_store():
    first, second = get_session_store("memory://"), get_session_store("MEMORY://")
    assert isinstance(first, MemorySessionStore)
    assert isinstance(second, MemorySessionStore)
    assert first is not second


@pytest.mark.parametrize(
    ("url", "hosts", "db"),
    [
        ("redis://cache.example:7000/3", (("cache.example", 7000),), 3),
        ("rediss://secure.example/1", (("secure.example", 6379),), 1),
        ("redis+sentinel://s1,s2:26380/mymaster/2", (("s1", 26379), ("s2", 26380)), 2),
    ],
)
def test_redis_urls_build_a_redis_store(url, hosts, db):
    store = get_session_store(url)
    assert isinstance(store, RedisSessionStore)
    (address,) = store.shards.addresses
    assert (address.hosts, address.db, store.prefix) == (hosts, db, "chanlite")


def test_a_redis_url_with_several_hosts_builds_a_sharded_store():
    store = get_session_store("redis://a:6379/0,redis://b:6379/0?prefix=app")
    assert isinstance(store, RedisSessionStore)
    assert [a.hosts for a in store.shards.addresses] == [(("a", 6379),), (("b", 6379),)]
    assert store.prefix == "app"


@pytest.mark.anyio
async def test_a_sqlite_url_builds_a_sqlite_store(closing, tmp_path):
    store = get_session_store(f"sqlite:///{tmp_path / 's.db'}?prefix=web")
    closing.append(store)
    assert isinstance(store, SQLiteSessionStore)
    assert (store.path, store.prefix) == (str(tmp_path / "s.db"), "web")


def test_backends_are_imported_only_when_used():
    program = (
        "import sys; from chanlite.stores import get_session_store; "
        "get_session_store('memory://'); "
        "print(sorted(m for m in sys.modules if m.startswith('chanlite.stores.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "['chanlite.stores.base', 'chanlite.stores.memory']"


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (42, "session store setting 42 (int)"),
        (b"memory://", "session store setting b'memory://' (bytes)"),
        (MemorySessionStore, "session store setting <class"),
        ("localhost:6379", "session store 'localhost:6379' has no URL scheme"),
    ],
)
def test_a_bad_setting_names_itself_and_the_accepted_forms(setting, message):
    with pytest.raises(ConfigurationError) as info:
        get_session_store(setting)
    assert message in str(info.value)
    assert ACCEPTED in str(info.value)
    assert "sqlite:///path.db" in str(info.value)


def test_an_unknown_scheme_lists_the_known_ones():
    with pytest.raises(ConfigurationError, match="unknown session store scheme 'mysql'") as info:
        get_session_store("mysql://db/sessions")
    for scheme in ("memory://", "redis://", "rediss://", "redis+sentinel://", "sqlite://"):
        assert scheme in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://somewhere", "memory:// takes no host, path or options"),
        ("memory://?prefix=x", "memory:// takes no host, path or options"),
        ("redis://localhost/0?expiry=5", "unknown session store option 'expiry'"),
        ("redis://localhost/0?prefix=has%20space", "prefix 'has space'"),
        ("redis://localhost:99999/0", "port must be a number"),
        ("sqlite://host/x.db", "names a host"),
        ("sqlite:////no/such/dir/x.db", "does not exist"),
    ],
)
def test_a_bad_url_is_a_configuration_error(url, message):
    with pytest.raises(ConfigurationError, match=message.replace("?", r"\?")):
        get_session_store(url)
