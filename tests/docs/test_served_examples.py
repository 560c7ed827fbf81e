"""The docs programs that readers serve with ``chanlite serve`` or ``uvicorn`` import on
the base install (no ``testing`` extra), and the served programs whose checks live
here rather than in the program itself behave as their pages say."""

from __future__ import annotations

import importlib.util
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from chanlite import Chanlite
from chanlite.testing import ChanliteTestClient

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"

#: How a program tells readers to serve it: ``chanlite serve chat:app``,
#: ``uvicorn embedding_mount:site`` or ``chanlite serve routing_marks`` (a module).
SERVE = re.compile(r"`(chanlite serve|uvicorn) (\w+)(?::([\w.]+))?`")


def served_programs() -> list[tuple[Path, str, str | None]]:
    """Each program that names a way to serve it: (path, server, attribute or None)."""
    served = []
    for program in sorted(EXAMPLES.glob("*.py")):
        match = SERVE.search(program.read_text())
        if match:
            served.append((program, match[1], match[3]))
    return served


SERVED = served_programs()

#: Run in a subprocess: the program loads as its server would load it, with httpx2
#: (the ``testing`` extra) and httpx (which starlette.testclient falls back on) made
#: unimportable, as on the base install, which has neither.
IMPORT_ON_BASE_INSTALL = """
import sys

for name in ("httpx2", "httpx"):
    sys.modules[name] = None  # import fails as for a package that is not installed

server, target = sys.argv[1:]
if server == "chanlite serve":
    from chanlite import Chanlite
    from chanlite.targets import load_app

    app = load_app(target)
    assert isinstance(app, Chanlite), app
else:
    from uvicorn.importer import import_from_string

    app = import_from_string(target)
    assert callable(app), app
print(type(app).__name__)
"""


def test_served_programs_are_found() -> None:
    names = {program.stem for program, _, _ in SERVED}
    assert {"embedding_starlette", "embedding_mount", "migrating_chat"} <= names, names


@pytest.mark.parametrize(
    ("program", "server", "attribute"), SERVED, ids=[path.stem for path, _, _ in SERVED]
)
def test_served_program_imports_without_testing_extra(
    program: Path, server: str, attribute: str | None
) -> None:
    """``pip install -e .`` is enough to serve every program the docs tell readers to
    serve: loading it yields the app without chanlite.testing or its httpx2."""
    target = program.stem if attribute is None else f"{program.stem}:{attribute}"
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ON_BASE_INSTALL, server, target],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, (
        f"`{server} {target}` fails without the testing extra:\n{result.stderr}"
    )
    assert result.stdout.strip(), result.stderr


def load_example(name: str) -> ModuleType:
    """A fresh copy of the program ``docs/examples/<name>.py``, with its own state."""
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHANLITE_SECRET_KEY", secrets.token_urlsafe(32))


@pytest.mark.usefixtures("secret_key")
def test_embedding_starlette() -> None:
    """The host's routes and lifespan still work, a login made by a view is seen by the
    socket, and both kinds of view reach the group."""
    example = load_example("embedding_starlette")
    with ChanliteTestClient(example.app) as client:
        assert example.events == ["site started"]  # the host's lifespan ran
        assert client.get("/").text == "the site's own home page"
        client.get("/login", params={"name": "ada"})  # sets the session cookie
        with client.websocket_connect("/news/") as ws:
            assert ws.receive_text() == "hello ada"  # the view's login, seen here
            client.post("/publish", params={"headline": "chanlite 0.1"})
            assert ws.receive_text() == "chanlite 0.1"
            client.post("/publish-async", params={"headline": "embedded"})
            assert ws.receive_text() == "embedded"
        client.run_until_idle()
        assert client.group_channels("news") == set()
    assert example.events == ["site started", "site stopped"]


@pytest.mark.usefixtures("secret_key")
def test_embedding_mount() -> None:
    """Mounted under /live and started by the site's lifespan, the app sees paths
    relative to the mount and the login made by the site's view."""
    example = load_example("embedding_mount")
    with TestClient(example.site) as client:
        client.get("/login", params={"name": "grace"})
        with client.websocket_connect("/live/whoami/") as ws:
            assert ws.receive_text() == "/whoami/ grace"


@pytest.mark.usefixtures("secret_key")
def test_migrating_chat() -> None:
    """The Channels 1.x chat runs on chanlite: a socket without a username is
    rejected, a room hears its messages, and the background channel stores them."""
    example = load_example("migrating_chat")
    with ChanliteTestClient(Chanlite(example.channel_routing)) as client:
        with (
            pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)),
            client.websocket_connect("/chat/lobby/"),
        ):
            pass
        with (
            client.websocket_connect("/chat/lobby/?username=ada") as ada,
            client.websocket_connect("/chat/lobby/?username=alan") as alan,
        ):
            ada.send_text("hello")
            expected = {"username": "ada", "text": "hello"}
            assert json.loads(ada.receive_text()) == expected
            assert json.loads(alan.receive_text()) == expected
        client.run_until_idle()
        assert example.SAVED == [{"room": "lobby", "text": "hello"}]
