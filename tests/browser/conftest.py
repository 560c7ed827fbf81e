"""Playwright driving the OS's Chromium, and real ``chanlite serve`` processes of the
chat example for it to talk to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ..conftest import require_browser
from ..e2e.server import ROOT, free_port

#: Where the tests leave their screenshots (gitignored).
ARTIFACTS = ROOT / "test-artifacts"
#: How long a page may take to show what a test waits for, in ms: generous, so that
#: a busy machine slows the tests down instead of failing them.
WAIT_MS = 30_000
#: How long a server may take to start answering, in seconds.
START_TIMEOUT = 30.0
#: The app every browser test serves.
CHAT_APP = "examples.chat.app:app"


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    executable = require_browser()
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[[], Page]]:
    """Opens a page in a browser context of its own (its own cookies: its own user)."""
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(viewport={"width": 900, "height": 640})
        context.set_default_timeout(WAIT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


class ChatServer:
    """``chanlite serve examples.chat.app:app`` on one port, with its own database;
    it can be stopped and started again on the same port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.db_path = directory / "chat.db"
        self.log_path = directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers HTTP."""
        env = {
            **os.environ,
            "CHAT_DB": str(self.db_path),
            "CHANLITE_SECRET_KEY": "browser-test-secret-key-0123456789",
        }
        command = [sys.executable, "-m", "chanlite", "serve", CHAT_APP, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self._wait_answering()

    def stop(self) -> None:
        """SIGTERM the server (it closes its sockets with 1001) and wait for it."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _wait_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"chanlite serve exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)  # readiness poll: the port opens once
        raise RuntimeError(f"chanlite serve did not answer in time:\n{self.log()}")


@pytest.fixture
def chat_server(tmp_path: Path) -> Iterator[ChatServer]:
    server = ChatServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot of ``page`` as ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path
