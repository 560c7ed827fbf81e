"""Suite ``redis-clients``: which Redis client carries the layer's data path.

chanlite talks to Redis on its own lean connection
(:class:`chanlite.layers._resp.RespConnection`: one pipelined connection per server,
the commands of one loop turn in one write, replies parsed by ``hiredis.Reader``),
and leaves Sentinel and a cluster's topology to redis-py. That holds only while
redis-py would cost more than 10% on the data path; this suite measures it, on the
command shapes the ``redis://`` layer really sends, with rounds interleaved so that
background load hits both clients alike:

* **chanlite** — ``RespConnection``, as the layer uses it.
* **redis-py** — ``redis.asyncio.Redis`` at its defaults (its hiredis parser, since
  hiredis is installed with chanlite); a batch is a ``pipeline(transaction=False)``.

Shapes: a SET+GET round trip; the send script (EVALSHA) one call at a time, 100 in one
batch (one write; one pipeline for redis-py), and from 100 concurrent callers in one
loop turn (what the layer's senders do; redis-py takes a pooled connection per
caller); and the receive read, ``BLMPOP ... COUNT 1000`` pipelined with ``TIME`` as
the reader sends it, on 1,000 waiting entries of about 100 bytes, 1 KB and 10 KB
(filled untimed before each read). Ratio = chanlite's median / redis-py's median: a
ratio above 1.10 on the layer's shapes keeps the data path on chanlite's connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import redis.asyncio as redis

from chanlite._codec import encode
from chanlite.layers._resp import RespConnection, open_connection
from chanlite.layers.redis.scripts import GROUP_KEY, MEMBERSHIP_KEY, QUEUE_KEY, SEND_SCRIPT

from .core import DEFAULT_WARMUP, Config, Row, Sample, Stats, Target, check, run_round
from .redis_server import RedisProcess, start_redis, stop_redis
from .ws_servers import Cpus

NAME = "redis-clients"
TITLE = "Redis clients: chanlite's RespConnection vs redis-py, on the layer's commands"
BASELINE = "redis-py"
DESCRIPTION = (
    "The layer's command shapes on one private redis-server (no persistence, pinned to "
    "the CPU the benchmark does not run on), each client's rounds interleaved with the "
    "other's. *chanlite*: its `RespConnection` (one pipelined connection, one write per "
    "loop turn, replies parsed by `hiredis.Reader`). *redis-py*: `redis.asyncio.Redis` "
    "at its defaults (hiredis parser), a batch is a `pipeline(transaction=False)`, "
    "concurrent callers take pooled connections. Send script = the layer's `send` Lua "
    "script storing one message. Ratio = chanlite median / redis-py median; above 1.10 "
    "on the layer's shapes, the data path stays on chanlite's connection."
)

#: The rule the data path's client is chosen by: redis-py carries it unless it is more
#: than 10% slower; each row holds while chanlite's own connection is that much faster.
LEAN_TARGET = Target(minimum=1.10, on_ratio=True)
PREFIX = "bench-clients"
#: The database every round uses (flushed first) on the private server.
DB = 10
PAYLOAD = encode({"type": "websocket.send", "text": "hello world", "reply_channel": "bench!r"})
#: Send-script arguments after the pairs' prefixes: expiry ms, queue ttl ms, capacity
#: (large, so no queue fills and every call does the same work).
SEND_ARGS = (60_000, 86_400_000, 10**9)
BATCH = 100
READ_COUNT = 1_000
#: Server-side bound of the blocking read; entries are waiting, so it never blocks.
BLOCK_SECONDS = 5
REPLY_TIMEOUT = 30.0

Command = tuple[Any, ...]


# -- clients ----------------------------------------------------------------------


class Client:
    """One way of talking to Redis: send commands together, get their replies."""

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` together (one write); their replies, in order."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close the connections."""
        raise NotImplementedError


class RespClient(Client):
    """chanlite's ``RespConnection``."""

    def __init__(self, connection: RespConnection) -> None:
        self.connection = connection

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        return await self.connection.execute(commands)

    async def aclose(self) -> None:
        self.connection.close()


class RedisPyClient(Client):
    """redis-py: one command as is, several as a non-transactional pipeline."""

    def __init__(self, client: redis.Redis) -> None:
        self.client: Any = client  # redis-py is partly untyped: through Any for mypy

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        if len(commands) == 1:
            return [await self.client.execute_command(*commands[0])]
        pipe = self.client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def aclose(self) -> None:
        await self.client.aclose()


Opener = Callable[[], Awaitable[Client]]


def openers(server: RedisProcess) -> dict[str, Opener]:
    """Each client under test, by label; chanlite's first (the baseline)."""
    host, port = "127.0.0.1", server.port

    async def chanlite() -> Client:
        connection = await open_connection(
            host, port, db=DB, connect_timeout=5.0, reply_timeout=REPLY_TIMEOUT
        )
        return RespClient(connection)

    async def redis_py() -> Client:
        pool = redis.ConnectionPool(host=host, port=port, db=DB, max_connections=BATCH + 10)
        client = redis.Redis.from_pool(pool)
        await client.ping()  # connects
        return RedisPyClient(client)

    return {"chanlite": chanlite, "redis-py": redis_py}


# -- shapes -----------------------------------------------------------------------


def queue_key(index: int) -> str:
    return QUEUE_KEY.format(prefix=PREFIX, name=f"bench.q{index}")


def send_command(index: int) -> Command:
    """The layer's send of one message to queue ``index`` (see ``SendingLayer._store``)."""
    prefixes = [
        key.format(prefix=PREFIX, name="") for key in (QUEUE_KEY, GROUP_KEY, MEMBERSHIP_KEY)
    ]
    return (
        "EVALSHA",
        SEND_SCRIPT.sha,
        1,
        queue_key(index),
        *prefixes,
        *SEND_ARGS,
        "bench.q",
        PAYLOAD,
    )


async def get_set(client: Client, count: int) -> Sample:
    """SET then GET, each awaited: ``count`` round trips."""
    value = b""
    start = time.perf_counter()
    for index in range(count // 2):
        await client.batch([("SET", "bench-clients:k", index)])
        [value] = await client.batch([("GET", "bench-clients:k")])
    sample = Sample.since(start, count // 2 * 2)
    check(int(value) == count // 2 - 1, f"GET returned {value!r}")
    return sample


async def send_single(client: Client, count: int) -> Sample:
    """The send script, one call at a time."""
    command = send_command(0)
    stored = 0
    start = time.perf_counter()
    for _ in range(count):
        [reply] = await client.batch([command])
        stored += reply
    sample = Sample.since(start, count)
    check(stored == count, f"stored {stored} of {count}")
    return sample


async def send_batched(client: Client, count: int) -> Sample:
    """The send script, :data:`BATCH` calls (to as many queues) in one batch."""
    commands = [send_command(index) for index in range(BATCH)]
    stored = 0
    start = time.perf_counter()
    for _ in range(count // BATCH):
        stored += sum(await client.batch(commands))
    sample = Sample.since(start, count // BATCH * BATCH)
    check(stored == sample.count, f"stored {stored} of {sample.count}")
    return sample


async def send_concurrent(client: Client, count: int) -> Sample:
    """The send script from :data:`BATCH` concurrent callers, one call each."""
    commands = [send_command(index) for index in range(BATCH)]
    stored = 0
    start = time.perf_counter()
    for _ in range(count // BATCH):
        replies = await asyncio.gather(*(client.batch([command]) for command in commands))
        stored += sum(reply for [reply] in replies)
    sample = Sample.since(start, count // BATCH * BATCH)
    check(stored == sample.count, f"stored {stored} of {sample.count}")
    return sample


async def blocking_read(client: Client, reads: int, *, filler: Client, size: int) -> Sample:
    """``BLMPOP`` + ``TIME`` (as ``Reader._pop``) of :data:`READ_COUNT` waiting entries
    of about ``size`` bytes; filling the queue is untimed. Counts entries."""
    key = queue_key(0)
    entry = b"9999999999999 bench.q " + PAYLOAD.ljust(size, b" ")
    read = ("BLMPOP", BLOCK_SECONDS, 1, key, "LEFT", "COUNT", READ_COUNT)
    seconds, taken = 0.0, 0
    for _ in range(reads):
        await filler.batch([("RPUSH", key, *[entry] * READ_COUNT)])
        start = time.perf_counter()
        reply, _clock = await client.batch([read, ("TIME",)])
        seconds += time.perf_counter() - start
        taken += len(reply[1])
        check(reply[1][-1] == entry, "BLMPOP returned another entry")
    check(taken == reads * READ_COUNT, f"read {taken} of {reads * READ_COUNT}")
    return Sample(taken, seconds)


@dataclass(frozen=True)
class Shape:
    """One command shape: its row name, unit and timed body."""

    name: str
    unit: str
    body: Callable[[Client], Awaitable[Sample]]


def shapes(config: Config, filler: Client) -> list[Shape]:
    """Every shape, sized for a normal or quick run."""
    trips = config.size(full=6_000, quick=600)
    sends = config.size(full=6_000, quick=600)
    many = config.size(full=30_000, quick=3_000)
    reads = config.size(full=40, quick=5)
    large_reads = config.size(full=6, quick=2)  # a 10 MB reply
    return [
        Shape("SET+GET round trips", "commands/s", partial(get_set, count=trips)),
        Shape("send script, 1 per call", "calls/s", partial(send_single, count=sends)),
        Shape(f"send script, {BATCH} per batch", "calls/s", partial(send_batched, count=many)),
        Shape(
            f"send script, {BATCH} concurrent callers",
            "calls/s",
            partial(send_concurrent, count=many),
        ),
        Shape(
            f"BLMPOP of {READ_COUNT} entries (~100 B)",
            "entries/s",
            partial(blocking_read, reads=reads, filler=filler, size=100),
        ),
        Shape(
            f"BLMPOP of {READ_COUNT} entries (~1 KB)",
            "entries/s",
            partial(blocking_read, reads=reads, filler=filler, size=1_000),
        ),
        Shape(
            f"BLMPOP of {READ_COUNT} entries (~10 KB)",
            "entries/s",
            partial(blocking_read, reads=large_reads, filler=filler, size=10_000),
        ),
    ]


# -- running ----------------------------------------------------------------------


async def run(config: Config) -> list[Row]:
    """Measure every shape on every client, rounds interleaved."""
    server = await start_redis(Cpus.pick().load)
    try:
        return await measure_all(server, config)
    finally:
        await stop_redis(server)


async def measure_all(server: RedisProcess, config: Config) -> list[Row]:
    clients = openers(server)
    filler = await clients["chanlite"]()
    try:
        await filler.batch([("SCRIPT", "LOAD", SEND_SCRIPT.source)])
        rows: list[Row] = []
        for shape in shapes(config, filler):
            rounds = {label: fresh(server, opener, shape) for label, opener in clients.items()}
            stats = await interleave(rounds, config)
            rows.append(
                Row(shape.name, shape.unit, stats["chanlite"], stats["redis-py"], LEAN_TARGET)
            )
        return rows
    finally:
        await filler.aclose()


def fresh(server: RedisProcess, opener: Opener, shape: Shape) -> Callable[[], Awaitable[Sample]]:
    """A round of ``shape``: flush, connect (untimed), run, close."""

    async def round_fn() -> Sample:
        await server.flush_db(DB)
        client = await opener()
        try:
            return await shape.body(client)
        finally:
            await client.aclose()

    return round_fn


async def interleave(
    rounds: dict[str, Callable[[], Awaitable[Sample]]], config: Config
) -> dict[str, Stats]:
    """Warm up each, then run the measured rounds of every client in turn, starting
    each turn at the next client so none always goes first."""
    labels = list(rounds)
    for _ in range(max(config.warmup, DEFAULT_WARMUP)):
        for label in labels:
            await run_round(rounds[label])
    rates: dict[str, list[float]] = {label: [] for label in labels}
    for turn in range(config.rounds):
        for offset in range(len(labels)):
            label = labels[(turn + offset) % len(labels)]
            rates[label].append((await run_round(rounds[label])).rate)
    return {label: Stats(tuple(values)) for label, values in rates.items()}
