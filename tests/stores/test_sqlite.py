"""The ``sqlite:///path.db`` session store: the store contract, plus what only SQLite
promises.

Beyond the contract: a store shares its file with the SQLite layer (and with other
processes), keeps stores apart by file and by prefix, accepts URLs and plain paths,
and deletes its expired rows.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest

from chanlite import LayerError, get_layer
from chanlite.exceptions import ConfigurationError
from chanlite.layers.sqlite import SQLiteChannelLayer
from chanlite.stores import SessionStore, get_session_store
from chanlite.stores.sqlite import CURSORS, PARKED, SESSIONS, SQLiteSessionStore

from ..conftest import assert_each_fails_on_a_missing_table
from .contract import TTL, SharedStoreContract


def sqlite_url(path: Path) -> str:
    """``sqlite:////absolute/path.db`` for ``path``."""
    return f"sqlite:///{path.resolve()}"


class TestSQLiteStore(SharedStoreContract):
    @pytest.fixture(autouse=True)
    def _database_directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path
        self.files = itertools.count()

    async def make_store(self) -> SessionStore:
        # A file per store, so that two stores made by one test are independent.
        return SQLiteSessionStore(self.directory / f"store-{next(self.files)}.db")

    def store_url(self) -> str:
        return sqlite_url(self.directory / "shared.db")


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[Any]:
    """Make SQLite stores (on ``tmp_path/store.db`` unless told), closed after."""
    made: list[SQLiteSessionStore] = []

    def factory(where: Any = None, **options: Any) -> SQLiteSessionStore:
        store = SQLiteSessionStore(where or tmp_path / "store.db", **options)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.aclose()


def count_rows(path: str, table: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        rows: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return rows


async def outlive(ttl: float) -> None:
    """Return once rows written before the call with ``ttl`` are past their expiry on
    the wall clock, which is what the store judges expiry by."""
    deadline = time.time() + ttl
    await anyio.sleep(ttl + 0.01)
    assert time.time() > deadline


# -- files, URLs and prefixes ------------------------------------------------------------


@pytest.mark.anyio
async def test_a_url_a_path_string_and_a_path_object_name_the_same_file(open_store, tmp_path):
    target = tmp_path / "named.db"
    by_url = open_store(sqlite_url(target))
    by_text = open_store(str(target))
    by_path = open_store(target)
    assert by_url.path == by_text.path == by_path.path == str(target)
    await by_url.save("k", {"n": 1}, TTL)
    assert await by_text.load("k", TTL) == {"n": 1}
    assert await by_path.load("k", TTL) == {"n": 1}


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("sqlite://host/x.db", "names a host"),
        ("sqlite:///", "needs a database file"),
        (":memory:", "needs a database file"),
        ("", "needs a database file"),
        ("/no/such/directory/x.db", "does not exist"),
        ("sqlite:////no/such/directory/x.db", "does not exist"),
    ],
)
def test_a_bad_location_is_a_configuration_error(where, message):
    with pytest.raises(ConfigurationError, match=message):
        SQLiteSessionStore(where)


def test_a_bad_prefix_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="prefix 'has space'"):
        SQLiteSessionStore(tmp_path / "x.db", prefix="has space")


@pytest.mark.anyio
async def test_stores_with_two_prefixes_on_one_file_are_independent(open_store):
    first, second = open_store(prefix="one"), open_store(prefix="two")
    await first.save("same", {"by": "first"}, TTL)
    await second.save("same", {"by": "second"}, TTL)
    assert await first.load("same", TTL) == {"by": "first"}
    assert await second.load("same", TTL) == {"by": "second"}
    assert await first.order_start("same", 0, False, b"", TTL)
    assert await first.order_finish("same", 0, False, TTL) == []
    assert not await second.order_start("same", 1, False, b"", TTL)
    await first.delete("same")
    assert await second.load("same", TTL) == {"by": "second"}


# -- sharing the layer's file ------------------------------------------------------------


@pytest.mark.anyio
async def test_for_layer_uses_the_layers_file_and_prefix(tmp_path):
    layer = get_layer(sqlite_url(tmp_path / "layer.db"), prefix="app")
    assert isinstance(layer, SQLiteChannelLayer)
    store = SQLiteSessionStore.for_layer(layer)
    try:
        assert (store.path, store.prefix) == (layer.path, "app")
        await store.save("http:x", {"n": 1}, TTL)
        await layer.send("beside", {"n": 2})  # the layer's tables live on beside ours
        assert await layer.receive(["beside"], timeout=2) == ("beside", {"n": 2})
        other = SQLiteSessionStore(layer.path, prefix="app")
        assert await other.load("http:x", TTL) == {"n": 1}
        await other.aclose()
        assert count_rows(layer.path, SESSIONS) == 1
    finally:
        await store.aclose()
        await layer.aclose()


@pytest.mark.anyio
async def test_closing_the_layer_closes_the_store_made_for_it(tmp_path, sqlite_connections):
    layer = get_layer(sqlite_url(tmp_path / "layer.db"))
    store = get_session_store(None, layer)
    await store.save("http:x", {"n": 1}, TTL)
    await layer.aclose()
    assert len(sqlite_connections) == 2  # the layer's and the store's
    assert all(conn.was_closed for conn in sqlite_connections)
    with pytest.raises(LayerError, match="closed"):
        await store.load("http:x", TTL)
    await store.aclose()  # closing it again is harmless


@pytest.mark.anyio
async def test_a_store_made_for_a_closed_layer_is_closed(tmp_path, sqlite_connections):
    layer = get_layer(sqlite_url(tmp_path / "layer.db"))
    assert isinstance(layer, SQLiteChannelLayer)
    await layer.aclose()
    store = SQLiteSessionStore.for_layer(layer)
    assert len(sqlite_connections) == 2  # the layer's and the store's
    assert all(conn.was_closed for conn in sqlite_connections)
    with pytest.raises(LayerError, match="closed"):
        await store.load("http:x", TTL)


# -- expired rows ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_expired_rows_are_deleted_by_a_sweep(open_store):
    store = open_store()
    store.sweep_interval = 0  # sweep on every write, for the test
    for n in range(20):
        await store.save(f"dead.{n}", {"n": n}, 0.05)
        assert not await store.order_start(f"dead.{n}", 1, False, b"parked", 0.05)
    await outlive(0.05)
    await store.save("live", {"n": 1}, TTL)
    assert count_rows(store.path, SESSIONS) == 1
    assert count_rows(store.path, CURSORS) == 0
    assert count_rows(store.path, PARKED) == 0


@pytest.mark.anyio
async def test_sweeps_wait_for_their_interval(open_store):
    store = open_store()
    store.sweep_interval = 3600
    await store.save("first", {"n": 1}, TTL)  # the first write sweeps, and sets the clock
    await store.save("dead", {"n": 2}, 0.05)
    await outlive(0.05)
    await store.save("live", {"n": 3}, TTL)
    assert count_rows(store.path, SESSIONS) == 3  # not swept yet, but...
    assert await store.load("dead", TTL) is None  # ... never served


@pytest.mark.anyio
async def test_an_expired_cursor_is_replaced_with_its_parked_rows_deleted(open_store):
    store = open_store()
    store.sweep_interval = 3600
    await store.save("first", {"n": 1}, TTL)
    assert not await store.order_start("old", 2, False, b"stale", 0.05)
    await outlive(0.05)
    assert await store.order_start("old", 0, False, b"", TTL)
    assert count_rows(store.path, PARKED) == 0
    assert await store.order_finish("old", 0, False, TTL) == []


@pytest.mark.anyio
async def test_an_sqlite_error_raises_layer_error_caused_by_it(open_store):
    store = open_store()
    await store.save("k", {"n": 1}, TTL)
    with closing(sqlite3.connect(store.path)) as conn:  # behind the store's back
        for table in (SESSIONS, CURSORS, PARKED):
            conn.execute(f"DROP TABLE {table}")
    operations: dict[str, Callable[[], Awaitable[Any]]] = {
        "load": lambda: store.load("k", TTL),
        "save": lambda: store.save("k", {"n": 2}, TTL),
        "delete": lambda: store.delete("k"),
        "order_start": lambda: store.order_start("socket", 1, False, b"parked", TTL),
        "order_finish": lambda: store.order_finish("socket", 0, False, TTL),
    }
    await assert_each_fails_on_a_missing_table(operations, store.path)


@pytest.mark.anyio
async def test_a_closed_store_refuses_work(open_store):
    store = open_store()
    await store.aclose()
    with pytest.raises(LayerError, match="closed"):
        await store.load("k", TTL)
    assert "store.db" in repr(store)
