"""``chanlite stats --watch`` as a real process: on a pseudo-terminal, on a pipe, with
``/metrics`` endpoints served over HTTP, and through a Redis outage."""

from __future__ import annotations

import asyncio
import fcntl
import http.server
import os
import pty
import re
import secrets
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.sync.client import connect

from chanlite import get_layer
from chanlite.stats_watch import HIDE_CURSOR, HOME, SHOW_CURSOR
from tests.conftest import private_redis_servers, require_redis

from .server import ROOT, free_port, run_cli, serve

SECRET = {"CHANLITE_SECRET_KEY": "stats-watch-tests-secret-key"}
#: How long any one awaited piece of output may take to appear.
WITHIN = 20.0
#: Run the command in argv[1:] as a terminal's foreground job, as a shell would: in a
#: session of its own whose controlling terminal is its stdin, so that a Ctrl-C typed
#: on that terminal is a SIGINT to it.
FOREGROUND = (
    "import fcntl, os, sys, termios;"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0);"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)

#: The size of the pseudo-terminal.
ROWS, COLUMNS = 50, 160
#: The environment of a process on it: without COLUMNS and LINES, which would override
#: its size (the C environment of a pytest process can carry them, exported by readline).
TERMINAL_ENV = {
    name: value for name, value in os.environ.items() if name not in ("COLUMNS", "LINES")
}

type Blocks = list[list[str]]


def redis_url() -> str:
    """A layer URL on the shared test Redis, under a prefix of this test's own."""
    require_redis()
    return f"redis://127.0.0.1:6379/14?prefix=watch{secrets.token_hex(6)}"


def send(url: str, channel: str, count: int) -> None:
    """Send ``count`` messages to ``channel`` on the layer at ``url``."""

    async def sending() -> None:
        layer = get_layer(url)
        try:
            for n in range(count):
                await layer.send(channel, {"n": n})
        finally:
            await layer.aclose()

    asyncio.run(sending())


def flush(url: str) -> None:
    async def flushing() -> None:
        layer = get_layer(url)
        try:
            await layer.flush()
        finally:
            await layer.aclose()

    asyncio.run(flushing())


def read_until(fd: int, seen: bytearray, done: Callable[[bytes], bool]) -> None:
    """Read ``fd`` into ``seen`` until ``done(seen)``; fail after :data:`WITHIN`
    seconds, or when the writer has gone."""
    deadline = time.monotonic() + WITHIN
    while not done(bytes(seen)):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"not seen within {WITHIN}s; the output ends with {bytes(seen[-1500:])!r}")
        if select.select([fd], [], [], remaining)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: every copy of the terminal's other end is closed
                chunk = b""
            if not chunk:
                pytest.fail(f"the output ended; it ends with {bytes(seen[-1500:])!r}")
            seen += chunk


def read_rest(fd: int, seen: bytearray) -> None:
    """Read what is left in ``fd`` once its writer has exited."""
    while select.select([fd], [], [], WITHIN)[0]:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        seen += chunk


@pytest.mark.redis
def test_on_a_terminal_redraws_in_place_and_ends_on_ctrl_c() -> None:
    url = redis_url()
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    command = ["stats", "--watch", "--interval", "0.2", "--layer", url]
    process = subprocess.Popen(
        [sys.executable, "-c", FOREGROUND, "-m", "chanlite", *command],
        cwd=ROOT,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        env=TERMINAL_ENV,
    )
    os.close(terminal)  # the child's copies remain: reading fails once it has exited
    seen = bytearray()
    try:
        read_until(controller, seen, lambda out: b"total (0 channels)" in out)
        send(url, "watched", 3)
        read_until(controller, seen, lambda out: re.search(rb"\n  watched +3 ", out) is not None)
        os.write(controller, b"\x03")  # Ctrl-C, typed on the terminal
        assert process.wait(timeout=WITHIN) == 0
        read_rest(controller, seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
        flush(url)
    output = bytes(seen)
    assert b"Traceback" not in output, output
    assert output.startswith(HIDE_CURSOR.encode()), output[:100]
    assert output.count(HOME.encode()) >= 2  # redrawn, not scrolled
    assert f"every 0.2s  {url}".encode() in output
    assert SHOW_CURSOR.encode() in output[output.rindex(b"watched") :]


def start_watch(*args: str) -> subprocess.Popen[bytes]:
    """``chanlite stats --watch ARGS`` with its output to a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "chanlite", "stats", "--watch", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def blocks(output: bytes) -> Blocks:
    """The complete refreshes in plain ``output``, as lists of lines."""
    return [block.splitlines() for block in output.decode().split("\n\n")[:-1]]


@contextmanager
def watching(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], bytearray]]:
    """A watch writing to a pipe, and its output as it is read; SIGINT at the end
    (the process is killed if the test failed before)."""
    process = start_watch(*args)
    seen = bytearray()
    try:
        yield process, seen
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def wait_for_blocks(
    process: subprocess.Popen[bytes], seen: bytearray, done: Callable[[Blocks], bool]
) -> Blocks:
    assert process.stdout is not None
    read_until(process.stdout.fileno(), seen, lambda out: done(blocks(out)))
    return blocks(bytes(seen))


def stop(process: subprocess.Popen[bytes], seen: bytearray) -> tuple[int, bytes, bytes]:
    """SIGINT the watch; its exit code, all its output, and its stderr."""
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=WITHIN)
    return process.returncode, bytes(seen) + rest, errors


@pytest.mark.redis
def test_on_a_pipe_prints_plain_blocks_and_ends_on_sigint() -> None:
    url = redis_url()
    send(url, "watched", 2)
    try:
        with watching("--interval", "0.2", "--layer", url) as (process, seen):
            found = wait_for_blocks(process, seen, lambda found: len(found) >= 2)
            code, output, errors = stop(process, seen)
    finally:
        flush(url)
    assert code == 0, errors
    assert b"Traceback" not in errors
    assert b"\x1b" not in output
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    for block in found[:2]:
        assert re.fullmatch(rf"{stamp}  every 0\.2s  {re.escape(url)}", block[0]), block
        assert block[2].split()[:2] == ["watched", "2"], block
    assert found[0][2].split()[2] == "-"  # no rate before a second reading
    assert found[1][2].split()[2] == "+0.0"


class MetricsHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``/metrics`` whose counters grow at ``rate`` per second of real time,
    from 10000 (so that a value shown as a rate cannot be a raw count)."""

    connections = 0
    rate = 0.0
    started = time.monotonic()

    def do_GET(self) -> None:
        count = 10000 + self.rate * (time.monotonic() - self.started)
        half = count / 2  # one series per label, summed by the watch
        body = (
            "# TYPE chanlite_websocket_connections_open gauge\n"
            f"chanlite_websocket_connections_open {self.connections}\n"
            "# TYPE chanlite_websocket_frames_received_total counter\n"
            f"chanlite_websocket_frames_received_total {count}\n"
            "# TYPE chanlite_messages_sent_total counter\n"
            f'chanlite_messages_sent_total{{channel="websocket.receive"}} {half}\n'
            f'chanlite_messages_sent_total{{channel="reply"}} {half}\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # no request lines in the test output


@contextmanager
def metrics_server(connections: int, rate: float) -> Iterator[str]:
    """An HTTP server in a thread whose ``/metrics`` reports ``connections`` and
    counters growing at ``rate``; yields its URL."""
    handler = type(
        "Handler",
        (MetricsHandler,),
        {"connections": connections, "rate": rate, "started": time.monotonic()},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def value(block: list[str], label: str) -> str:
    """The value shown on ``block``'s line for ``label``."""
    [line] = [line for line in block if line.startswith(label + " ")]
    return line.split()[-1]


def rate(block: list[str], label: str) -> float:
    """The rate shown on ``block``'s line for ``label``; 0 for none yet (``-``)."""
    shown = value(block, label)
    return 0.0 if shown == "-" else float(shown)


def test_metrics_endpoints_give_connections_and_rates(tmp_path: Path) -> None:
    layer = f"sqlite:///{tmp_path / 'layer.db'}"
    with metrics_server(3, 30.0) as first, metrics_server(4, 20.0) as second:
        args = ("--interval", "0.5", "--layer", layer, "--metrics", first, "--metrics", second)
        with watching(*args) as (process, seen):
            found = wait_for_blocks(process, seen, lambda found: len(found) >= 2)
            code, _, errors = stop(process, seen)
    assert code == 0, errors
    assert value(found[0], "open connections") == "7"
    assert value(found[0], "frames received/s") == "-"  # one scrape: no rate yet
    assert value(found[1], "open connections") == "7"
    # 30/s + 20/s; the margin is for the time between a scrape and its reading.
    assert 25 <= float(value(found[1], "frames received/s")) <= 100, found[1]
    assert 25 <= float(value(found[1], "messages sent/s")) <= 100, found[1]
    assert value(found[1], "messages received/s") == "0.0"
    assert not [line for line in found[1] if line.startswith("cannot read")]


def test_an_endpoint_that_fails_is_one_line_and_the_view_goes_on(tmp_path: Path) -> None:
    layer = f"sqlite:///{tmp_path / 'layer.db'}"
    nowhere = f"http://127.0.0.1:{free_port()}/metrics"
    with metrics_server(5, 10.0) as working:
        args = ("--interval", "0.2", "--layer", layer, "--metrics", nowhere, "--metrics", working)
        with watching(*args) as (process, seen):
            found = wait_for_blocks(process, seen, lambda found: len(found) >= 3)
            code, _, errors = stop(process, seen)
    assert code == 0, errors
    for block in found[:3]:
        failing = [line for line in block if line.startswith("cannot read")]
        assert failing == [f"cannot read {nowhere}: [Errno 111] Connection refused"], block
        assert value(block, "open connections") == "5"
    assert float(value(found[2], "frames received/s")) > 0


def test_the_metrics_of_a_served_app(tmp_path: Path) -> None:
    layer = f"sqlite:///{tmp_path / 'layer.db'}"
    with serve("tests.apps.basic:routes", "--metrics", "--layer", layer, env=SECRET) as served:
        args = ("--interval", "0.3", "--layer", layer, "--metrics", f"{served.http}/metrics")
        with connect(f"{served.ws}/echo/") as ws, watching(*args) as (process, seen):
            wait_for_blocks(process, seen, lambda found: _shows_connections(found, "1"))
            for number in range(10):
                ws.send(f"frame {number}")
                assert ws.recv(timeout=WITHIN) == f"frame {number}"
            found = wait_for_blocks(process, seen, lambda found: _shows_frames(found))
            code, _, errors = stop(process, seen)
    assert code == 0, errors
    echoed = next(block for block in found if rate(block, "frames received/s") > 0)
    assert rate(echoed, "frames sent/s") > 0
    assert not [line for line in found[-1] if line.startswith("cannot read")]


def _shows_connections(found: Blocks, connections: str) -> bool:
    return bool(found) and value(found[-1], "open connections") == connections


def _shows_frames(found: Blocks) -> bool:
    return any(rate(block, "frames received/s") > 0 for block in found)


def test_a_layer_outage_is_one_line_and_the_watch_goes_on() -> None:
    with private_redis_servers() as [server]:
        url = f"{server.url}?prefix=watch"
        send(url, "watched", 1)
        with watching("--interval", "0.2", "--layer", url) as (process, seen):
            wait_for_blocks(process, seen, lambda found: len(found) >= 1)
            server.kill()
            wait_for_blocks(process, seen, lambda found: _outage(found[-1]))
            server.start()  # empty again: nothing persists
            send(url, "watched", 2)
            found = wait_for_blocks(process, seen, lambda found: _depth(found[-1]) == "2")
            code, _, errors = stop(process, seen)
    assert code == 0, errors
    assert b"Traceback" not in errors
    outage = next(block for block in found if _outage(block))
    assert outage[1].startswith(f"layer error: Redis at 127.0.0.1:{server.port}/0: "), outage


def _outage(block: list[str]) -> bool:
    return len(block) > 1 and block[1].startswith("layer error: ")


def _depth(block: list[str]) -> str | None:
    rows = [line.split() for line in block if line.startswith("  watched ")]
    return rows[0][1] if rows else None


def test_interval_must_be_a_positive_number(tmp_path: Path) -> None:
    layer = f"sqlite:///{tmp_path / 'layer.db'}"
    result = run_cli("stats", "--watch", "--interval", "0", "--layer", layer)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "chanlite stats: error: argument --interval: expected a positive number of seconds, got '0'"
    )


def test_watch_options_need_watch(tmp_path: Path) -> None:
    layer = f"sqlite:///{tmp_path / 'layer.db'}"
    result = run_cli("stats", "--interval", "2", "--layer", layer)
    assert result.returncode == 2
    assert result.stderr == "chanlite: error: --interval and --metrics go with --watch\n"
