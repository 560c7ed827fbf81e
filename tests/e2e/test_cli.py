"""The ``chanlite`` command: user errors print one line and exit 2, never a traceback."""

from __future__ import annotations

import sys

import pytest

import chanlite

from .server import run_cli

NO_KEY = {"CHANLITE_SECRET_KEY": "", "CHANLITE_LAYER": ""}


def assert_usage_error(result: object, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    error_lines = [line for line in stderr.splitlines() if "error" in line]
    assert len(error_lines) == 1, stderr
    for fragment in fragments:
        assert fragment in error_lines[0], stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"chanlite {chanlite.__version__}"


@pytest.mark.parametrize(
    "command", ["serve", "worker", "runworker", "routes", "send", "stats", "flush"]
)
def test_help_on_every_command(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: chanlite {command}")


def test_missing_module() -> None:
    assert_usage_error(run_cli("routes", "no_such_module:routes"), "no_such_module")


def test_missing_attribute() -> None:
    assert_usage_error(run_cli("routes", "tests.apps.basic:nope"), "'nope'")


def test_missing_file() -> None:
    assert_usage_error(run_cli("routes", "no/such/file.py:routes"), "does not exist")


def test_target_that_is_not_a_table() -> None:
    assert_usage_error(run_cli("routes", "tests.apps.basic:ORDERS"), "routing table")


def test_unknown_layer_scheme() -> None:
    result = run_cli("serve", "tests.apps.basic:app", "--layer", "bogus://x", env=NO_KEY)
    assert_usage_error(result, "unknown layer scheme 'bogus'")


def test_unknown_layer_option() -> None:
    result = run_cli("serve", "tests.apps.basic:app", "--layer", "memory://?capacty=5", env=NO_KEY)
    assert_usage_error(result, "capacty")


def test_bad_port_is_a_usage_error() -> None:
    result = run_cli("serve", "tests.apps.basic:app", "--port", "99999")
    assert result.returncode == 2
    assert "port must be 1-65535" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_refuses_memory_layer_by_default() -> None:
    assert_usage_error(run_cli("worker", "tests.apps.basic:app", env=NO_KEY), "memory://")


def test_worker_refuses_explicit_memory_layer() -> None:
    result = run_cli("worker", "tests.apps.basic:app", "--layer", "memory://", env=NO_KEY)
    assert_usage_error(result, "memory://")


def test_no_worker_needs_a_secret_key() -> None:
    result = run_cli("serve", "tests.apps.basic:app", "--no-worker", env=NO_KEY)
    assert_usage_error(result, "CHANLITE_SECRET_KEY")


def test_placeholder_secret_key_is_refused() -> None:
    result = run_cli("serve", "tests.apps.basic:app", env={"CHANLITE_SECRET_KEY": "changeme"})
    assert_usage_error(result, "placeholder")


def test_send_rejects_invalid_json() -> None:
    assert_usage_error(
        run_cli("send", "jobs", "{not json", "--layer", "memory://"), "not valid JSON"
    )


def test_send_rejects_non_object_json() -> None:
    assert_usage_error(run_cli("send", "jobs", "[1, 2]", "--layer", "memory://"), "JSON object")


def test_send_rejects_invalid_channel_name() -> None:
    assert_usage_error(run_cli("send", "bad name", "{}", "--layer", "memory://"), "'bad name'")


@pytest.mark.parametrize("command", [["stats"], ["flush"], ["send", "jobs", "{}"]])
def test_layer_commands_refuse_memory(command: list[str]) -> None:
    assert_usage_error(run_cli(*command, "--layer", "memory://"), "memory://")


def test_routes_prints_flattened_table_with_defaults_last() -> None:
    result = run_cli("routes", "tests.apps.basic:app")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "tests.apps.basic.echo" in lines[0]
    assert "^/echo/$" in lines[0]
    assert lines[-2].endswith("chanlite.default_routes.default_connect")
    assert lines[-1].endswith("chanlite.default_routes.drop")


def test_routes_of_a_bare_module_collects_marks() -> None:
    result = run_cli("routes", "tests.apps.marked")
    assert result.returncode == 0, result.stderr
    names = [line.split("->")[1].strip() for line in result.stdout.splitlines()]
    assert names[:2] == ["tests.apps.marked.marked_echo", "tests.apps.marked.job"]


def test_routes_of_a_file_path_target() -> None:
    result = run_cli("routes", "tests/apps/marked.py:marked_echo")
    assert result.returncode == 0, result.stderr
    assert "marked.marked_echo" in result.stdout


def test_worker_runs_on_uvloop_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import uvloop

    from chanlite.cli import event_loop_factory

    assert event_loop_factory() is uvloop.new_event_loop
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    assert event_loop_factory() is asyncio.new_event_loop
