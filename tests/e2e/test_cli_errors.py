"""Errors the ``chanlite`` command reports in one line, without a traceback.

A layer whose backend fails (a Redis that is down) exits 1: it is not a mistake on
the command line, and the same command may work once the server is back. A routing
table that does not build exits 2, as every other mistake in a target does.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from .server import free_port, run_cli

#: Exit code of a failing layer backend, and of a usage error.
EXIT_LAYER, EXIT_USAGE = 1, 2
#: How long a command keeps trying to reach Redis before it fails (``CONNECT_PATIENCE``),
#: with room for the interpreter to start.
WITHIN = 30

COMMANDS = {
    "send": ["send", "jobs", '{"n": 1}'],
    "send --group": ["send", "room", '{"n": 1}', "--group"],
    "stats": ["stats"],
    "stats --watch": ["stats", "--watch"],
    "flush": ["flush", "--yes"],
}


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("chanlite: error:")]


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_redis_that_is_down_is_one_line_and_exit_code_1(command: list[str]) -> None:
    port = free_port()  # nothing listens there
    result = run_cli(*command, "--layer", f"redis://127.0.0.1:{port}/0", timeout=WITHIN)
    assert result.returncode == EXIT_LAYER, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert line.startswith(
        f"chanlite: error: the channel layer failed: Redis at 127.0.0.1:{port}/0: "
        f"cannot connect to 127.0.0.1:{port}"
    ), line
    assert result.stdout == ""


def test_a_usage_error_against_a_redis_that_is_down_still_exits_2() -> None:
    port = free_port()
    result = run_cli("send", "jobs", "not json", "--layer", f"redis://127.0.0.1:{port}/0")
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert "the message is not valid JSON" in line


def test_a_table_that_does_not_build_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    # The include is joined when chanlite builds the table, not in the user's code.
    (tmp_path / "badinclude.py").write_text(
        textwrap.dedent(
            """
            from chanlite import include, route

            def echo(message):
                pass

            routes = [include([route("chat", echo, path="^/room/")], path="/chat")]
            """
        )
    )
    result = run_cli("routes", "badinclude:routes", cwd=tmp_path)
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert "include filter path='/chat'" in line
    assert "must start with '^'" in line
