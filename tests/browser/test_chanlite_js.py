"""chanlite.js in Chromium, step by step: a fake WebSocket and fake timers (fakes.js)
let each test decide when sockets open, receive, close and reconnect.

The same client against a real server is tested in ``test_chat_browser.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Error, Page

from chanlite.static import JAVASCRIPT_PATH

pytestmark = pytest.mark.browser

FAKES = Path(__file__).with_name("fakes.js")
URL = "http://example.test/chat/lobby/"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page()
    page.set_content("<!doctype html><title>chanlite.js</title>")
    page.add_script_tag(path=JAVASCRIPT_PATH)
    page.add_script_tag(path=FAKES)
    yield page
    page.close()


def run(page: Page, script: str) -> Any:
    """Run ``script`` (statements, ``await`` allowed; ``return`` gives the result)."""
    return page.evaluate(f"async () => {{ {script} }}")


def test_it_is_a_global_constructor(page: Page) -> None:
    assert page.evaluate("typeof window.ChanliteSocket") == "function"
    with pytest.raises(Error, match="must be called with new"):
        page.evaluate(f"ChanliteSocket({URL!r})")


@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("/chat/lobby/", "http://example.test/page", "ws://example.test/chat/lobby/"),
        ("/chat/lobby/", "https://example.test:8443/", "wss://example.test:8443/chat/lobby/"),
        ("room/?x=1", "https://example.test/a/b", "wss://example.test/a/room/?x=1"),
        ("ws://other.test:81/echo/", "https://example.test/", "ws://other.test:81/echo/"),
        ("http://other.test/echo/", "https://example.test/", "ws://other.test/echo/"),
    ],
)
def test_urls_become_websocket_urls(page: Page, url: str, base: str, expected: str) -> None:
    assert page.evaluate("([u, b]) => ChanliteSocket.websocketUrl(u, b)", [url, base]) == expected


def test_backoff_is_full_jitter_under_a_doubling_cap(page: Page) -> None:
    backoff = "(a, r) => ChanliteSocket.backoff(a, 500, 30000, () => r)"
    cases = [(0, 0.5, 250), (0, 0, 0), (1, 0.5, 500), (3, 0.999, 3996), (6, 0.999, 29970)]
    for attempt, random, expected in cases:
        assert page.evaluate(f"([a, r]) => ({backoff})(a, r)", [attempt, random]) == expected
    # Past the cap, and far past it (2 ** 2000 is Infinity), the cap holds.
    assert page.evaluate(f"({backoff})(7, 0.5)") == 15000
    assert page.evaluate(f"({backoff})(2000, 0.5)") == 15000


def test_the_default_random_stays_in_bounds(page: Page) -> None:
    delays = page.evaluate(
        """() => {
        Math.random = realRandom;
        return Array.from({length: 200}, (_, i) => ChanliteSocket.backoff(i % 8, 100, 1000));
      }"""
    )
    caps = [min(1000, 100 * 2 ** (i % 8)) for i in range(200)]
    assert all(0 <= delay < cap for delay, cap in zip(delays, caps, strict=True))


def test_connecting_is_reported_after_the_constructor_returns(page: Page) -> None:
    result = run(
        page,
        f"""
        const seen = [];
        const socket = new ChanliteSocket({URL!r}, {{onStateChange: (s) => seen.push(s)}});
        const during = [...seen];
        return Promise.resolve().then(() => [during, seen, socket.state, lastBase()]);
        """,
    )
    assert result == [[], ["connecting"], "connecting", "ws://example.test/chat/lobby/"]


def test_sends_wait_for_the_open_in_order(page: Page) -> None:
    sent = run(
        page,
        f"""
        window.socket = makeSocket({URL!r}, {{
          onStateChange: (s) => {{ if (s === "open") socket.send("from onStateChange"); }},
        }});
        await tick();
        socket.send({{text: "hi"}});
        socket.send("raw");
        socket.send(new Uint8Array([1, 2]));
        const before = lastSocket().sent.length;
        lastSocket().serverOpens();
        socket.send([1, "two"]);
        const sent = lastSocket().sent;
        return [before, sent.slice(0, 2), sent[2] instanceof Uint8Array, sent.slice(3)];
        """,
    )
    assert sent == [0, ['{"text":"hi"}', "raw"], True, ["from onStateChange", '[1,"two"]']]


def test_frames_are_decoded(page: Page) -> None:
    received = run(
        page,
        f"""
        makeSocket({URL!r});
        await tick();
        lastSocket().serverOpens();
        for (const frame of ['{{"type": "message"}}', "plain text", "42", "[1, 2]", "{{bad"]) {{
          lastSocket().serverSends(frame);
        }}
        lastSocket().serverSends(new Uint8Array([7]).buffer);
        return [received.slice(0, 5), received[5] instanceof ArrayBuffer];
        """,
    )
    assert received == [[{"type": "message"}, "plain text", 42, [1, 2], "{bad"], True]


def test_reconnects_with_growing_delays_reset_by_an_open(page: Page) -> None:
    result = run(
        page,
        f"""
        const socket = makeSocket({URL!r}, {{minDelay: 100, maxDelay: 1000}});
        await tick();
        lastSocket().serverOpens();
        const delays = [];
        for (let i = 0; i < 6; i++) {{
          lastSocket().connectionCloses(1006);
          delays.push(...pendingDelays());
          fireTimer();
        }}
        lastSocket().serverOpens();
        lastSocket().connectionCloses(1001);
        const afterOpen = pendingDelays();
        return [delays, afterOpen, sockets.length, socket.state, socket.closeCode, changes];
        """,
    )
    delays, after_open, sockets, state, close_code, changes = result
    # random() is 0.5: half of min(1000, 100 * 2 ** attempt).
    assert delays == [50, 100, 200, 400, 500, 500]
    assert after_open == [50]
    assert sockets == 7  # the first and one per fired timer
    assert (state, close_code) == ("reconnecting", 1001)
    assert changes == ["connecting", "open", "reconnecting", "open", "reconnecting"]


def test_a_failed_first_connect_is_retried(page: Page) -> None:
    result = run(
        page,
        f"""
        const socket = makeSocket({URL!r});
        await tick();
        lastSocket().connectionCloses(1006);
        const delays = pendingDelays();
        fireTimer();
        lastSocket().serverOpens();
        return [delays, sockets.length, socket.state];
        """,
    )
    assert result == [[250], 2, "open"]


@pytest.mark.parametrize("code", [1000, 1001, 1006, 1011, 1012, 1013, 3000, 3999])
def test_other_close_codes_reconnect(page: Page, code: int) -> None:
    result = run(
        page,
        f"""
        const socket = makeSocket({URL!r});
        await tick();
        lastSocket().serverOpens();
        lastSocket().connectionCloses({code});
        return [socket.state, socket.closeCode, pendingDelays().length];
        """,
    )
    assert result == ["reconnecting", code, 1]


@pytest.mark.parametrize("code", [1008, 4000, 4001, 4403, 4999])
@pytest.mark.parametrize("opened", [True, False])
def test_refusal_codes_close_for_good(page: Page, code: int, opened: bool) -> None:
    result = run(
        page,
        f"""
        const socket = makeSocket({URL!r});
        await tick();
        if ({str(opened).lower()}) lastSocket().serverOpens();
        lastSocket().connectionCloses({code});
        let error = null;
        try {{ socket.send("late"); }} catch (e) {{ error = e.message; }}
        return [socket.state, socket.closeCode, pendingDelays(), sockets.length, error];
        """,
    )
    assert result == ["closed", code, [], 1, "ChanliteSocket.send: the socket is closed"]


def test_close_is_final(page: Page) -> None:
    result = run(
        page,
        f"""
        const socket = makeSocket({URL!r});
        await tick();
        lastSocket().serverOpens();
        socket.send("queued? no: sent");
        socket.close();
        // The browser's close event arrives later; it must not start a reconnect.
        lastSocket().connectionCloses(1000);
        return [socket.state, lastSocket().closedWith, pendingDelays(), sockets.length, changes];
        """,
    )
    state, closed_with, delays, sockets, changes = result
    assert (state, closed_with, delays, sockets) == ("closed", [1000, None], [], 1)
    assert changes == ["connecting", "open", "closed"]


def test_close_while_reconnecting_cancels_the_timer(page: Page) -> None:
    result = run(
        page,
        f"""
        const socket = makeSocket({URL!r});
        await tick();
        lastSocket().serverOpens();
        lastSocket().connectionCloses(1006);
        socket.send("dropped");
        const pending = pendingDelays().length;
        socket.close();
        return [pending, pendingDelays(), socket.state, sockets.length];
        """,
    )
    assert result == [1, [], "closed", 1]


def test_close_right_after_the_constructor(page: Page) -> None:
    result = run(
        page,
        f"""
        const socket = makeSocket({URL!r});
        socket.close();
        socket.close();  // idempotent
        return Promise.resolve().then(() => [changes, lastSocket().closedWith]);
        """,
    )
    assert result == [["closed"], [1000, None]]


# -- recovery (chanlite.v1) -------------------------------------------------------------


def test_it_offers_chanlite_v1_with_a_client_id_that_stays(page: Page) -> None:
    result = run(
        page,
        f"""
        makeSocket({URL!r}, {{protocols: ["graphql-ws"]}});
        await tick();
        const first = [lastSocket().protocols, lastParams()];
        lastSocket().serverOpens("chanlite.v1");
        lastSocket().connectionCloses(1006);
        fireTimer();
        return [first, lastParams(), lastBase()];
        """,
    )
    [protocols, params], again, base = result
    assert protocols == ["graphql-ws", "chanlite.v1"]
    assert list(params) == ["chanlite_client"]
    assert len(params["chanlite_client"]) == 32
    assert again == params  # no group heard from yet: no positions
    assert base == "ws://example.test/chat/lobby/"


def test_recover_false_is_a_plain_socket(page: Page) -> None:
    result = run(
        page,
        f"""
        makeSocket({URL!r}, {{recover: false}});
        await tick();
        return [lastSocket().protocols ?? null, lastSocket().url];
        """,
    )
    assert result == [None, "ws://example.test/chat/lobby/"]


def test_v1_frames_are_unwrapped_and_positions_presented_again(page: Page) -> None:
    result = run(
        page,
        f"""
        const socket = makeSocket({URL!r});
        await tick();
        lastSocket().serverOpens("chanlite.v1");
        const opened = [socket.state, [...opens]];
        for (const frame of [
          {{text: '{{"n": 1}}'}}, {{text: "plain"}}, {{bytes: "AP8="}},
          {{g: "chat-a", p: "e1:4", text: "four"}}, {{g: "chat-a", p: "e1:5", text: "five"}},
          {{recovery: {{recovered: {{}}, positions: {{"chat-a": "e1:3", "chat-b": "e2:0"}}}}}},
        ]) lastSocket().serverSends(JSON.stringify(frame));
        const bytes = Array.from(new Uint8Array(received[2]));
        lastSocket().connectionCloses(1006);
        fireTimer();
        return [opened, received.slice(0, 2), bytes, received.slice(3), lastParams()];
        """,
    )
    opened, texts, raw, group_messages, params = result
    assert opened == ["open", [{"recovered": False, "groups": {}}]]
    assert texts == [{"n": 1}, "plain"]
    assert raw == [0, 255]
    assert group_messages == [["chat-a", "four"], ["chat-a", "five"]]
    # A position from the recovery frame never goes back; a new group's is kept.
    assert json.loads(params["chanlite_positions"]) == {"chat-a": "e1:5", "chat-b": "e2:0"}


@pytest.mark.parametrize("recovered", [True, False])
def test_a_reconnect_opens_once_the_recovery_frame_came(page: Page, recovered: bool) -> None:
    result = run(
        page,
        f"""
        const socket = await reopenedAfterOne({URL!r});
        lastSocket().serverSends(JSON.stringify({{g: "chat-a", p: "e1:2", text: "two"}}));
        const before = [socket.state, opens.length, received.length];
        lastSocket().serverSends(JSON.stringify({{recovery: {{
          recovered: {{"chat-a": {str(recovered).lower()}}}, positions: {{"chat-a": "e1:1"}},
        }}}}));
        return [before, socket.state, socket.recovered, opens, received];
        """,
    )
    before, state, flag, opens, received = result
    assert before == ["reconnecting", 1, 1]
    assert (state, flag) == ("open", recovered)
    assert opens[1] == {"recovered": recovered, "groups": {"chat-a": recovered}}
    assert received == [["chat-a", "one"], ["chat-a", "two"]]


def test_a_recovery_frame_that_never_comes_opens_unrecovered(page: Page) -> None:
    result = run(
        page,
        f"""
        const socket = await reopenedAfterOne({URL!r});
        const delays = pendingDelays();
        fireTimer();
        return [delays, socket.state, opens[1]];
        """,
    )
    assert result == [[10000], "open", {"recovered": False, "groups": {"chat-a": False}}]


def test_a_connection_lost_while_recovering_presents_the_same_positions(page: Page) -> None:
    result = run(
        page,
        f"""
        await reopenedAfterOne({URL!r});
        lastSocket().serverSends(JSON.stringify({{g: "chat-a", p: "e1:2", text: "two"}}));
        lastSocket().connectionCloses(1006);
        fireTimer();
        return [lastParams().chanlite_positions, received.length, pendingDelays()];
        """,
    )
    assert result == ['{"chat-a":"e1:1"}', 1, []]


def test_a_server_without_chanlite_v1_gets_a_plain_socket(page: Page) -> None:
    result = run(
        page,
        f"""
        const socket = makeSocket({URL!r});
        await tick();
        lastSocket().serverOpens("");
        lastSocket().serverSends('{{"g": "x", "text": "not an envelope"}}');
        return [socket.state, opens, received];
        """,
    )
    assert result == [
        "open",
        [{"recovered": False, "groups": {}}],
        [{"g": "x", "text": "not an envelope"}],
    ]
