"""The chat example in a real Chromium against a real ``chanlite serve``: two users in
one room, messages, history, the presence list, and chanlite.js reconnecting after a
server restart and staying closed after a refusal."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Error, Page, expect

from .conftest import WAIT_MS, ChatServer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


def log_in(page: Page, server: ChatServer, name: str) -> Page:
    page.goto(f"{server.url}/")
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user")).to_have_text(name)
    # The page's script has run (it joins the first room) only once the socket opens:
    # a Join clicked before that would find no handler and reload the page.
    expect(page.locator("#state")).to_have_attribute("data-state", "open")
    return page


def join(page: Page, room: str) -> None:
    page.get_by_label("room").fill(room)
    page.get_by_role("button", name="Join").click()
    expect(page.locator("#room-name")).to_have_text(room)
    expect(page.locator("#state")).to_have_attribute("data-state", "open")


def say(page: Page, text: str) -> None:
    page.get_by_label("message").fill(text)
    page.get_by_label("message").press("Enter")


def test_two_users_chat_and_see_who_is_in_the_room(
    chat_server: ChatServer, new_page: Callable[[], Page]
) -> None:
    alice = log_in(new_page(), chat_server, "Alice")
    bob = log_in(new_page(), chat_server, "Bob")
    # Once logged in, the page joins the lobby on its own.
    expect(alice.locator("#state")).to_have_attribute("data-state", "open")
    join(alice, "garden")
    join(bob, "garden")
    expect(alice.locator("#presence li")).to_have_text(["Alice (you)", "Bob"])
    expect(bob.locator("#presence li")).to_have_text(["Alice", "Bob (you)"])

    say(alice, "Hello from Alice")
    expect(bob.locator("#log p")).to_have_text(["Alice: Hello from Alice"])
    say(bob, "Hi Alice!")
    conversation = ["Alice: Hello from Alice", "Bob: Hi Alice!"]
    for page in (alice, bob):
        expect(page.locator("#log p")).to_have_text(conversation)
        expect(page.locator("#state")).to_have_text("connected")
    screenshot(alice, "chat-alice")
    screenshot(bob, "chat-bob")

    # A third user joins later and gets the room's history.
    carol = log_in(new_page(), chat_server, "Carol")
    join(carol, "garden")
    expect(carol.locator("#log p")).to_have_text(conversation)
    expect(alice.locator("#presence li")).to_have_text(["Alice (you)", "Bob", "Carol"])

    bob.close()  # closing the page
    expect(alice.locator("#presence li")).to_have_text(["Alice (you)", "Carol"])
    carol.goto("about:blank")  # navigating away
    expect(alice.locator("#presence li")).to_have_text(["Alice (you)"])
    screenshot(alice, "chat-alice-alone")


def test_a_user_in_two_tabs_is_listed_once(
    chat_server: ChatServer, new_page: Callable[[], Page]
) -> None:
    bob = new_page()
    with bob.expect_websocket() as opened:
        log_in(bob, chat_server, "Bob")
    bobs_socket = opened.value
    alice = log_in(new_page(), chat_server, "Alice")
    second_tab = alice.context.new_page()
    second_tab.goto(f"{chat_server.url}/")
    for page in (bob, alice, second_tab):
        expect(page.locator("#state")).to_have_attribute("data-state", "open")
    expect(bob.locator("#presence li")).to_have_text(["Alice", "Bob (you)"])
    for page in (alice, second_tab):
        expect(page.locator("#presence li")).to_have_text(["Alice (you)", "Bob"])
    say(second_tab, "from my second tab")
    expect(alice.locator("#log p.mine")).to_have_text(["Alice: from my second tab"])
    # Bob gets the message after every presence list sent before it (one channel,
    # in order), so no list from the joins can arrive below.
    expect(bob.locator("#log p")).to_have_text(["Alice: from my second tab"])

    # The list stays the same when one tab leaves, so wait for the frame that says so.
    with bobs_socket.expect_event("framereceived", predicate=is_presence) as frame:
        second_tab.close()
    assert content(frame.value)["users"] == ["Alice", "Bob"]
    with bobs_socket.expect_event("framereceived", predicate=is_presence) as frame:
        alice.close()
    assert content(frame.value)["users"] == ["Bob"]
    expect(bob.locator("#presence li")).to_have_text(["Bob (you)"])


def content(payload: str | bytes) -> dict[str, Any]:
    """What a frame of the chat carries: chanlite.js speaks chanlite.v1, whose frames
    wrap it (``{"g": ..., "p": ..., "text": ...}``)."""
    frame: dict[str, Any] = json.loads(payload)
    inner = frame.get("text")
    return json.loads(inner) if "type" not in frame and isinstance(inner, str) else frame


def is_presence(payload: str | bytes) -> bool:
    return isinstance(payload, str) and content(payload).get("type") == "presence"


def test_the_socket_reconnects_after_a_server_restart(
    chat_server: ChatServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(f"{chat_server.url}/")
    page.add_script_tag(url="/chanlite.js")
    page.evaluate(
        """() => {
        window.changes = [];
        window.received = [];
        window.socket = new ChanliteSocket("/echo/", {
          minDelay: 100,
          maxDelay: 1000,
          onStateChange: (state) => changes.push([state, socket.closeCode]),
          onMessage: (data) => received.push(data),
        });
      }"""
    )
    assert page.evaluate("socket.url") == f"ws://127.0.0.1:{chat_server.port}/echo/"
    page.wait_for_function("socket.state === 'open'")
    page.evaluate("socket.send({n: 1})")
    page.wait_for_function("received.length === 1")

    chat_server.stop()
    page.wait_for_function("socket.state === 'reconnecting'")
    page.evaluate("socket.send('sent while the server was down')")
    chat_server.start()
    page.wait_for_function("received.length === 2")

    assert page.evaluate("received") == [{"n": 1}, "sent while the server was down"]
    # The server's shutdown closed the socket with 1001 (going away); failed
    # attempts while it was down did not change the state again.
    assert page.evaluate("changes") == [
        ["connecting", None],
        ["open", None],
        ["reconnecting", 1001],
        ["open", None],
    ]
    page.evaluate("socket.close()")
    assert page.evaluate("changes.at(-1)") == ["closed", 1000]


def test_after_a_restart_the_page_asks_to_log_in_again(
    chat_server: ChatServer, new_page: Callable[[], Page]
) -> None:
    page = log_in(new_page(), chat_server, "Alice")
    state = page.locator("#state")
    expect(state).to_have_attribute("data-state", "open")
    chat_server.stop()
    expect(state).to_have_attribute("data-state", "reconnecting")
    chat_server.start()
    # The socket reconnects, but the new process has forgotten the login (sessions
    # live in the memory layer's store): it closes the socket with 4001, for good.
    # The page's next attempt is at most maxDelay (30 s) away.
    expect(state).to_have_attribute("data-state", "closed", timeout=30_000 + WAIT_MS)
    expect(state).to_have_text("logged out: reload the page to log in")
    expect(page.locator("#presence li")).to_have_count(0)
    screenshot(page, "chat-after-restart")
    page.reload()
    expect(page.get_by_label("Your name")).to_be_visible()


def test_a_refused_socket_stays_closed(
    chat_server: ChatServer, new_page: Callable[[], Page]
) -> None:
    page = new_page()
    page.goto(f"{chat_server.url}/")  # the login page: nobody is logged in
    page.add_script_tag(url="/chanlite.js")
    page.evaluate(
        """() => {
        window.changes = [];
        window.socket = new ChanliteSocket("/chat/lobby/", {
          minDelay: 10,
          onStateChange: (state) => changes.push(state),
        });
      }"""
    )
    page.wait_for_function("socket.state === 'closed'")
    assert page.evaluate("socket.closeCode") == 4001
    assert page.evaluate("changes") == ["connecting", "open", "closed"]
    with pytest.raises(Error, match="the socket is closed"):
        page.evaluate("socket.send('anyone?')")
