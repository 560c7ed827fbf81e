"""What a new user meets first: module targets, errors in their own code, the app's
own settings, log lines under ``chanlite serve`` and plain uvicorn, and the layer
commands that say what they did."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from .server import ROOT, Served, run_cli, serve, serve_with_uvicorn
from .test_cli import assert_usage_error

pytestmark = pytest.mark.anyio

NO_KEY = {"CHANLITE_SECRET_KEY": "", "CHANLITE_LAYER": ""}
# Frames of chanlite and of the import system, which a report of the user's error
# must not show.
OWN_FRAMES = ("cli.py", "_importer.py", "importlib", "<frozen")


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


# -- module targets -----------------------------------------------------------------


def test_a_module_target_serves_its_routes_table() -> None:
    result = run_cli("routes", "tests.apps.table")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith("-> tests.apps.table.table_echo")


async def test_serve_a_module_whose_consumers_are_on_a_routes_table() -> None:
    with serve("tests.apps.table") as served:
        async with connect(f"{served.ws}/table/") as ws:
            await ws.send("tabled")
            assert await ws.recv() == "tabled"


def test_a_module_target_prefers_its_chanlite_app() -> None:
    # tests.apps.no_workers holds both the app and (imported) the table it serves.
    result = run_cli("routes", "tests.apps.no_workers")
    assert result.returncode == 0, result.stderr
    assert "tests.apps.table.table_echo" in result.stdout


def test_a_module_with_nothing_routable_says_so(tmp_path: Path) -> None:
    write_module(tmp_path, "myapp", "from chanlite import Routes\n\nroutes = Routes()\n")
    result = run_cli("serve", "myapp", cwd=tmp_path, env=NO_KEY)
    assert_usage_error(result, "'myapp'", "no Chanlite app", "Routes", "@consumer", "myapp:routes")


def test_a_module_with_two_tables_asks_which(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "two",
        """
        from chanlite import Routes

        public, admin = Routes(), Routes()
        public.consumer("jobs")(print)
        admin.consumer("reports")(print)
        """,
    )
    result = run_cli("routes", "two", cwd=tmp_path)
    assert_usage_error(result, "2 Routes objects (admin, public)", "two:admin")


# -- errors in the user's own code ----------------------------------------------------


def assert_users_error(result: subprocess.CompletedProcess[str], *lines: str) -> None:
    assert result.returncode == 1, result.stderr
    for own in OWN_FRAMES:
        assert own not in result.stderr, result.stderr
    assert "chanlite: error" not in result.stderr
    stripped = [line.strip() for line in result.stderr.splitlines()]
    for line in lines:
        assert line in stripped, result.stderr


def test_a_syntax_error_shows_the_file_line_code_and_caret(tmp_path: Path) -> None:
    write_module(tmp_path, "broken", "from chanlite import Routes\n\ndef join(:\n    pass\n")
    result = run_cli("serve", "broken", cwd=tmp_path, env=NO_KEY)
    assert_users_error(result, "def join(:", "SyntaxError: invalid syntax")
    assert f'File "{tmp_path / "broken.py"}", line 3' in result.stderr
    assert re.search(r"^\s+\^", result.stderr, re.MULTILINE), result.stderr


def test_an_exception_in_the_module_shows_only_the_users_frames(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "raising",
        """
        def settings():
            return undefined_setting

        SETTINGS = settings()
        """,
    )
    result = run_cli("serve", "raising:app", cwd=tmp_path, env=NO_KEY)
    assert_users_error(
        result,
        "Traceback (most recent call last):",
        "SETTINGS = settings()",
        "return undefined_setting",
        "NameError: name 'undefined_setting' is not defined",
    )
    assert result.stderr.count('File "') == 2, result.stderr


def test_a_value_error_in_the_users_code_is_not_a_usage_error(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "valued",
        """
        from chanlite import Routes

        routes = Routes()
        PORT = int("eighty")
        """,
    )
    result = run_cli("routes", "valued:routes", cwd=tmp_path)
    assert_users_error(result, 'PORT = int("eighty")')
    assert "ValueError: invalid literal for int()" in result.stderr


def test_a_missing_dependency_of_the_users_module_is_theirs(tmp_path: Path) -> None:
    write_module(tmp_path, "needy", "import no_such_dependency\n")
    result = run_cli("routes", "needy", cwd=tmp_path)
    assert_users_error(
        result,
        "import no_such_dependency",
        "ModuleNotFoundError: No module named 'no_such_dependency'",
    )


def test_a_bad_route_in_the_users_code_points_at_their_line(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "badroute",
        """
        from chanlite import consumer

        @consumer("websocket.receive", path="(unclosed")
        def echo(message):
            pass
        """,
    )
    result = run_cli("routes", "badroute", cwd=tmp_path)
    assert_users_error(result, '@consumer("websocket.receive", path="(unclosed")')
    assert "is not a valid regex" in result.stderr


# -- the app's own settings hold ------------------------------------------------------


def stop(served: Served) -> str:
    """SIGTERM the server; return its output, once it has exited with code 0."""
    code, output = served.terminate()
    assert code == 0, output
    return output


def test_an_apps_workers_false_holds_under_chanlite_serve() -> None:
    with serve("tests.apps.no_workers:app", env=NO_KEY) as served:
        output = stop(served)
    assert "Application startup complete." in output
    assert "worker listening on" not in output


def test_chanlite_serve_starts_workers_by_default() -> None:
    with serve("tests.apps.table:routes", env=NO_KEY) as served:
        assert "INFO:     worker listening on" in stop(served)


# -- log lines ------------------------------------------------------------------------


def chanlite_lines(output: str) -> list[str]:
    """The lines chanlite logged in a server's ``output`` (uvicorn's own left out)."""
    marks = ("worker listening on", "no secret key is set", "worker stopped")
    return [line for line in output.splitlines() if any(mark in line for mark in marks)]


def output_under_uvicorn(served: Served) -> str:
    """SIGTERM plain uvicorn; return its output (it ends as SIGTERM's default does)."""
    code, output = served.terminate()
    assert code == -signal.SIGTERM, output
    return output


def test_log_lines_are_the_same_under_chanlite_serve_and_plain_uvicorn() -> None:
    with serve_with_uvicorn("tests.apps.basic:app", env=NO_KEY) as served:
        under_uvicorn = chanlite_lines(output_under_uvicorn(served))
    with serve("tests.apps.basic:app", env=NO_KEY) as served:
        under_chanlite = chanlite_lines(stop(served))
    assert under_chanlite == under_uvicorn
    assert under_uvicorn[0].startswith("WARNING:  no secret key is set"), under_uvicorn
    assert any(line.startswith("INFO:     worker listening on") for line in under_uvicorn)


def test_plain_uvicorns_log_level_applies_to_chanlite() -> None:
    with serve_with_uvicorn("tests.apps.basic:app", "--log-level", "warning", env=NO_KEY) as s:
        lines = chanlite_lines(output_under_uvicorn(s))
    assert [line.split(":")[0] for line in lines] == ["WARNING"], lines


# -- send, flush and routes say what they did -----------------------------------------


def sqlite_layer(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'layer.db'}"


def test_send_says_what_it_sent_and_where(tmp_path: Path) -> None:
    layer = sqlite_layer(tmp_path)
    result = run_cli("send", "jobs", '{"text": "hi"}', "--layer", layer)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('sent {"text": "hi"} to channel \'jobs\' on <SQLite')
    group = run_cli("send", "room", "{}", "--group", "--layer", layer)
    assert group.stdout.startswith("sent {} to group 'room' on <SQLite"), group.stderr


def fill(layer: str) -> None:
    for _ in range(2):
        assert run_cli("send", "jobs", "{}", "--layer", layer).returncode == 0


def depth(layer: str, channel: str) -> int:
    stats = run_cli("stats", "--layer", layer).stdout
    found = re.search(rf"^\s+{channel}\s+(\d+)$", stats, re.MULTILINE)
    return int(found.group(1)) if found else 0


def test_flush_without_a_terminal_deletes_without_asking(tmp_path: Path) -> None:
    layer = sqlite_layer(tmp_path)
    fill(layer)
    result = run_cli("flush", "--layer", layer)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 2 messages in 1 channel and 0 groups"), result
    assert depth(layer, "jobs") == 0


def flush_on_a_terminal(layer: str, *args: str, answer: bytes) -> str:
    """Run ``chanlite flush`` with a pseudo-terminal as its input; return its output."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "chanlite", "flush", "--layer", layer, *args],
            cwd=ROOT,
            stdin=terminal,
            stdout=terminal,
            stderr=subprocess.STDOUT,
        )
        os.write(controller, answer)
        assert process.wait(timeout=30) == 0
        return _read_all(controller)
    finally:
        os.close(terminal)
        os.close(controller)


def _read_all(fd: int) -> str:
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal's other end is closed: all is read
            break
        if not chunk:
            break
        output += chunk
        if output.endswith(b"\n") and b"deleted" in output:
            break
    return output.decode()


def test_flush_on_a_terminal_asks_first(tmp_path: Path) -> None:
    layer = sqlite_layer(tmp_path)
    fill(layer)
    refused = flush_on_a_terminal(layer, answer=b"n\n")
    assert "Delete 2 messages in 1 channel and 0 groups with 0 members" in refused
    assert "Live sockets lose their group memberships. [y/N]" in refused
    assert "nothing deleted" in refused
    assert depth(layer, "jobs") == 2
    confirmed = flush_on_a_terminal(layer, answer=b"y\n")
    assert "deleted 2 messages" in confirmed
    assert depth(layer, "jobs") == 0


def test_flush_yes_does_not_ask(tmp_path: Path) -> None:
    layer = sqlite_layer(tmp_path)
    fill(layer)
    output = flush_on_a_terminal(layer, "--yes", answer=b"")
    assert "[y/N]" not in output
    assert "deleted 2 messages" in output


def test_routes_columns_line_up() -> None:
    result = run_cli("routes", "tests.apps.basic:app")
    assert result.returncode == 0, result.stderr
    arrows = {line.index(" -> ") for line in result.stdout.splitlines()}
    assert len(arrows) == 1, result.stdout
