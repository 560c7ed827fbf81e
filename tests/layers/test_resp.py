"""The RESP connection under the Redis layer: packing, parsing, pipelining, failure.

Parsing is checked on byte strings, pipelining and failures against the shared test
server (127.0.0.1:6379) or a redis-server of our own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chanlite.layers._resp import RespConnection, open_connection, pack

from ..conftest import private_redis_servers, require_redis, require_redis_server
from .redis_helpers import RedisServer

PATIENCE = 5.0
#: The shared test server's database for these tests.
TEST_DB = 14


@contextlib.asynccontextmanager
async def connected(
    port: int = 6379, *, db: int = 0, reply_timeout: float = PATIENCE
) -> AsyncIterator[RespConnection]:
    """A connection to the redis-server on ``port``, closed afterwards."""
    connection = await open_connection(
        "127.0.0.1", port, db=db, connect_timeout=PATIENCE, reply_timeout=reply_timeout
    )
    try:
        yield connection
    finally:
        connection.close()


@contextlib.contextmanager
def private_server() -> Iterator[RedisServer]:
    """A redis-server of our own, killed afterwards."""
    with private_redis_servers() as [server]:
        yield server


async def parsed(data: bytes, count: int = 1) -> list[object]:
    """The replies to ``count`` commands when ``data`` arrives one byte at a time."""
    connection = RespConnection(PATIENCE)  # never connected: nothing is written
    replies = connection.execute([("PING",)] * count)
    for index in range(len(data)):
        assert not replies.done()
        connection.data_received(data[index : index + 1])
    return await replies


def test_commands_pack_as_arrays_of_bulk_strings():
    assert pack([("SET", "k", b"v\r\n", 12), ("TIME",)]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$2\r\n12\r\n*1\r\n$4\r\nTIME\r\n"
    )


def test_packing_refuses_what_is_not_a_string_or_number():
    with pytest.raises(TypeError, match="must be str, bytes or a number"):
        pack([("SET", "k", None)])
    with pytest.raises(TypeError):
        pack([("SET", "k", True)])


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"+OK\r\n", b"OK"),
        (b":-42\r\n", -42),
        (b"$5\r\nhe\r\nl\r\n", b"he\r\nl"),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*0\r\n", []),
        (b"*2\r\n*2\r\n:1\r\n$1\r\na\r\n$0\r\n\r\n", [[1, b"a"], b""]),
        (b"_\r\n", None),
        (b"#t\r\n", True),
        (b",1.5\r\n", 1.5),
        (b"%1\r\n+k\r\n:1\r\n", {b"k": 1}),
        (b"#f\r\n", False),  # a reply, not "wait for more"
    ],
)
@pytest.mark.anyio
async def test_replies_parse_whole_and_split_anywhere(data, reply):
    connection = RespConnection(PATIENCE)
    whole = connection.execute([("PING",)])
    connection.data_received(data)
    assert await whole == [reply]
    assert await parsed(data) == [reply]


@pytest.mark.anyio
async def test_a_large_reply_in_many_pieces_is_read_whole():
    entries = [b"%05d" % n + b"x" * 10_000 for n in range(200)]
    data = b"*%d\r\n" % len(entries) + b"".join(
        b"$%d\r\n%b\r\n" % (len(entry), entry) for entry in entries
    )
    connection = RespConnection(PATIENCE)
    replies = connection.execute([("LRANGE", "k", 0, -1)])
    for start in range(0, len(data), 1460):  # one TCP segment at a time
        connection.data_received(data[start : start + 1460])
    assert await replies == [entries]


@pytest.mark.anyio
async def test_error_replies_become_exceptions_in_place_of_the_reply():
    data = b"-NOSCRIPT No matching script\r\n-ERR unknown command 'X'\r\n"
    script, plain = await parsed(data, count=2)
    assert isinstance(script, NoScriptError)
    assert type(plain) is ResponseError and str(plain) == "unknown command 'X'"


@pytest.mark.anyio
async def test_a_reply_of_an_unknown_type_breaks_the_connection():
    connection = RespConnection(PATIENCE)
    replies = connection.execute([("PING",), ("PING",)])
    connection.data_received(b"+OK\r\n?what\r\n")
    with pytest.raises(RedisConnectionError, match="unexpected reply"):
        await replies
    assert connection.broken


@pytest.mark.anyio
@pytest.mark.redis
async def test_commands_of_one_turn_go_out_together_and_replies_come_in_order():
    require_redis()
    async with connected(db=TEST_DB) as connection:
        assert connection.client_id > 0
        futures = [connection.execute([("ECHO", str(n)), ("PING",)]) for n in range(50)]
        replies = await asyncio.gather(*futures)
        assert replies == [[str(n).encode(), b"PONG"] for n in range(50)]
        (error,) = await connection.execute([("NO-SUCH-COMMAND",)])
        assert isinstance(error, ResponseError)
        assert await connection.execute([("PING",)]) == [b"PONG"]  # still usable


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_caller_that_left_does_not_shift_the_replies_of_others():
    require_redis()
    async with connected(db=TEST_DB) as connection:
        left = connection.execute([("ECHO", "left")])
        left.cancel()
        assert await connection.execute([("ECHO", "stayed")]) == [b"stayed"]


@pytest.mark.anyio
async def test_a_killed_server_fails_what_is_pending_and_breaks_the_connection():
    with private_server() as server:
        async with connected(server.port) as connection:
            blocked = connection.execute([("BLPOP", "nothing", 0)])
            server.kill()
            with pytest.raises(RedisConnectionError):
                await asyncio.wait_for(blocked, PATIENCE)
            assert connection.broken
            with pytest.raises(RedisConnectionError, match="connection lost"):
                connection.execute([("PING",)])


@pytest.mark.anyio
async def test_a_reply_overdue_past_the_reply_timeout_breaks_the_connection():
    with private_server() as server:
        async with connected(server.port, reply_timeout=0.2) as connection:
            # The server never answers a BLPOP with no timeout on an empty list.
            with pytest.raises(RedisTimeoutError, match="no reply"):
                await asyncio.wait_for(connection.execute([("BLPOP", "nothing", 0)]), PATIENCE)


@pytest.mark.anyio
async def test_nobody_listening_is_a_connection_error():
    require_redis_server()
    server = RedisServer()  # a free port, never started
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        async with connected(server.port):
            pass
