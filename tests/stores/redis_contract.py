"""The store contract on a Redis URL, shared by the plain, Sentinel and TLS tests:
each store under a key prefix of its own, whose keys are deleted before and after."""

from __future__ import annotations

import secrets

import pytest

from chanlite.layers.redis.core import Shards
from chanlite.stores import SessionStore, get_session_store
from chanlite.stores.redis import RedisSessionStore

from .contract import SharedStoreContract


def unique_prefix() -> str:
    return "st" + secrets.token_hex(6)


def with_prefix(url: str, prefix: str) -> str:
    """``url`` with a ``prefix`` query option added to the ones it has."""
    return f"{url}{'&' if '?' in url else '?'}prefix={prefix}"


async def purge(shards: Shards, prefix: str) -> None:
    """Delete every key under ``prefix`` (SCAN + UNLINK, a key at a time: on a cluster
    one UNLINK cannot name keys of several slots)."""
    for node in await shards.nodes():
        async for keys in node.scan(f"{prefix}:*"):
            await node.call_many([("UNLINK", key) for key in keys], retry=True)


class RedisStoreContract(SharedStoreContract):
    """The shared store contract on the Redis URL a subclass's fixture sets as
    ``self.url``."""

    url: str

    @pytest.fixture(autouse=True)
    def _shared_prefix(self) -> None:
        self.shared_prefix = unique_prefix()

    async def make_store(self) -> SessionStore:
        store = get_session_store(with_prefix(self.url, unique_prefix()))
        assert isinstance(store, RedisSessionStore)
        await purge(store.shards, store.prefix)
        return store

    async def cleanup_store(self, store: SessionStore) -> None:
        assert isinstance(store, RedisSessionStore)
        await purge(store.shards, store.prefix)
        await store.aclose()

    def store_url(self) -> str:
        return with_prefix(self.url, self.shared_prefix)
