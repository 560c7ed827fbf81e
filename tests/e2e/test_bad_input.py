"""The bad-input matrix, part 1: the harness, and bad WebSocket frames.

Each row sends a real ``chanlite serve`` process (``tests/apps/bad_input.py``) a bad
input, then checks that the server keeps serving (a good client gets its echo),
that its log names the problem in one line (a client's mistake logs no traceback; a
consumer's error logs its traceback once: that is the app's bug), and, where a bad
input could make the server hold memory, that its RSS stays bounded. The other
parts are ``test_bad_input_*.py``; ``docs/reliability.md`` lists every row.

The server's output goes to a file that tests read while it runs (a pipe could fill
up and stall the server). Memory is read from ``/proc/<pid>/status``: ``VmHWM``, the
peak, after resetting it through ``/proc/<pid>/clear_refs``.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .server import ROOT, START_TIMEOUT, free_port

pytestmark = pytest.mark.anyio

#: The app every row runs against.
APP = "tests.apps.bad_input:app"
#: How long any one condition may take to come true.
PATIENCE = 15.0
MIB = 1024 * 1024
#: The limit on WebSocket frames (``max_frame_size``'s default).
FRAME_LIMIT = MIB


# -- the server ----------------------------------------------------------------------


@dataclass
class Server:
    """A running ``chanlite serve`` whose output goes to ``log_path``."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def mark(self) -> int:
        """Where the log ends now: pass it to :meth:`log` to read what comes after."""
        return self.log_path.stat().st_size

    def log(self, since: int = 0) -> str:
        """The server's output from ``since`` on."""
        with self.log_path.open("rb") as output:
            output.seek(since)
            return output.read().decode(errors="replace")

    async def wait_log(self, needle: str, since: int, count: int = 1) -> str:
        """Wait until ``needle`` occurs ``count`` times in the log after ``since``;
        return that part of the log."""
        found: list[str] = []

        def seen() -> bool:
            found[:] = [self.log(since)]
            return found[0].count(needle) >= count

        await wait_until(seen, f"{count} log line(s) with {needle!r}")
        return found[0]

    def memory(self, field: str = "VmRSS") -> int:
        """The server's ``VmRSS`` (or another ``/proc`` memory field) in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == field:
                return int(value.split()[0]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.process.pid}/status")

    def reset_peak(self) -> int:
        """Reset the server's peak RSS to its current RSS, which is returned."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        return self.memory()

    async def debug(self) -> dict[str, Any]:
        """What ``GET /debug`` reports (group sizes, sessions, tasks, ...)."""
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{self.http}/debug")
        assert response.status_code == 200
        report: dict[str, Any] = response.json()
        return report

    async def still_serves(self) -> None:
        """A good client gets its echo: the server carries on."""
        async with connect(f"{self.ws}/echo/") as ws:
            await ws.send("still here?")
            assert await ws.recv() == "still here?"

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM the server; its exit code (it is killed after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


@contextmanager
def serve_logged(target: str, log_path: Path, *args: str) -> Iterator[Server]:
    """``chanlite serve TARGET`` on a free port, its output in ``log_path``."""
    port = free_port()
    with log_path.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "chanlite", "serve", target, "--port", str(port), *args],
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, port, log_path)
    try:
        _wait_listening(server)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_listening(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"chanlite serve exited early:\n{server.log()}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)  # readiness poll, not a race: the port opens once
    raise RuntimeError("chanlite serve did not start listening in time")


def module_server(tmp_path_factory: pytest.TempPathFactory, target: str = APP) -> Iterator[Server]:
    """The body of each part's module-scoped ``server`` fixture."""
    log_path = tmp_path_factory.mktemp("bad-input") / "server.log"
    with serve_logged(target, log_path) as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from module_server(tmp_path_factory)


async def wait_until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it is true; fail saying ``what`` after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {PATIENCE:.0f}s waiting for {what}")
        await asyncio.sleep(0.02)


def lines_with(log: str, needle: str) -> list[str]:
    return [line for line in log.splitlines() if needle in line]


def assert_one_line(log: str, needle: str, *, traceback: bool = False) -> str:
    """The one log line with ``needle``; and a traceback only where one is allowed
    (a consumer's own error: exactly one)."""
    found = lines_with(log, needle)
    assert len(found) == 1, f"expected one line with {needle!r}:\n{log}"
    assert log.count("Traceback") == (1 if traceback else 0), log
    return found[0]


# -- raw WebSocket clients (for what client libraries refuse to send) ------------------


class RawSocket:
    """A WebSocket client over a plain TCP socket."""

    def __init__(self, port: int, path: str = "/echo/", *, receive_buffer: int = 0) -> None:
        self.sock = socket.socket()
        if receive_buffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(PATIENCE)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.buffer = b""
        self.status_line = self._read_until(b"\r\n\r\n").split(b"\r\n")[0]

    def send_frame(self, opcode: int, payload: bytes) -> None:
        """Send one masked frame, as a client must."""
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        repeated = (mask * (size // 4 + 1))[:size]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            size, "big"
        )
        self.sock.sendall(header + mask + masked)

    def read_frame(self) -> tuple[int, bytes]:
        """The next frame from the server: ``(opcode, payload)``."""
        head = self._read(2)
        opcode, size = head[0] & 0x0F, head[1] & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        return opcode, self._read(size)

    def read_until_close(self) -> tuple[int, int]:
        """Read frames up to the server's close: ``(frames before it, close code)``."""
        frames = 0
        while True:
            opcode, payload = self.read_frame()
            if opcode == 0x8:
                (code,) = struct.unpack("!H", payload[:2])
                return frames, code
            frames += 1

    def close(self) -> None:
        self.sock.close()

    def _read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("the server closed the connection")
            self.buffer += data
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _read_until(self, end: bytes) -> bytes:
        while end not in self.buffer:
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError("the server closed the connection")
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(end)
        return head


# -- rows: frames ------------------------------------------------------------------------


async def test_frames_over_the_limit_close_1009_without_being_buffered(server: Server) -> None:
    # One frame just over the limit is test_serve's; here 20 sockets send 8 MiB frames
    # at once. uvicorn refuses each on its header, so none is read into memory.
    mark = server.mark()
    baseline = server.reset_peak()

    async def oversized() -> int | None:
        async with connect(f"{server.ws}/echo/", max_size=None) as ws:
            try:
                await ws.send(b"x" * (8 * MIB))
                await ws.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
        return None

    codes = await asyncio.gather(*(oversized() for _ in range(20)))
    assert codes == [1009] * 20
    log = await server.wait_log("closed with 1009", mark, count=20)
    await server.still_serves()
    assert server.memory("VmHWM") - baseline < 40 * MIB  # 160 MiB were sent
    log = server.log(mark)
    assert len(lines_with(log, "a socket closed with 1009 (message too big)")) == 20, log
    assert "Traceback" not in log


async def test_invalid_utf8_in_a_text_frame_closes_1007(server: Server) -> None:
    mark = server.mark()
    raw = RawSocket(server.port)
    try:
        raw.send_frame(0x1, b"caf\xc3 \xff\xfe")
        assert raw.read_until_close() == (0, 1007)
    finally:
        raw.close()
    await server.wait_log("closed with 1007", mark)
    await server.still_serves()
    log = server.log(mark)
    assert "invalid frame data" in assert_one_line(log, "closed with 1007")
    # chanlite serve drops uvicorn's own report of it, a traceback.
    assert "Invalid UTF-8 sequence received from client" not in log


async def test_a_binary_frame_where_text_is_expected_fails_only_its_consumer(
    server: Server,
) -> None:
    # A binary frame's message has "bytes" and no "text": a consumer that reads
    # message["text"] raises KeyError, which is logged (the app's bug); the socket
    # stays open and its next text frame is answered.
    mark = server.mark()
    async with connect(f"{server.ws}/upper/") as ws:
        await ws.send(b"binary")
        await ws.send("text")
        assert await ws.recv() == "TEXT"
    async with connect(f"{server.ws}/echo/") as ws:
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"  # bytes come back as bytes
    log = await server.wait_log("KeyError: 'text'", mark)
    await server.still_serves()
    assert_one_line(log, "consumer tests.apps.bad_input.upper failed", traceback=True)


async def test_json_nested_10000_levels_fails_only_its_consumer(server: Server) -> None:
    mark = server.mark()
    async with connect(f"{server.ws}/json/") as ws:
        await ws.send("[" * 10_000 + "]" * 10_000)
        await ws.send("[1, 2, 3]")
        assert await ws.recv() == "items:3"
    log = await server.wait_log("RecursionError", mark)
    await server.still_serves()
    assert_one_line(log, "consumer tests.apps.bad_input.parse_json failed", traceback=True)


async def test_content_nested_too_deep_is_refused_with_type_error(server: Server) -> None:
    # orjson encodes at most 254 levels; deeper content is refused before it
    # reaches the layer, with a TypeError the consumer can catch.
    mark = server.mark()
    before = (await server.debug())["channels"].get("bad-input.sink", 0)
    async with connect(f"{server.ws}/nest/") as ws:
        for depth in ("10000", "300"):
            await ws.send(depth)
            refusal = str(await ws.recv())
            assert refusal.startswith("TypeError: ") and "nested" in refusal
        await ws.send("200")
        assert await ws.recv() == "sent"
    assert (await server.debug())["channels"].get("bad-input.sink", 0) == before + 1
    await server.still_serves()
    assert "Traceback" not in server.log(mark)


async def test_text_that_is_not_json_fails_only_its_consumer(server: Server) -> None:
    mark = server.mark()
    async with connect(f"{server.ws}/json/") as ws:
        await ws.send("{not json")
        await ws.send('{"a": 1}')
        assert await ws.recv() == "items:1"
    log = await server.wait_log("JSONDecodeError", mark)
    await server.still_serves()
    assert_one_line(log, "consumer tests.apps.bad_input.parse_json failed", traceback=True)
