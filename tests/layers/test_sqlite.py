"""The ``sqlite:///path.db`` layer: the layer contract, plus what only SQLite promises.

Beyond the contract: several processes share one file (each message received exactly
once, a receiver in another process finds a message within the polling bound), a send
in the same process wakes a waiting receiver without polling, URLs name files, and
prefixes keep layers on one file apart.

The tests that need other processes run this module with ``python -m`` as a small
receiver program (see :func:`main` at the bottom).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.to_thread
import pytest

from chanlite import LayerError, get_layer
from chanlite.exceptions import ConfigurationError
from chanlite.layers import BaseChannelLayer
from chanlite.layers._sqlite_schema import HISTORY, HISTORY_META
from chanlite.layers.sqlite import GROUPS, MESSAGES, SQLiteChannelLayer

from ..conftest import assert_each_fails_on_a_missing_table
from .closing import ClosedLayerContract
from .contract import PATIENCE, WAKE_WITHIN, LayerContract

#: The repository root, from where ``python -m tests.layers.test_sqlite`` runs.
ROOT = Path(__file__).resolve().parents[2]
#: How long a helper process may take to start and get ready.
STARTUP = 20.0
#: The message that stops a draining helper process.
STOP = {"stop": True}


def sqlite_url(path: Path, query: str = "") -> str:
    """``sqlite:////absolute/path.db`` for ``path`` (absolute: a fourth slash)."""
    return f"sqlite:///{path.resolve()}" + (f"?{query}" if query else "")


class TestSQLiteLayer(LayerContract, ClosedLayerContract):
    @pytest.fixture(autouse=True)
    def _database_directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path
        self.files = itertools.count()

    async def make_layer(self, **options: Any) -> BaseChannelLayer:
        # A file per layer, so that two layers made by one test are independent.
        return get_layer(sqlite_url(self.directory / f"layer-{next(self.files)}.db"), **options)


@pytest.fixture
async def open_layer(tmp_path: Path) -> AsyncIterator[Any]:
    """Make SQLite layers (on ``tmp_path/layer.db`` unless given a URL), closed after."""
    made: list[BaseChannelLayer] = []

    def factory(url: str | None = None, **options: Any) -> SQLiteChannelLayer:
        layer = get_layer(url or sqlite_url(tmp_path / "layer.db"), **options)
        assert isinstance(layer, SQLiteChannelLayer)
        made.append(layer)
        return layer

    yield factory
    for layer in made:
        await layer.aclose()


# -- URLs ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_relative_path_is_taken_from_the_working_directory(open_layer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layer = open_layer("sqlite:///relative.db")
    assert layer.path == str(tmp_path / "relative.db")
    assert (tmp_path / "relative.db").is_file()


@pytest.mark.anyio
async def test_relative_path_may_name_a_subdirectory(open_layer, tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    layer = open_layer("sqlite:///data/layer.db")
    assert layer.path == str(tmp_path / "data" / "layer.db")


@pytest.mark.anyio
async def test_absolute_path_takes_four_slashes(open_layer, tmp_path):
    url = f"sqlite:///{tmp_path}/absolute.db"
    assert url.startswith("sqlite:////")
    layer = open_layer(url)
    assert layer.path == str(tmp_path / "absolute.db")
    assert (tmp_path / "absolute.db").is_file()


@pytest.mark.anyio
async def test_percent_encoded_path_is_decoded(open_layer, tmp_path):
    layer = open_layer(f"sqlite:///{tmp_path}/with%20space.db")
    assert layer.path == str(tmp_path / "with space.db")


@pytest.mark.anyio
async def test_url_query_options_are_read(open_layer, tmp_path):
    url = sqlite_url(tmp_path / "opts.db", "capacity=5&expiry=2.5&group_expiry=10&prefix=app")
    layer = open_layer(url)
    assert (layer.capacity, layer.expiry, layer.group_expiry, layer.prefix) == (5, 2.5, 10.0, "app")
    assert layer.path == str(tmp_path / "opts.db")


@pytest.mark.anyio
async def test_keyword_options_win_over_url_options(open_layer, tmp_path):
    layer = open_layer(sqlite_url(tmp_path / "opts.db", "capacity=5"), capacity=9)
    assert layer.capacity == 9


def test_path_in_a_missing_directory_is_refused_naming_it(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(ConfigurationError, match="no-such-dir") as caught:
        get_layer(f"sqlite:///{missing}/layer.db")
    assert isinstance(caught.value, ValueError)
    assert not missing.exists()


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///", "sqlite://somehost/layer.db", "sqlite:///:memory:"],
)
def test_url_without_a_database_file_is_refused(url):
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        get_layer(url)


def test_unknown_url_option_is_named(tmp_path):
    with pytest.raises(ValueError, match="'colour'"):
        get_layer(sqlite_url(tmp_path / "layer.db", "colour=blue"))


def test_a_file_that_is_not_a_database_is_refused(tmp_path, sqlite_connections):
    path = tmp_path / "not-a-db.db"
    path.write_bytes(b"this is not a SQLite database file" * 100)
    with pytest.raises(ConfigurationError, match=r"not-a-db\.db"):
        get_layer(sqlite_url(path))
    # The connection opened before the file was found wanting is closed by then.
    assert len(sqlite_connections) == 1
    assert sqlite_connections[0].was_closed


# -- prefixes --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_layers_with_different_prefixes_on_one_file_do_not_share_messages(open_layer):
    one, two = open_layer(prefix="one"), open_layer(prefix="two")
    await one.send("shared.name", {"from": "one"})
    await one.send("proc!a", {"from": "one"})
    assert await two.receive(["shared.name", "proc!"], timeout=0) == (None, None)
    assert await one.receive(["shared.name"], timeout=0) == ("shared.name", {"from": "one"})
    assert await one.receive(["proc!"], timeout=0) == ("proc!a", {"from": "one"})


@pytest.mark.anyio
async def test_layers_with_different_prefixes_do_not_share_groups(open_layer):
    one, two = open_layer(prefix="one"), open_layer(prefix="two")
    await one.group_add("room", "member")
    assert await two.group_channels("room") == set()
    await two.group_send("room", {"n": 1})
    assert await one.receive(["member"], timeout=0) == (None, None)


@pytest.mark.anyio
async def test_capacity_counts_per_prefix(open_layer):
    one, two = open_layer(prefix="one", capacity=1), open_layer(prefix="two", capacity=1)
    await one.send("cap", {"n": 1})
    await two.send("cap", {"n": 2})  # the other layer's message takes no room here


@pytest.mark.anyio
async def test_flush_of_one_prefix_leaves_the_other(open_layer):
    one, two = open_layer(prefix="one"), open_layer(prefix="two")
    for layer in (one, two):
        await layer.send("kept", {"n": layer.prefix})
        await layer.group_add("room", "kept")
    await one.flush()
    assert await one.stats() == {"channels": {}, "groups": {}}
    assert await two.stats() == {"channels": {"kept": 1}, "groups": {"room": 1}}
    assert await two.receive(["kept"], timeout=0) == ("kept", {"n": "two"})


@pytest.mark.anyio
async def test_layers_with_the_same_prefix_on_one_file_share_messages(open_layer):
    first, second = open_layer(), open_layer()
    await first.send("shared", {"n": 1})
    assert await second.receive(["shared"], timeout=0) == ("shared", {"n": 1})


@pytest.mark.anyio
async def test_receive_over_hundreds_of_channels_takes_the_oldest_message(open_layer):
    layer = open_layer()
    names = [f"many.{n}" for n in range(600)]
    await layer.send(names[400], {"n": 1})
    await layer.send(names[7], {"n": 2})
    assert await layer.receive(names, timeout=0) == (names[400], {"n": 1})
    assert await layer.receive(names, timeout=0) == (names[7], {"n": 2})
    assert await layer.receive(names, timeout=0) == (None, None)


# -- storage -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stats_report_channel_depths_and_group_sizes(open_layer):
    layer = open_layer()
    await layer.send("depth", {"n": 1})
    await layer.send("depth", {"n": 2})
    await layer.send("proc!a", {"n": 3})
    await layer.group_add("room", "proc!a")
    assert await layer.stats() == {"channels": {"depth": 2, "proc!": 1}, "groups": {"room": 1}}


@pytest.mark.anyio
async def test_database_is_in_wal_mode(open_layer, tmp_path):
    open_layer()
    with closing(sqlite3.connect(tmp_path / "layer.db")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.anyio
async def test_an_sqlite_error_raises_layer_error_caused_by_it(open_layer):
    layer = open_layer()
    await layer.send("before", {"n": 1})
    await layer.group_add("room", "before")
    with closing(sqlite3.connect(layer.path)) as conn:  # behind the layer's back
        conn.execute(f"DROP TABLE {MESSAGES}")
        conn.execute(f"DROP TABLE {GROUPS}")
    operations: dict[str, Callable[[], Awaitable[Any]]] = {
        "send": lambda: layer.send("after", {"n": 2}),
        "receive, not waiting": lambda: layer.receive(["after"], timeout=0),
        "receive, waiting": lambda: layer.receive(["after"], timeout=PATIENCE),
        "group_add": lambda: layer.group_add("room", "after"),
        "group_discard": lambda: layer.group_discard("room", "before"),
        "group_channels": lambda: layer.group_channels("room"),
        "group_send": lambda: layer.group_send("room", {"n": 3}),
        "flush": lambda: layer.flush(),
        "stats": lambda: layer.stats(),
    }
    await assert_each_fails_on_a_missing_table(operations, layer.path)


@pytest.mark.anyio
async def test_closed_layer_refuses_work(open_layer, sqlite_connections):
    layer = open_layer()
    await layer.aclose()
    assert len(sqlite_connections) == 1
    assert sqlite_connections[0].was_closed
    await layer.aclose()  # closing twice is harmless
    with pytest.raises(LayerError, match="closed"):
        await layer.send("late", {"n": 1})


def test_a_layer_dropped_without_aclose_closes_its_connection(tmp_path):
    layer = get_layer(sqlite_url(tmp_path / "dropped.db"))
    handle = layer._db._handle  # type: ignore[attr-defined]
    threads = list(layer._db._executor._threads)  # type: ignore[attr-defined]
    assert handle.conn is not None
    del layer
    gc.collect()
    for thread in threads:
        thread.join(PATIENCE)
        assert not thread.is_alive()
    assert handle.conn is None


# A program that opens a layer and the layer's session store, uses both and exits
# without closing either. Its exit handler is registered before chanlite is imported,
# so it runs after chanlite's own, and prints whether each connection was closed.
EXIT_WITHOUT_ACLOSE = """
import atexit, sqlite3, sys

class Tracked(sqlite3.Connection):
    was_closed = False

    def close(self):
        super().close()
        self.was_closed = True

def tracked(*args, **kwargs):
    opened.append(connect(*args, **kwargs, factory=Tracked))
    return opened[-1]

opened, connect = [], sqlite3.connect
sqlite3.connect = tracked
atexit.register(lambda: print([conn.was_closed for conn in opened]))

import asyncio
from chanlite import get_layer
from chanlite.stores import get_session_store

layer = get_layer(sys.argv[1])
store = get_session_store(None, layer)
asyncio.run(store.save("kept", {"n": 1}, 60))
asyncio.run(layer.send("left", {"n": 1}))
"""


def test_a_process_exiting_without_aclose_closes_its_connections(tmp_path):
    url = sqlite_url(tmp_path / "exit.db")
    result = subprocess.run(
        [sys.executable, "-W", "default::ResourceWarning", "-c", EXIT_WITHOUT_ACLOSE, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=STARTUP,
        check=True,
    )
    assert result.stdout.strip() == "[True, True]"  # the layer's, then the store's
    assert "ResourceWarning" not in result.stderr


@pytest.mark.anyio
async def test_a_sqlite_call_does_not_run_on_the_event_loop_thread(open_layer, monkeypatch):
    layer = open_layer()
    threads: list[str] = []
    original = layer._send_job

    def spy(*args: Any) -> bool:
        threads.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(layer, "_send_job", spy)
    await layer.send("threaded", {"n": 1})
    assert threads and threads[0] != threading.current_thread().name
    assert threads[0].startswith("chanlite-sqlite")


# -- group history ------------------------------------------------------------------------

ROOMS = {"room-*": 10}


def contents(history: Any) -> list[dict[str, Any]]:
    return [content for _, content in history.messages]


@pytest.mark.anyio
async def test_layers_on_one_file_and_prefix_share_one_history(open_layer):
    first, second = open_layer(group_history=ROOMS), open_layer(group_history=ROOMS)
    await first.group_send("room-1", {"n": 1})
    await second.group_send("room-1", {"n": 2})
    for layer in (first, second):
        history = await layer.group_history("room-1")
        assert contents(history) == [{"n": 1}, {"n": 2}]
        assert history.position is not None and history.position.endswith(":2")


@pytest.mark.anyio
async def test_histories_of_different_prefixes_are_separate(open_layer):
    one = open_layer(prefix="one", group_history=ROOMS)
    two = open_layer(prefix="two", group_history=ROOMS)
    await one.group_send("room-1", {"n": "one"})
    await two.group_send("room-1", {"n": "two"})
    await two.group_send("room-1", {"n": "two again"})
    assert contents(await one.group_history("room-1")) == [{"n": "one"}]
    assert (await one.group_history("room-1")).position.endswith(":1")
    await one.flush()
    assert (await one.group_history("room-1")).position is None
    assert contents(await two.group_history("room-1")) == [{"n": "two"}, {"n": "two again"}]


@pytest.mark.anyio
async def test_history_is_trimmed_and_swept_in_the_file(open_layer):
    layer = open_layer(group_history={"room-*": 2}, history_ttl=0.2)
    for n in range(5):
        await layer.group_send("room-1", {"n": n})
    await layer.group_send("room-2", {"n": 0})
    with closing(sqlite3.connect(layer.path)) as conn:
        rows = conn.execute(f"SELECT grp, seq FROM {HISTORY} ORDER BY grp, seq").fetchall()
    assert rows == [("room-1", 4), ("room-1", 5), ("room-2", 1)]
    await anyio.sleep(0.3)  # expiry is the behaviour under test: past history_ttl
    await layer.group_send("room-3", {"n": 0})  # a send sweeps the whole layer's history
    with closing(sqlite3.connect(layer.path)) as conn:
        rows = conn.execute(f"SELECT grp, seq FROM {HISTORY}").fetchall()
        metas = conn.execute(f"SELECT grp, seq FROM {HISTORY_META} ORDER BY grp").fetchall()
    assert rows == [("room-3", 1)]
    assert metas == [("room-1", 5), ("room-2", 1), ("room-3", 1)]  # kept group_expiry


@pytest.mark.anyio
async def test_a_file_made_before_history_gets_its_tables(open_layer, tmp_path):
    await open_layer().send("old", {"n": 1})
    with closing(sqlite3.connect(tmp_path / "layer.db")) as conn:  # as an older chanlite left it
        conn.execute(f"DROP TABLE {HISTORY}")
        conn.execute(f"DROP TABLE {HISTORY_META}")
    layer = open_layer(group_history=ROOMS)
    await layer.group_send("room-1", {"n": 2})
    assert contents(await layer.group_history("room-1")) == [{"n": 2}]
    assert await layer.receive(["old"], timeout=0) == ("old", {"n": 1})


@pytest.mark.anyio
async def test_a_missing_history_table_raises_layer_error(open_layer):
    layer = open_layer(group_history=ROOMS)
    await layer.group_send("room-1", {"n": 1})
    with closing(sqlite3.connect(layer.path)) as conn:  # behind the layer's back
        conn.execute(f"DROP TABLE {HISTORY}")
        conn.execute(f"DROP TABLE {HISTORY_META}")
    operations: dict[str, Callable[[], Awaitable[Any]]] = {
        "group_send": lambda: layer.group_send("room-1", {"n": 2}),
        "group_history": lambda: layer.group_history("room-1"),
        "flush": lambda: layer.flush(),
    }
    await assert_each_fails_on_a_missing_table(operations, layer.path)
    await layer.group_send("other", {"n": 3})  # a group without history needs no table


# -- waking ------------------------------------------------------------------------------


async def wait_until_waiting(layer: SQLiteChannelLayer, queue: str) -> None:
    """Return once a receive of ``layer`` waits on ``queue`` (no fixed sleep)."""
    with anyio.fail_after(PATIENCE):
        # The notifier has no event to wait for: poll it, briefly and bounded.
        while layer._notifier.waiting(queue) == 0:  # noqa: ASYNC110
            await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_send_in_the_same_process_wakes_a_waiting_receiver_at_once(open_layer):
    layer = open_layer()
    # With polling this slow, only the in-process wake-up can deliver in time.
    layer.poll_min = layer.poll_max = 60.0
    result: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            result.append(await layer.receive(["wake"], timeout=30))

        tg.start_soon(receive)
        await wait_until_waiting(layer, "wake")
        sent_at = time.monotonic()
        await layer.send("wake", {"n": 1})
    assert result == [("wake", {"n": 1})]
    assert time.monotonic() - sent_at < WAKE_WITHIN
    assert layer.local_wakeups == 1


@pytest.mark.anyio
async def test_send_through_another_layer_on_the_same_file_wakes_a_receiver(open_layer):
    receiver, sender = open_layer(), open_layer()
    receiver.poll_min = receiver.poll_max = 60.0
    result: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            result.append(await receiver.receive(["proc!"], timeout=30))

        tg.start_soon(receive)
        await wait_until_waiting(receiver, "proc!")
        sent_at = time.monotonic()
        await sender.send("proc!x", {"n": 1})
    assert result == [("proc!x", {"n": 1})]
    assert time.monotonic() - sent_at < WAKE_WITHIN
    assert receiver.local_wakeups == 1


@pytest.mark.anyio
async def test_group_send_in_the_same_process_wakes_a_waiting_receiver(open_layer):
    layer = open_layer()
    layer.poll_min = layer.poll_max = 60.0
    await layer.group_add("room", "member")
    result: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            result.append(await layer.receive(["member"], timeout=30))

        tg.start_soon(receive)
        await wait_until_waiting(layer, "member")
        await layer.group_send("room", {"n": 1})
    assert result == [("member", {"n": 1})]
    assert layer.local_wakeups == 1


#: Long enough for a receiver's backoff to grow past WAKE_WITHIN, were it not capped.
BACKOFF_GROWN = 1.1


@pytest.mark.anyio
async def test_waiting_receiver_polls_for_a_message_written_behind_its_back(open_layer):
    layer = open_layer()
    written_at: list[float] = []
    async with anyio.create_task_group() as tg:

        async def write_directly() -> None:
            await wait_until_waiting(layer, "poll")
            await anyio.sleep(BACKOFF_GROWN)
            written_at.append(time.monotonic())
            await anyio.to_thread.run_sync(insert_behind_the_layers_back, layer, "poll")

        tg.start_soon(write_directly)
        result = await layer.receive(["poll"], timeout=10)
    assert result == ("poll", {"n": 1})
    assert time.monotonic() - written_at[0] < WAKE_WITHIN
    assert layer.local_wakeups == 0


def insert_behind_the_layers_back(layer: SQLiteChannelLayer, channel: str) -> None:
    """Insert a message as another process would: no in-process wake-up."""
    with closing(sqlite3.connect(layer.path)) as conn, conn:  # closed, after a commit
        conn.execute(
            f"INSERT INTO {MESSAGES} (layer, queue, channel, payload, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (layer.prefix, channel, channel, b'{"n":1}', time.time() + 60),
        )


@pytest.mark.anyio
async def test_send_from_another_threads_loop_wakes_a_waiting_receiver(open_layer):
    layer = open_layer()
    layer.poll_min = layer.poll_max = 60.0
    result: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def receive() -> None:
            result.append(await layer.receive(["thread"], timeout=30))

        tg.start_soon(receive)
        await wait_until_waiting(layer, "thread")
        sent_at = time.monotonic()
        await anyio.to_thread.run_sync(asyncio.run, layer.send("thread", {"n": 1}))
    assert result == [("thread", {"n": 1})]
    assert time.monotonic() - sent_at < WAKE_WITHIN
    assert layer.local_wakeups == 1


# -- cancelled receives --------------------------------------------------------------------


def hold_takes(layer: SQLiteChannelLayer, monkeypatch: Any, *, after: bool) -> Any:
    """Make the layer's takes stop on its thread, just before or just after taking a
    message, until ``release`` is set; ``reached`` is set when one gets there."""
    reached, release = threading.Event(), threading.Event()
    original = layer._take_job

    def held(*args: Any) -> Any:
        if not after:
            reached.set()
            release.wait(PATIENCE)
        taken = original(*args)
        if after:
            reached.set()
            release.wait(PATIENCE)
        return taken

    monkeypatch.setattr(layer, "_take_job", held)
    return reached, release


async def cancel_while_taking(layer: SQLiteChannelLayer, monkeypatch: Any, *, after: bool) -> None:
    """Start a receive on ``held``, cancel it while its take is held, then release."""
    reached, release = hold_takes(layer, monkeypatch, after=after)
    task = asyncio.create_task(layer.receive(["held"], timeout=5))
    assert await anyio.to_thread.run_sync(reached.wait, PATIENCE)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()


@pytest.mark.anyio
async def test_receive_cancelled_after_its_take_puts_the_message_back_in_place(
    open_layer, monkeypatch
):
    layer = open_layer()
    await layer.send("held", {"n": 1})
    await layer.send("held", {"n": 2})
    await cancel_while_taking(layer, monkeypatch, after=True)
    assert await layer.receive(["held"], timeout=PATIENCE) == ("held", {"n": 1})
    assert await layer.receive(["held"], timeout=PATIENCE) == ("held", {"n": 2})


@pytest.mark.anyio
async def test_take_that_finds_its_receive_cancelled_puts_the_message_back_in_place(
    open_layer, monkeypatch
):
    layer = open_layer()
    await layer.send("held", {"n": 1})
    await layer.send("held", {"n": 2})
    await cancel_while_taking(layer, monkeypatch, after=False)
    assert await layer.receive(["held"], timeout=PATIENCE) == ("held", {"n": 1})
    assert await layer.receive(["held"], timeout=PATIENCE) == ("held", {"n": 2})


@pytest.mark.anyio
async def test_next_receiver_gets_the_message_a_cancelled_take_put_back(open_layer, monkeypatch):
    layer = open_layer()
    await layer.send("held", {"n": 1})
    await layer.send("held", {"n": 2})
    reached, release = hold_takes(layer, monkeypatch, after=True)
    first = asyncio.create_task(layer.receive(["held"], timeout=5))
    assert await anyio.to_thread.run_sync(reached.wait, PATIENCE)
    second = asyncio.create_task(layer.receive(["held"], timeout=5))
    await asyncio.sleep(0.01)  # give the second receive every chance to start its take
    first.cancel()
    release.set()
    assert await second == ("held", {"n": 1})
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await layer.receive(["held"], timeout=PATIENCE) == ("held", {"n": 2})


# -- several processes -----------------------------------------------------------------


class Helper:
    """A receiver program in another process: ``python -m tests.layers.test_sqlite``."""

    def __init__(self, *args: str) -> None:
        command = [sys.executable, "-m", "tests.layers.test_sqlite", *args]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    async def ready(self) -> None:
        """Wait for the helper's ``ready`` line: its layer is open and it is receiving."""
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        with anyio.fail_after(STARTUP):
            line = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
        if line != "ready\n":
            self.stop()
            pytest.fail(f"the helper did not start: {line!r}")

    async def result(self) -> Any:
        """The JSON the helper prints last, once it has exited cleanly."""
        out, err = await anyio.to_thread.run_sync(self.process.communicate, None, STARTUP)
        assert self.process.returncode == 0, err
        return json.loads(out)

    def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            _, err = self.process.communicate()
            if err:
                print(err, file=sys.stderr)


@pytest.fixture
def helpers() -> Iterator[list[Helper]]:
    started: list[Helper] = []
    yield started
    for helper in started:
        helper.stop()


@pytest.mark.anyio
async def test_receivers_in_three_processes_get_each_message_exactly_once(
    open_layer, tmp_path, helpers
):
    count, receivers = 5000, 3
    url = sqlite_url(tmp_path / "shared.db", f"capacity={count}")
    layer = open_layer(url)
    helpers.extend(Helper("drain", url, "xproc") for _ in range(receivers))
    for helper in helpers:
        await helper.ready()
    for n in range(count):
        await layer.send("xproc", {"n": n})
    for _ in range(receivers):
        await layer.send("xproc", STOP)  # behind every message: each receiver takes one
    results = [await helper.result() for helper in helpers]
    received = [n for numbers in results for n in numbers]
    assert len(received) == count  # nothing twice ...
    assert sorted(received) == list(range(count))  # ... and nothing lost
    assert all(results), "every receiver should have taken some messages"
    for numbers in results:  # each process took its share in FIFO order
        assert numbers == sorted(numbers)
    assert await layer.receive(["xproc"], timeout=0) == (None, None)


@pytest.mark.anyio
async def test_receiver_in_another_process_sees_a_message_within_its_polling_bound(
    open_layer, tmp_path, helpers
):
    url = sqlite_url(tmp_path / "shared.db")
    layer = open_layer(url)
    helper = Helper("once", url, "xwake")
    helpers.append(helper)
    await helper.ready()
    await anyio.sleep(BACKOFF_GROWN)
    await layer.send("xwake", {"n": 1})
    sent_at = time.time()
    result = await helper.result()
    assert result["message"] == ["xwake", {"n": 1}]
    assert result["received_at"] - sent_at < WAKE_WITHIN


# -- the helper program --------------------------------------------------------------------


async def drain(url: str, channel: str) -> list[int]:
    """Receive from ``channel`` until a stop message; return the numbers received."""
    layer = get_layer(url)
    numbers: list[int] = []
    try:
        print("ready", flush=True)
        while True:
            _, message = await layer.receive([channel], timeout=STARTUP)
            if message is None:
                raise SystemExit(f"no stop message on {channel!r}")
            if message == STOP:
                return numbers
            numbers.append(message["n"])
    finally:
        await layer.aclose()


async def receive_once(url: str, channel: str) -> dict[str, Any]:
    """Receive one message from ``channel``; say what and when."""
    layer = get_layer(url)
    try:
        print("ready", flush=True)
        received = await layer.receive([channel], timeout=STARTUP)
        return {"message": received, "received_at": time.time()}
    finally:
        await layer.aclose()


def main(argv: list[str]) -> None:
    mode, url, channel = argv
    run = {"drain": drain, "once": receive_once}[mode]
    result = asyncio.run(run(url, channel))
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
