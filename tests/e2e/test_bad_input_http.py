"""The bad-input matrix, part 2: bad HTTP requests and handshakes, HTTP consumers
that reply twice or never, and bad session values (see ``test_bad_input.py``)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from chanlite.sessions import SESSION_COOKIE
from chanlite.sessions.session import HTTP_SESSION_TTL, new_session_key, sign_session_key
from tests.apps.accounts import SECRET_KEY as ACCOUNTS_SECRET_KEY

from .test_bad_input import (
    MIB,
    PATIENCE,
    RawSocket,
    Server,
    assert_one_line,
    lines_with,
    module_server,
)

pytestmark = pytest.mark.anyio

#: Largest request line plus headers ``chanlite serve`` reads (``chanlite._uvicorn``).
HEAD_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from module_server(tmp_path_factory)


def raw_request(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection and return the response's status line;
    ``b""`` if the server closed the connection before the whole request was sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        try:
            sock.sendall(request)
            response = b""
            while b"\r\n" not in response:
                data = sock.recv(4096)
                if not data:
                    break
                response += data
        except (BrokenPipeError, ConnectionResetError):
            return b""  # refused before it was all read: what a limit is for
    return response.split(b"\r\n")[0]


def request_head(path: bytes = b"/hello/", headers: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n"


# -- headers, paths, query strings -------------------------------------------------------


@pytest.mark.parametrize("path", [b"/hello/", b"/debug"], ids=["consumer", "host app"])
@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * (2 * HEAD_LIMIT) + b"\r\n",
        b"".join(b"X-Many-%d: v\r\n" % number for number in range(20_000)),
    ],
    ids=["one huge header", "20,000 headers"],
)
async def test_headers_over_the_limit_are_refused_with_431(
    server: Server, path: bytes, headers: bytes
) -> None:
    mark = server.mark()
    status = raw_request(server.port, request_head(path, headers))
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    log = await server.wait_log("with 431", mark)
    await server.still_serves()
    assert "request line and headers are over 65536 bytes" in assert_one_line(log, "431")


async def test_endless_headers_are_not_read_into_memory(server: Server) -> None:
    # uvicorn's httptools parser has no limit: 10 clients sending 32 MiB of headers
    # each made the server hold 320 MiB. chanlite serve stops reading each at 64 KiB.
    mark = server.mark()
    baseline = server.reset_peak()
    huge = request_head(headers=b"X-Big: " + b"a" * (32 * MIB) + b"\r\n")
    await asyncio.gather(*(asyncio.to_thread(raw_request, server.port, huge) for _ in range(10)))
    await server.wait_log("with 431", mark, count=10)
    await server.still_serves()
    assert server.memory("VmHWM") - baseline < 64 * MIB


async def test_handshakes_over_websockets_limits_are_answered(server: Server) -> None:
    # websockets refuses handshakes with lines over 8 KiB or more than 128 headers,
    # but uvicorn never sent its answer: the client waited forever.
    mark = server.mark()
    too_long = RawSocket(server.port, "/echo/" + "p" * 10_000)
    too_long.close()
    # The reason phrase is Python's (http.HTTPStatus): "URI Too Long" from 3.13 on.
    assert too_long.status_line in (
        b"HTTP/1.1 414 Request-URI Too Long",
        b"HTTP/1.1 414 URI Too Long",
    )
    many = b"".join(b"X-Many-%d: v\r\n" % number for number in range(200))
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        sock.sendall(
            b"GET /echo/ HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + many
            + b"\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    log = await server.wait_log("TooManyHeaders", mark)
    await server.still_serves()
    assert_one_line(log, "refused a WebSocket handshake: RequestLineTooLong")
    assert_one_line(log, "refused a WebSocket handshake: TooManyHeaders")


async def test_a_path_of_100_kb(server: Server) -> None:
    # httptools cannot parse a URL of 64 KiB or more: uvicorn answers 400 and logs
    # one warning. A path just under that reaches the consumer whole.
    mark = server.mark()
    status = raw_request(server.port, request_head(b"/hello/" + b"p" * 100_000))
    assert status == b"HTTP/1.1 400 Bad Request"
    log = await server.wait_log("Invalid HTTP request received.", mark)
    assert_one_line(log, "Invalid HTTP request received.")
    async with httpx.AsyncClient(base_url=server.http) as client:
        response = await client.get("/hello/" + "p" * 50_000)
    assert (response.status_code, response.text) == (200, "path:50007 query:")
    await server.still_serves()


async def test_invalid_percent_escapes_in_the_query_string(server: Server) -> None:
    # The query string travels as it came (``query_string`` is the raw text); what
    # it decodes to is the consumer's business. Raw non-ASCII bytes break HTTP
    # itself: uvicorn answers 400 with one warning.
    mark = server.mark()
    query = "a=%zz&b=%&c=%ff%fe&session_key=%G1"
    async with httpx.AsyncClient(base_url=server.http) as client:
        response = await client.get(f"/hello/?{query}")
    assert (response.status_code, response.text) == (200, f"path:7 query:{query}")
    async with connect(f"{server.ws}/echo/?{query}") as ws:
        await ws.send("escaped")
        assert await ws.recv() == "escaped"
    assert raw_request(server.port, request_head(b"/hello/?a=\xff\xfe")) == (
        b"HTTP/1.1 400 Bad Request"
    )
    log = await server.wait_log("Invalid HTTP request received.", mark)
    await server.still_serves()
    assert_one_line(log, "Invalid HTTP request received.")


# -- HTTP consumers ------------------------------------------------------------------------


async def test_an_http_consumer_that_replies_twice(server: Server) -> None:
    # The first complete reply is the response; the second finds the request gone
    # and is dropped silently, like any reply to a reply channel that is gone.
    mark = server.mark()
    async with httpx.AsyncClient(base_url=server.http) as client:
        first = await client.get("/twice/")
        again = await client.get("/twice/")
    assert [(r.status_code, r.text) for r in (first, again)] == [(200, "first")] * 2
    await server.still_serves()
    log = server.log(mark)
    assert not lines_with(log, "ERROR") and "Traceback" not in log, log


async def test_an_http_consumer_that_never_replies(server: Server) -> None:
    # 503 after http_timeout (the status is test_serve's): one warning line naming
    # the request, and the server goes on.
    mark = server.mark()
    async with httpx.AsyncClient(base_url=server.http) as client:
        response = await client.get("/never/")
    assert response.status_code == 503
    log = await server.wait_log("within http_timeout", mark)
    await server.still_serves()
    assert_one_line(log, "no reply to GET /never/ within http_timeout; 503")


# -- session values (test_accounts.py covers tampered, garbage and empty cookies) ---------


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from module_server(tmp_path_factory, "tests.apps.accounts:app")


def bad_session_value(kind: str, monkeypatch: pytest.MonkeyPatch) -> str:
    if kind == "expired":  # signed with the app's key, before the session lifetime
        signed_at = time.time() - HTTP_SESSION_TTL - 60
        with monkeypatch.context() as patch:
            patch.setattr(time, "time", lambda: signed_at)
            return sign_session_key(new_session_key(), ACCOUNTS_SECRET_KEY)
    if kind == "signed with another key":
        return sign_session_key(new_session_key(), "another-apps-secret-key-0123456789")
    return "%zz%ff.%G1"  # garbage, with bad percent-escapes


@pytest.mark.parametrize("carrier", ["cookie", "query"])
@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("expired", "SignatureExpired"),
        ("signed with another key", "BadTimeSignature"),
        ("garbage", "BadSignature"),
    ],
)
async def test_bad_session_values_count_as_no_session(
    accounts: Server, kind: str, error: str, carrier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = bad_session_value(kind, monkeypatch)
    mark = accounts.mark()
    url, headers = f"{accounts.ws}/http-session/", {}
    if carrier == "cookie":
        headers = {"Cookie": f"{SESSION_COOKIE}={value}"}
    else:
        url += f"?session_key={value}"
    async with connect(url, additional_headers=headers) as ws:
        assert await ws.recv() == "none"
    log = await accounts.wait_log("ignored a session value", mark)
    assert assert_one_line(log, "ignored a session value").endswith(error)
    # chanlite never logs the value (uvicorn's access log shows the query string).
    assert value not in "\n".join(lines_with(log, "chanlite."))


async def test_a_valid_signature_of_an_unknown_session_is_no_session(accounts: Server) -> None:
    mark = accounts.mark()
    value = sign_session_key(new_session_key(), ACCOUNTS_SECRET_KEY)
    async with connect(f"{accounts.ws}/http-session/?session_key={value}") as ws:
        assert await ws.recv() == "none"
    async with httpx.AsyncClient() as client:
        response = await client.get(
            f"{accounts.http}/whoami", headers={"Cookie": f"{SESSION_COOKIE}={value}"}
        )
    assert response.text == "anonymous"
    log = accounts.log(mark)
    assert "Traceback" not in log and not lines_with(log, "ERROR"), log
