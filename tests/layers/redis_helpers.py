"""Helpers for the Redis layer tests: private redis-server processes, and a receiver
run as a subprocess (``python -m tests.layers.redis_helpers receive URL PREFIX CHANNEL``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson

# How long a started redis-server may take to answer PING.
START_PATIENCE = 10.0
#: The message that tells a subprocess receiver to stop.
STOP = {"stop": True}


#: The checkout's root, where ``python -m tests.layers.redis_helpers`` runs.
REPO_ROOT = str(Path(__file__).resolve().parents[2])


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # NOAUTH: it has a password
    except OSError:
        return False


class RedisServer:
    """A redis-server of our own on a free port, without persistence."""

    def __init__(self, port: int | None = None, *options: str) -> None:
        self.port = port or free_port()
        #: Extra redis-server arguments, such as ``--rename-command BLMPOP ""``.
        self.options = options
        #: A Sentinel's config file: set it to start a Sentinel instead of a server.
        self.sentinel_config: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        if self.sentinel_config is not None:
            command = [binary, self.sentinel_config, "--sentinel", "--loglevel", "warning"]
        else:
            command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
            command += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
        command += self.options
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_PATIENCE
        while not self.answers():  # waiting for a process to start, not a race
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def answers(self) -> bool:
        """Whether the server answers PING (a subclass may speak TLS)."""
        return answers_ping(self.port)

    def kill(self) -> None:
        """SIGKILL the server (by its PID) and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


async def receive_until_stopped(url: str, prefix: str, channel: str) -> list[int]:
    from chanlite.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer(url, prefix=prefix)
    received: list[int] = []
    print("ready", flush=True)
    try:
        while True:
            _, message = await layer.receive([channel], timeout=30)
            if message is None or message == STOP:
                return received
            received.append(message["n"])
    finally:
        await layer.aclose()


async def shared_by_three_processes(url: str, prefix: str, count: int) -> list[int]:
    """Send ``count`` numbered messages on ``url`` while three receiving processes
    (this module's ``receive``) take them; every number they got, in no order."""
    from chanlite.layers.redis import RedisChannelLayer

    layer = RedisChannelLayer(url, prefix=prefix, capacity=count + 10)
    command = [sys.executable, "-m", "tests.layers.redis_helpers", "receive", url]
    receivers = [
        await asyncio.create_subprocess_exec(
            *command, prefix, "xproc", cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    try:
        for receiver in receivers:
            assert receiver.stdout is not None
            assert await receiver.stdout.readline() == b"ready\n"
        for n in range(count):
            await layer.send("xproc", {"n": n})
        for _ in receivers:
            await layer.send("xproc", STOP)
        async with asyncio.timeout(60):
            outputs = [(await receiver.communicate())[0] for receiver in receivers]
    finally:
        for receiver in receivers:
            if receiver.returncode is None:
                receiver.kill()
                await receiver.wait()
        await layer.flush()
        await layer.aclose()
    return [n for output in outputs for n in orjson.loads(output)]


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "receive":
        print("usage: python -m tests.layers.redis_helpers receive URL PREFIX CHANNEL")
        return 2
    received = asyncio.run(receive_until_stopped(*argv[1:]))
    sys.stdout.write(orjson.dumps(received).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
