"""The chat example: login, echo, rooms through Groups with authors' names, the
chat-messages channel that stores every message in SQLite before broadcasting it,
history on join, and the presence list."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from chanlite import Chanlite, Group
from chanlite.sessions import SESSION_COOKIE
from chanlite.testing import ChanliteTestClient
from examples.chat import app as chat
from tests.conftest import TrackedConnection

SECRET_KEY = "chat-example-test-secret-key-0123"


@pytest.fixture
def client(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_connections: list[TrackedConnection],
) -> Iterator[ChanliteTestClient]:
    monkeypatch.setattr(chat, "DB_PATH", str(tmp_path / "chat.db"))
    app = Chanlite(chat.routes, app=chat.site, secret_key=SECRET_KEY, **chat.OPTIONS)
    with ChanliteTestClient(app) as test_client:
        yield test_client
    # Every database connection of the test, the example's and the test's own, is
    # closed once the app has stopped.
    assert [conn for conn in sqlite_connections if not conn.was_closed] == []


def log_in(client: ChanliteTestClient, name: str) -> None:
    response = client.post("/login", data={"name": name}, follow_redirects=False)
    assert response.status_code == 303


def cookie_of(client: ChanliteTestClient, name: str) -> dict[str, str]:
    """Log ``name`` in and return the headers that carry their session."""
    client.cookies.clear()
    log_in(client, name)
    headers = {"cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}
    client.cookies.clear()
    return headers


def receive(ws: WebSocketTestSession) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.receive_text())
    return frame


def joined(ws: WebSocketTestSession) -> tuple[list[dict[str, Any]], list[str]]:
    """The history and the presence list that a socket gets when it joins (the list
    comes from the consumer of its join's announcement, so either may come first)."""
    frames = {frame["type"]: frame for frame in (receive(ws), receive(ws))}
    return frames["history"]["messages"], frames["presence"]["users"]


def presence(ws: WebSocketTestSession) -> list[str]:
    frame = receive(ws)
    assert frame["type"] == "presence"
    users: list[str] = frame["users"]
    return users


def message(row_id: int, room: str, user: str, text: str) -> dict[str, Any]:
    return {"type": "message", "id": row_id, "room": room, "user": user, "text": text}


def rows(query: str) -> list[tuple[Any, ...]]:
    """What ``query`` finds in the example's database."""
    with closing(sqlite3.connect(chat.DB_PATH)) as db:
        return db.execute(query).fetchall()


def test_a_database_that_cannot_be_used_is_closed_after_the_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_connections: list[TrackedConnection],
) -> None:
    not_a_database = tmp_path / "chat.db"
    not_a_database.write_bytes(b"this is not a SQLite database file" * 100)
    monkeypatch.setattr(chat, "DB_PATH", str(not_a_database))
    with pytest.raises(sqlite3.DatabaseError), chat.database():
        pass
    assert len(sqlite_connections) == 1
    assert sqlite_connections[0].was_closed


# -- pages and sockets -------------------------------------------------------------------


def test_login_page_then_chat_page(client: ChanliteTestClient) -> None:
    assert 'action="/login"' in client.get("/").text
    log_in(client, "Alice")
    page = client.get("/").text
    assert 'Logged in as <b id="user">Alice</b>' in page
    assert '<script src="/chanlite.js"></script>' in page and "new ChanliteSocket(" in page
    client.post("/logout")
    assert 'action="/login"' in client.get("/").text


def test_the_page_script_is_served(client: ChanliteTestClient) -> None:
    response = client.get("/chanlite.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/javascript")
    assert "ChanliteSocket" in response.text


@pytest.mark.parametrize("name", ["", " ", "x" * 33, "<script>", "a/b"])
def test_bad_names_are_refused(client: ChanliteTestClient, name: str) -> None:
    response = client.post("/login", data={"name": name})
    assert response.status_code == 400
    assert "name" in response.text


def test_anonymous_sockets_are_closed_with_a_refusal_code(client: ChanliteTestClient) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/chat/lobby/") as ws,
    ):
        ws.receive_text()
    assert closed.value.code == chat.NOT_LOGGED_IN
    assert 4000 <= chat.NOT_LOGGED_IN <= 4999  # chanlite.js does not reconnect
    client.run_until_idle()
    assert client.group_channels("chat-lobby") == set()


def test_echo(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/echo/") as ws:
        ws.send_text("ping")
        assert ws.receive_text() == "ping"


# -- messages and history ----------------------------------------------------------------


def test_rooms_broadcast_with_names_and_store(client: ChanliteTestClient) -> None:
    alice_cookie, bob_cookie = cookie_of(client, "Alice"), cookie_of(client, "Bob")
    with client.websocket_connect("/chat/lobby/", headers=alice_cookie) as alice:
        assert joined(alice) == ([], ["Alice"])
        with (
            client.websocket_connect("/chat/lobby/", headers=bob_cookie) as bob,
            client.websocket_connect("/chat/other/", headers=bob_cookie) as bob_elsewhere,
        ):
            assert joined(bob) == ([], ["Alice", "Bob"])
            assert joined(bob_elsewhere) == ([], ["Bob"])
            assert presence(alice) == ["Alice", "Bob"]
            alice.send_text("hello lobby")
            expected = message(1, "lobby", "Alice", "hello lobby")
            assert receive(alice) == expected
            assert receive(bob) == expected
            bob_elsewhere.send_text("hello other")
            assert receive(bob_elsewhere) == message(2, "other", "Bob", "hello other")
    assert rows("SELECT room, user, text FROM messages ORDER BY rowid") == [
        ("lobby", "Alice", "hello lobby"),
        ("other", "Bob", "hello other"),
    ]


def test_blank_messages_are_neither_stored_nor_sent(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/chat/lobby/", headers=cookie_of(client, "Alice")) as alice:
        joined(alice)
        alice.send_text("  ")
        alice.send_text("")
        alice.send_text("real")
        assert receive(alice) == message(1, "lobby", "Alice", "real")
    assert rows("SELECT text FROM messages") == [("real",)]


def test_joining_sends_the_rooms_last_messages_oldest_first(
    client: ChanliteTestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat, "HISTORY_SIZE", 3)
    alice_cookie, bob_cookie = cookie_of(client, "Alice"), cookie_of(client, "Bob")
    with client.websocket_connect("/chat/lobby/", headers=alice_cookie) as alice:
        joined(alice)
        for text in ("one", "two", "three", "four"):
            alice.send_text(text)
            assert receive(alice)["text"] == text
    with client.websocket_connect("/chat/other/", headers=alice_cookie) as elsewhere:
        joined(elsewhere)
        elsewhere.send_text("not in the lobby")
        assert receive(elsewhere)["room"] == "other"
    with client.websocket_connect("/chat/lobby/", headers=bob_cookie) as bob:
        history, users = joined(bob)
    assert history == [
        message(2, "lobby", "Alice", "two"),
        message(3, "lobby", "Alice", "three"),
        message(4, "lobby", "Alice", "four"),
    ]
    assert users == ["Bob"]


# -- presence ---------------------------------------------------------------------------


def test_presence_follows_joins_and_leaves(client: ChanliteTestClient) -> None:
    alice_cookie, bob_cookie = cookie_of(client, "Alice"), cookie_of(client, "Bob")
    with client.websocket_connect("/chat/lobby/", headers=alice_cookie) as alice:
        assert joined(alice)[1] == ["Alice"]
        with client.websocket_connect("/chat/lobby/", headers=bob_cookie) as bob:
            assert joined(bob)[1] == ["Alice", "Bob"]
            assert presence(alice) == ["Alice", "Bob"]
        assert presence(alice) == ["Alice"]
    client.run_until_idle()
    assert client.group_channels("chat-lobby") == set()
    assert Group("chat-lobby", client.layer).presence() == {}


def test_a_user_in_two_tabs_is_listed_once_until_both_leave(client: ChanliteTestClient) -> None:
    alice_cookie, bob_cookie = cookie_of(client, "Alice"), cookie_of(client, "Bob")
    with client.websocket_connect("/chat/lobby/", headers=bob_cookie) as bob:
        joined(bob)
        with client.websocket_connect("/chat/lobby/", headers=alice_cookie) as first_tab:
            assert joined(first_tab)[1] == ["Alice", "Bob"]
            assert presence(bob) == ["Alice", "Bob"]
            with client.websocket_connect("/chat/lobby/", headers=alice_cookie) as second_tab:
                assert joined(second_tab)[1] == ["Alice", "Bob"]
                assert presence(bob) == ["Alice", "Bob"]
                assert presence(first_tab) == ["Alice", "Bob"]
                second_tab.send_text("from the second tab")
                for ws in (bob, first_tab, second_tab):
                    assert receive(ws)["text"] == "from the second tab"
            # One tab left: Alice is still here.
            assert presence(bob) == ["Alice", "Bob"]
        assert presence(bob) == ["Bob"]


# -- recovery ---------------------------------------------------------------------------


def v1_frames(ws: WebSocketTestSession) -> Iterator[dict[str, Any]]:
    """The frames of a ``chanlite.v1`` socket, unwrapped, up to its recovery frame
    (which comes last, as ``{"recovery": ...}``)."""
    while True:
        frame = receive(ws)
        if "recovery" in frame:
            yield frame
            return
        yield {**json.loads(frame["text"]), "position": frame.get("p")}


def test_a_page_that_comes_back_gets_what_it_missed_and_no_history(
    client: ChanliteTestClient,
) -> None:
    alice_cookie, bob_cookie = cookie_of(client, "Alice"), cookie_of(client, "Bob")
    v1 = {"subprotocols": ["chanlite.v1"]}
    with client.websocket_connect(
        "/chat/lobby/?chanlite_client=tab-1", headers=alice_cookie, **v1
    ) as alice:
        first = list(v1_frames(alice))
        position = first[-1]["recovery"]["positions"]["chat-lobby"]
        # Her join's presence frame may come after the recovery frame; once it has
        # come, no announcement of hers can reach Bob's socket.
        while "presence" not in [frame.get("type") for frame in first]:
            first.append(json.loads(receive(alice)["text"]))
    with client.websocket_connect("/chat/lobby/", headers=bob_cookie) as bob:
        joined(bob)
        bob.send_text("while you were away")
        assert receive(bob)["text"] == "while you were away"
    positions = quote(json.dumps({"chat-lobby": position}))
    url = f"/chat/lobby/?chanlite_client=tab-1&chanlite_positions={positions}"
    with client.websocket_connect(url, headers=alice_cookie, **v1) as again:
        frames = list(v1_frames(again))
    assert frames[-1]["recovery"]["recovered"] == {"chat-lobby": True}
    texts = [frame.get("text") for frame in frames if frame.get("type") == "message"]
    assert texts == ["while you were away"]
    assert "history" not in [frame.get("type") for frame in frames]
