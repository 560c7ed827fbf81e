"""Recovery in a real Chromium with ``chanlite.js``, against a real ``chanlite serve``:
the browser goes offline (its connection dropped, no reconnect possible) while the
room gets 100 messages, comes back online, and gets all 100, once each, in order;
a reload recovers too."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Page
from websockets.sync.client import connect

from ..e2e.server import Served, serve
from .conftest import WAIT_MS
from .network import CuttableProxy, cuttable_proxy

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def server() -> Iterator[Served]:
    with serve("tests.apps.recovery:app") as served:
        yield served


@pytest.fixture
def proxy(server: Served) -> Iterator[CuttableProxy]:
    with cuttable_proxy(server.port) as running:
        yield running


def send_to_room(server: Served, texts: list[str]) -> None:
    """Send ``texts`` to the room from a plain socket, each once it came back."""
    with connect(f"{server.ws}/room/lobby/") as ws:
        for text in texts:
            ws.send(text)
            while ws.recv(timeout=WAIT_MS / 1000) != text:
                pass


def got(page: Page) -> list[list[str]]:
    texts: list[list[str]] = page.evaluate("window.got")
    return texts


def wait_for(page: Page, condition: str) -> None:
    page.wait_for_function(condition, timeout=WAIT_MS)


def test_offline_and_back_recovers_the_100_messages_missed(
    server: Served, proxy: CuttableProxy, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(f"{proxy.url}/")
    wait_for(page, "window.opens.length === 1")
    assert page.evaluate("window.opens[0]") == {"recovered": False, "groups": {}}
    send_to_room(server, ["before"])
    wait_for(page, "window.got.length === 1")

    page.context.set_offline(True)
    proxy.cut()
    wait_for(page, "socket.state === 'reconnecting'")
    missed = [f"missed {n}" for n in range(100)]
    send_to_room(server, missed)
    page.context.set_offline(False)

    wait_for(page, "window.opens.length === 2")
    assert page.evaluate("window.opens[1]") == {
        "recovered": True,
        "groups": {"room-lobby": True},
    }
    wait_for(page, "window.got.length >= 101")
    assert got(page) == [["room-lobby", text] for text in ["before", *missed]]
    send_to_room(server, ["after"])
    wait_for(page, "window.got.length === 102")
    assert got(page)[-1] == ["room-lobby", "after"]


def test_a_reload_recovers_what_was_sent_meanwhile(
    server: Served, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(f"{server.http}/")
    wait_for(page, "window.opens.length === 1")
    send_to_room(server, ["one"])
    wait_for(page, "window.got.length === 1")
    page.goto("about:blank")
    send_to_room(server, ["two", "three"])
    page.goto(f"{server.http}/")
    wait_for(page, "window.opens.length === 1")
    assert page.evaluate("window.opens[0]") == {
        "recovered": True,
        "groups": {"room-lobby": True},
    }
    wait_for(page, "window.got.length === 2")
    assert got(page) == [["room-lobby", "two"], ["room-lobby", "three"]]
