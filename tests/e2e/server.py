"""Run ``chanlite`` commands as real subprocesses for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: How long a server may take to start listening.
START_TIMEOUT = 15.0


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 30,
    cwd: Path = ROOT,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m chanlite ARGS`` in ``cwd`` to completion, with ``stdin`` as
    its input (no input, and not a terminal, by default)."""
    return subprocess.run(
        [sys.executable, "-m", "chanlite", *args],
        cwd=cwd,
        input=stdin or "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@dataclass
class Served:
    """A running ``chanlite serve`` process."""

    process: subprocess.Popen[str]
    port: int
    #: The exit code and output, once terminated.
    ended: tuple[int, str] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def terminate(self, timeout: float = 20) -> tuple[int, str]:
        """SIGTERM the server and return its exit code and output (the same again
        when called again)."""
        if self.ended is None:
            self.ended = self._terminate(timeout)
        return self.ended

    def _terminate(self, timeout: float) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate()
        return self.process.returncode, output


@contextmanager
def serve(
    target: str, *args: str, env: dict[str, str] | None = None, log_level: str = "info"
) -> Iterator[Served]:
    """Start ``chanlite serve TARGET`` on a free port; stop it afterwards.

    Its output is read only once it has stopped: a test that makes more than a pipe's
    worth of log lines (about 700 sockets at ``info``) must quieten it with
    ``log_level``, or the server blocks writing its log.
    """
    command = ["chanlite", "--log-level", log_level, "serve", target]
    with _serving(command, args, env) as served:
        yield served


@contextmanager
def serve_with_uvicorn(
    target: str, *args: str, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """Start plain ``uvicorn TARGET`` on a free port; stop it afterwards."""
    with _serving(["uvicorn", target], args, env) as served:
        yield served


@contextmanager
def _serving(
    command: list[str], args: tuple[str, ...], env: dict[str, str] | None
) -> Iterator[Served]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", *command, "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    served = Served(process, port)
    try:
        _wait_listening(served)
        yield served
    finally:
        served.terminate()


def _wait_listening(served: Served) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            output = served.process.stdout.read() if served.process.stdout else ""
            raise RuntimeError(f"the server exited early:\n{output}")
        try:
            socket.create_connection(("127.0.0.1", served.port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)  # readiness poll, not a race: the port opens once
    raise RuntimeError("the server did not start listening in time")
