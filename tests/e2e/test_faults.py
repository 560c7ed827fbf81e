"""Faults against real processes (docs/reliability.md, "Faults").

The tests run ``chanlite serve`` and ``chanlite worker`` as subprocesses on a private
redis-server (killed by its PID afterwards), with real WebSocket clients:

* **A worker SIGKILLed** in the middle of traffic: the survivor runs every job sent
  after the kill, none runs twice, and only the jobs the dead worker had in flight are
  lost. Every job the workers run leaves its id in a per-process log
  (``tests/apps/faults.py``), so the test can tell who ran what, and how often.
* **Redis killed and restarted** during WebSocket traffic: new messages flow end to
  end within :data:`RECOVERY` seconds of Redis answering again, sockets that did not
  send meanwhile work again, and each process logs the outage in two lines. Two
  layer-level tests pin down the connection handling this rests on.
* **An interface SIGKILLed**: the workers go on serving the other interface, and the
  dead interface's sockets leave their groups, and its keys leave Redis, once the
  messages sent to them expire.
* **SIGTERM under load**, to ``chanlite serve`` and to one of two ``chanlite worker``
  processes: consumers in flight finish and their replies arrive, sockets close with
  1001, nothing is lost, and the process exits 0.

More outage behaviour of the layer itself (reconnecting, at-most-once sends) is
covered by ``tests/layers/test_redis.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from chanlite import LayerError, get_layer
from chanlite.layers.base import DEFAULT_PREFIX, BaseChannelLayer
from chanlite.layers.redis import CONNECT_PATIENCE, GROUP_KEY, SHARED_BATCH, RedisChannelLayer
from chanlite.worker import ASYNC_CONCURRENCY
from tests.apps.faults import DIR_ENV, JOBS, log_path
from tests.conftest import private_redis_servers
from tests.layers.redis_helpers import RedisServer

from .server import ROOT, free_port

pytestmark = pytest.mark.anyio

TARGET = "tests.apps.faults:routes"
SECRET = {"CHANLITE_SECRET_KEY": "faults-test-secret-key-0123456789abcdef"}
#: How long any one condition may take to come true.
PATIENCE = 15.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of our own, killed afterwards."""
    with private_redis_servers() as [server]:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A plain client of the private server, to look at what the layer stored."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


# -- processes and clients -----------------------------------------------------------


class Process:
    """A ``chanlite`` command run as a subprocess, its output in a file."""

    def __init__(self, log_dir: Path, *args: str, port: int | None = None) -> None:
        self.port = port
        self.log = log_dir / f"{args[0]}-{time.monotonic_ns()}.out"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "chanlite", *args],
                cwd=ROOT,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **SECRET, DIR_ENV: str(log_dir)},
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()

    def lines(self, fragment: str) -> list[str]:
        """The lines of output that contain ``fragment``."""
        return [line for line in self.output().splitlines() if fragment in line]

    async def kill(self) -> None:
        """SIGKILL the process and wait until it is gone."""
        self.process.kill()
        await asyncio.to_thread(self.process.wait, PATIENCE)

    async def terminate(self) -> int:
        """SIGTERM the process and return its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, PATIENCE)

    def stop(self) -> None:
        """Cleanup: kill the process if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_worker(layer: str, log_dir: Path) -> Process:
    """``chanlite worker tests.apps.faults:routes``."""
    return Process(log_dir, "worker", TARGET, "--layer", layer)


async def start_server(log_dir: Path, *args: str, target: str = TARGET) -> Process:
    """``chanlite serve TARGET ARGS`` (``tests.apps.faults:routes`` by default) on a
    free port, once it listens."""
    port = free_port()
    server = Process(log_dir, "serve", target, "--port", str(port), *args, port=port)

    def listening() -> bool:
        if server.process.poll() is not None:
            pytest.fail(f"chanlite serve exited early:\n{server.output()}")
        return accepts_connections(port)

    await wait_until(listening, "chanlite serve to listen")
    return server


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], what: str, within: float = PATIENCE
) -> None:
    """Poll ``check`` until it is true; fail saying ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


#: Seconds between two frames of a talker.
TALK_PACE = 0.02
#: Seconds a talker waits before connecting again.
RECONNECT_PAUSE = 0.2


class Talker:
    """A client of ``/echo/`` that sends a numbered frame every TALK_PACE seconds and
    reads the echoes; with ``reconnect``, it opens a new socket whenever one closes
    (or cannot open), as a browser app would."""

    def __init__(self, url: str, *, reconnect: bool) -> None:
        self.url = url
        self.reconnect = reconnect
        #: When each frame was sent, by frame number.
        self.sent_at: list[float] = []
        #: The numbers of the frames echoed back, in arrival order.
        self.echoed: list[int] = []
        #: The close code of each socket that has closed.
        self.closes: list[int | None] = []
        self.sending = True
        self._socket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def echoed_since(self, moment: float) -> bool:
        """True once a frame sent at or after ``moment`` has been echoed."""
        return any(self.sent_at[number] >= moment for number in self.echoed)

    def all_echoed(self) -> bool:
        return sorted(self.echoed) == list(range(len(self.sent_at)))

    @property
    def closed(self) -> bool:
        return self._task is not None and self._task.done()

    async def close(self) -> None:
        """Stop talking and close the socket (cleanup)."""
        self.reconnect = self.sending = False
        if self._socket is not None:
            await self._socket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with connect(self.url, open_timeout=PATIENCE) as ws:
                    self._socket = ws
                    await self._talk(ws)
                self.closes.append(ws.close_code)
            except (OSError, TimeoutError, WebSocketException):
                pass  # the handshake failed: the server could not take a socket now
            if not self.reconnect:
                return
            await asyncio.sleep(RECONNECT_PAUSE)

    async def _talk(self, ws: ClientConnection) -> None:
        reader = asyncio.ensure_future(self._read(ws))
        with contextlib.suppress(ConnectionClosed):
            while self.sending and not reader.done():
                self.sent_at.append(time.monotonic())
                await ws.send(str(len(self.sent_at) - 1))
                await asyncio.sleep(TALK_PACE)
        await reader

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for echo in ws:
                self.echoed.append(int(echo))


async def talkers(url: str, count: int, *, reconnect: bool) -> list[Talker]:
    """``count`` talkers to ``url``, started, once each has had an echo."""
    started = [Talker(url, reconnect=reconnect) for _ in range(count)]
    for talker in started:
        talker.start()
    await wait_until(lambda: all(t.echoed for t in started), "every talker's first echo")
    return started


async def echo(ws: ClientConnection, text: str) -> None:
    """Send ``text`` and expect it back."""
    await ws.send(text)
    assert await asyncio.wait_for(ws.recv(), PATIENCE) == text


# -- a worker SIGKILLed --------------------------------------------------------------

#: Jobs each worker must have run before one is killed: traffic is flowing to both.
BEFORE_KILL = 50
#: Jobs sent after the kill (all of which the surviving worker must run).
AFTER_KILL = 500
#: The sender sends BATCH jobs, then yields for PACE seconds: about 2,000 jobs/s.
BATCH, PACE = 10, 0.005
#: Capacity of the sender's layer: the backlog may grow while a worker is down.
SENDER_CAPACITY = 100_000
#: The most jobs a killed worker can have taken but not run: one per in-flight slot
#: (``chanlite worker`` runs 4 threads; the app's async consumers add
#: ASYNC_CONCURRENCY slots) plus the batch its reader may hold for the next receives.
MAX_LOST = 4 + ASYNC_CONCURRENCY + SHARED_BATCH


class Sender:
    """Sends numbered jobs (``{"id": n}``, n = 0, 1, ...) at a steady pace until stopped."""

    def __init__(self, layer: BaseChannelLayer) -> None:
        self.layer = layer
        #: Sends begun: job ids below this have been (or are being) sent.
        self.started = 0
        #: Sends done: job ids below this are stored in Redis.
        self.sent = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop sending; raises whatever made the sender fail."""
        self._stopping = True
        if self._task is not None:
            await self._task

    def sent_at_least(self, count: int) -> bool:
        """True once ``count`` jobs are sent; raises if the sender failed."""
        if self._task is not None and self._task.done():
            self._task.result()
        return self.sent >= count

    async def cancel(self) -> None:
        """Stop at once, whatever state the sender is in (cleanup)."""
        self._stopping = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while not self._stopping:
            for _ in range(BATCH):
                job, self.started = self.started, self.started + 1
                await self.layer.send(JOBS, {"id": job})
                self.sent = job + 1
            await asyncio.sleep(PACE)  # pacing the stream, not waiting for anything


def runs_by_worker(log_dir: Path, workers: list[Process]) -> list[list[int]]:
    """The job ids each worker has run so far, in the order it logged them."""
    runs = []
    for worker in workers:
        path = log_path(log_dir, worker.pid)
        text = path.read_text() if path.exists() else ""
        complete = text[: text.rfind("\n") + 1]  # a line being written is not done
        runs.append([int(line) for line in complete.splitlines()])
    return runs


def tcp_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process ``pid`` holds (Linux /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def redis_client_ports(url: str) -> set[int]:
    """The client ports of every connection the Redis server at ``url`` has open."""
    client = redis.Redis.from_url(url)
    try:
        return {int(entry["addr"].rsplit(":", 1)[1]) for entry in await client.client_list()}
    finally:
        await client.aclose()


async def kill_and_fence(worker: Process, url: str, sender: Sender) -> int:
    """SIGKILL ``worker`` and wait until Redis has dropped its connections; return the
    first job id sent after that (the sender keeps going throughout).

    The worker is stopped first, so the connections read from /proc are all it has.
    """
    os.kill(worker.pid, signal.SIGSTOP)
    ports = tcp_ports(worker.pid)
    await worker.kill()

    async def connections_gone() -> bool:
        return not ports & await redis_client_ports(url)

    await wait_until(connections_gone, "Redis to drop the killed worker's connections")
    return sender.started


async def test_worker_killed_mid_traffic(
    redis_url: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The survivor runs every job sent after the kill; no job runs twice; only jobs
    the killed worker had in flight may be lost."""
    workers = [start_worker(redis_url, tmp_path), start_worker(redis_url, tmp_path)]
    victim, survivor = workers
    layer = get_layer(redis_url, capacity=SENDER_CAPACITY)
    sender = Sender(layer)
    try:
        sender.start()
        await wait_until(
            lambda: all(len(runs) >= BEFORE_KILL for runs in runs_by_worker(tmp_path, workers)),
            f"both workers to run {BEFORE_KILL} jobs",
        )
        fence = await kill_and_fence(victim, redis_url, sender)
        await wait_until(lambda: sender.sent_at_least(fence + AFTER_KILL), "jobs after the kill")
        await sender.stop()
        after_kill = set(range(fence, sender.sent))

        async def all_run() -> bool:
            run = set(runs_by_worker(tmp_path, [survivor])[0])
            depths = (await layer.stats() or {}).get("channels", {})
            return after_kill <= run and not depths.get(JOBS)

        await wait_until(all_run, "the survivor to run every job sent after the kill")
        assert await survivor.terminate() == 0
    finally:
        await sender.cancel()
        for worker in workers:
            worker.stop()
        await layer.aclose()

    victim_runs, survivor_runs = runs_by_worker(tmp_path, workers)
    counts = Counter(victim_runs + survivor_runs)
    twice = sorted(job for job, count in counts.items() if count > 1)
    lost = sorted(set(range(sender.sent)) - counts.keys())
    record_property("jobs_sent", sender.sent)
    record_property("lost_in_flight", len(lost))
    print(
        f"\nsent {sender.sent} jobs; killed worker ran {len(victim_runs)}, survivor "
        f"{len(survivor_runs)}; lost in flight: {len(lost)} {lost}"
    )
    assert not twice, f"jobs run twice: {twice}"
    assert not set(victim_runs) & after_kill, "the killed worker ran jobs after its death"
    assert all(job < fence for job in lost), f"jobs lost after the kill: {lost}"
    assert len(lost) <= MAX_LOST, f"{len(lost)} jobs lost, more than could be in flight"


# -- Redis killed and restarted ------------------------------------------------------

#: New messages flow end to end within this many seconds of Redis answering again.
RECOVERY = 5.0
#: How long Redis stays down: longer than a send keeps trying, so some sends fail.
OUTAGE = CONNECT_PATIENCE + 1.0
#: What a process logs when an outage starts, and when it ends.
OUTAGE_LOGGED, RECOVERY_LOGGED = "unreachable; retrying", "is reachable again"
REDIS_LOGGER = "chanlite.layers.redis"


@pytest.mark.slow
async def test_redis_restarted_mid_traffic(
    redis_server: RedisServer, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Talkers keep sending through a Redis outage: within RECOVERY seconds of Redis
    answering again their new frames are echoed (on their old sockets, or on new
    ones where the outage closed them), sockets that stayed quiet work again, no
    frame is echoed twice, and each process logs the outage in exactly two lines."""
    worker = start_worker(redis_server.url, tmp_path)
    interface = await start_server(tmp_path, "--no-worker", "--layer", redis_server.url)
    processes = [worker, interface]
    clients: list[Talker] = []
    quiet: list[ClientConnection] = []
    try:
        quiet += [await connect(f"{interface.ws}/echo/") for _ in range(2)]
        for ws in quiet:
            await echo(ws, "before")
        clients = await talkers(f"{interface.ws}/echo/", 4, reconnect=True)

        # Killed and started from a thread, so the clients keep going meanwhile.
        await asyncio.to_thread(redis_server.kill)
        await wait_until(
            lambda: all(process.lines(OUTAGE_LOGGED) for process in processes),
            "both processes to notice the outage",
        )
        await asyncio.sleep(OUTAGE)  # the outage itself: talkers keep sending meanwhile
        await asyncio.to_thread(redis_server.start)  # on the same port, empty
        answered = time.monotonic()

        await wait_until(
            lambda: all(talker.echoed_since(answered) for talker in clients),
            "every talker's new frames to be echoed",
            within=RECOVERY - (time.monotonic() - answered),
        )
        record_property("recovered_after_s", round(time.monotonic() - answered, 2))
        for ws in quiet:
            await asyncio.wait_for(echo(ws, "after"), RECOVERY)
        async with connect(f"{interface.ws}/echo/") as newcomer:
            await echo(newcomer, "new")
        assert [await process.terminate() for process in processes] == [0, 0]
    finally:
        for talker in clients:
            await talker.close()
        for ws in quiet:
            await ws.close()
        for process in processes:
            process.stop()

    for talker in clients:
        assert len(talker.echoed) == len(set(talker.echoed)), "a frame was echoed twice"
    for process in processes:
        assert len(process.lines(OUTAGE_LOGGED)) == 1, process.output()
        assert len(process.lines(RECOVERY_LOGGED)) == 1, process.output()


async def test_idle_connections_survive_a_redis_restart(redis_server: RedisServer) -> None:
    """Connections that sat in the pool while Redis restarted are not handed out: the
    first sends after the restart all succeed, and none of them fails first."""
    layer = RedisChannelLayer(redis_server.url, capacity=1000)
    shard = layer.shards.shards[0]
    try:
        # Fill the pool with connections, all idle once the sends are done.
        await asyncio.gather(*(layer.send("pooled", {"n": n}) for n in range(20)))
        # From a thread, so the layer's event loop runs while Redis restarts, as in
        # any idle process.
        await asyncio.to_thread(redis_server.kill)
        await asyncio.to_thread(redis_server.start)
        await asyncio.gather(*(layer.send("pooled", {"n": n}) for n in range(20)))
        assert shard.outages == 0
        assert (await layer.stats())["channels"] == {"pooled": 20}
    finally:
        await layer.aclose()


async def test_only_an_answer_ends_an_outage(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An outage ends when the server answers a command sent since it began: not when
    a connection comes out of the pool, nor when a reply sent before it is read."""
    caplog.set_level(logging.INFO, logger=REDIS_LOGGER)
    layer = RedisChannelLayer(redis_server.url)
    shard = layer.shards.shards[0]
    try:
        await layer.send("pooled", {"n": 0})  # leaves a connection in the pool
        before = shard.outages
        # Killed without letting the event loop run: the pooled connection still
        # looks open, as it does in a busy process that has not read the EOF yet.
        redis_server.kill()
        shard.mark_down(OSError("noticed first by a blocking read"))
        with pytest.raises(LayerError) as failed:
            await layer.send("pooled", {"n": 1})
        assert isinstance(failed.value.__cause__, RedisConnectionError)
        shard.mark_up(before)  # a reply to a command sent before the outage
        assert not any(RECOVERY_LOGGED in r.getMessage() for r in caplog.records)
        await asyncio.to_thread(redis_server.start)
        await layer.send("pooled", {"n": 2})
    finally:
        await layer.aclose()
    logged = [r.getMessage() for r in caplog.records if r.name == REDIS_LOGGER]
    assert [OUTAGE_LOGGED in m for m in logged] == [True, False], logged
    assert RECOVERY_LOGGED in logged[1]


async def test_a_socket_that_meets_a_redis_outage_is_closed_cleanly(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A frame that cannot reach the layer closes its socket with 1013 (try again
    later), a handshake during the outage is refused with 503, and the interface
    logs no traceback."""
    worker = start_worker(redis_server.url, tmp_path)
    interface = await start_server(tmp_path, "--no-worker", "--layer", redis_server.url)
    try:
        async with connect(f"{interface.ws}/echo/") as ws:
            await echo(ws, "before")
            redis_server.kill()
            await ws.send("during")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), PATIENCE)
        assert ws.close_code == 1013
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{interface.ws}/echo/", open_timeout=PATIENCE)
        assert refused.value.response.status_code == 503
    finally:
        worker.stop()
        interface.stop()
    assert "Traceback" not in interface.output()


# -- an interface SIGKILLed ----------------------------------------------------------

#: The layer's expiry in this test (seconds): messages to the dead interface expire
#: this soon.
SHORT_EXPIRY = 2


@pytest.mark.slow
async def test_interface_killed(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    """The workers go on serving the other interface; the dead interface's sockets
    leave their room once a message to them expires unread; and nothing of the dead
    interface is left in Redis once the messages sent to it have expired."""
    layer_url = f"{redis_url}?expiry={SHORT_EXPIRY}"
    worker = start_worker(layer_url, tmp_path)
    doomed = await start_server(tmp_path, "--no-worker", "--layer", layer_url)
    survivor = await start_server(tmp_path, "--no-worker", "--layer", layer_url)
    room = GROUP_KEY.format(prefix=DEFAULT_PREFIX, name="room-lobby")

    async def members() -> set[str]:
        """The room's members, read straight from Redis (no layer call evicts)."""
        return {member.decode() for member in await redis_client.zrange(room, 0, -1)}

    sockets: list[ClientConnection] = []
    try:
        sockets += [await connect(f"{doomed.ws}/room/lobby/") for _ in range(2)]
        dead_members = await members()
        dead_prefix = next(iter(dead_members)).split("!")[0] + "!"
        sockets.append(member := await connect(f"{survivor.ws}/room/lobby/"))
        (live_member,) = await members() - dead_members
        await member.send("hello")
        for ws in sockets:
            assert await asyncio.wait_for(ws.recv(), PATIENCE) == "hello"

        await doomed.kill()
        async with connect(f"{survivor.ws}/echo/") as ws:
            await echo(ws, "still served")
        # The room goes on; each message to it is also sent to the two dead members,
        # until one sent after the first of those expired finds it there unread.
        said = 0

        async def only_the_live_member_left() -> bool:
            nonlocal said
            said += 1
            await echo(member, f"message {said}")
            return await members() == {live_member}

        await wait_until(only_the_live_member_left, "the dead interface's sockets to leave")

        async def nothing_left() -> bool:
            return not [key async for key in redis_client.scan_iter(f"*{dead_prefix}*")]

        await wait_until(nothing_left, "the dead interface's keys to leave Redis")
        await echo(member, "after")
        assert worker.process.poll() is None
        assert await survivor.terminate() == 0
        assert await worker.terminate() == 0
    finally:
        for ws in sockets:
            await ws.close()
        for process in (worker, doomed, survivor):
            process.stop()


# -- SIGTERM under load --------------------------------------------------------------

#: How long the slow consumers run: long enough to be in flight through the signal.
SLOW = 3.0


async def start_slow(url: str) -> tuple[ClientConnection, str]:
    """A socket whose slow consumer has started; returns it and the pid running it."""
    ws = await connect(f"{url}/slow/")
    await ws.send(str(SLOW))
    started = await asyncio.wait_for(ws.recv(), PATIENCE)
    assert isinstance(started, str) and started.startswith("started:")
    return ws, started.removeprefix("started:")


async def finish_and_close_code(ws: ClientConnection) -> int | None:
    """Expect a slow consumer's ``finished``, then the socket's close; its code."""
    assert await asyncio.wait_for(ws.recv(), PATIENCE) == "finished"
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), PATIENCE)
    return ws.close_code


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["memory", "redis"])
async def test_serve_sigterm_under_load(
    layer: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """``chanlite serve`` (interface and workers) stops accepting connections at once,
    lets its slow consumers finish and deliver their replies, closes every socket
    with 1001 and exits 0."""
    args = ["--layer", request.getfixturevalue("redis_url")] if layer == "redis" else []
    server = await start_server(tmp_path, *args)
    clients: list[Talker] = []
    try:
        clients = await talkers(f"{server.ws}/echo/", 5, reconnect=False)
        slow = [(await start_slow(server.ws))[0] for _ in range(2)]
        finishing = [asyncio.ensure_future(finish_and_close_code(ws)) for ws in slow]

        server.process.send_signal(signal.SIGTERM)
        await wait_until(
            lambda: not accepts_connections(server.port or 0), "connections to be refused"
        )
        assert not any(task.done() for task in finishing), "refused only after draining"
        assert await asyncio.gather(*finishing) == [1001, 1001]
        await wait_until(lambda: all(talker.closed for talker in clients), "every socket closed")
        assert [talker.closes for talker in clients] == [[1001]] * len(clients)
        assert await asyncio.to_thread(server.process.wait, PATIENCE) == 0
    finally:
        for talker in clients:
            await talker.close()
        server.stop()
    assert "Traceback" not in server.output()


@pytest.mark.slow
async def test_worker_sigterm_under_load(redis_url: str, tmp_path: Path) -> None:
    """One of two workers stopped with SIGTERM under load: its slow consumer finishes
    and the reply reaches the client, it exits 0, the other worker carries on, and
    every frame is echoed exactly once."""
    workers = [start_worker(redis_url, tmp_path), start_worker(redis_url, tmp_path)]
    interface = await start_server(tmp_path, "--no-worker", "--layer", redis_url)
    clients: list[Talker] = []
    try:
        clients = await talkers(f"{interface.ws}/echo/", 5, reconnect=False)
        slow, pid = await start_slow(interface.ws)
        (stopping,) = [worker for worker in workers if str(worker.pid) == pid]
        (staying,) = [worker for worker in workers if worker is not stopping]

        stopping.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(slow.recv(), PATIENCE) == "finished"
        assert await asyncio.to_thread(stopping.process.wait, PATIENCE) == 0
        assert stopping.lines("worker stopped")
        stopped = time.monotonic()
        await wait_until(
            lambda: all(talker.echoed_since(stopped) for talker in clients),
            "the other worker to go on echoing",
        )
        for talker in clients:
            talker.sending = False
        await wait_until(lambda: all(t.all_echoed() for t in clients), "every frame's echo")
        assert not any(talker.closes for talker in clients)
        await slow.close()
        assert await interface.terminate() == 0
        assert await staying.terminate() == 0
    finally:
        for talker in clients:
            await talker.close()
        for process in (*workers, interface):
            process.stop()
    for talker in clients:
        assert len(talker.echoed) == len(set(talker.echoed)), "a frame was echoed twice"
    assert "Traceback" not in stopping.output()
