"""The chat example: login, echo, rooms through Groups with authors' names, and the
chat-messages channel that stores every message in SQLite before broadcasting it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from chanlite import Chanlite
from chanlite.sessions import SESSION_COOKIE
from chanlite.testing import ChanliteTestClient
from examples.chat import app as chat

SECRET_KEY = "chat-example-test-secret-key-0123"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChanliteTestClient]:
    monkeypatch.setattr(chat, "DB_PATH", str(tmp_path / "chat.db"))
    app = Chanlite(chat.routes, app=chat.site, secret_key=SECRET_KEY)
    with ChanliteTestClient(app) as test_client:
        yield test_client


def log_in(client: ChanliteTestClient, name: str) -> None:
    response = client.post("/login", data={"name": name}, follow_redirects=False)
    assert response.status_code == 303


def test_login_page_then_chat_page(client: ChanliteTestClient) -> None:
    assert 'action="/login"' in client.get("/").text
    log_in(client, "Alice")
    page = client.get("/").text
    assert "new WebSocket" in page and 'Logged in as <b id="user">Alice</b>' in page
    client.post("/logout")
    assert 'action="/login"' in client.get("/").text


@pytest.mark.parametrize("name", ["", " ", "x" * 33, "<script>", "a/b"])
def test_bad_names_are_refused(client: ChanliteTestClient, name: str) -> None:
    response = client.post("/login", data={"name": name})
    assert response.status_code == 400
    assert "name" in response.text


def test_anonymous_sockets_are_refused(client: ChanliteTestClient) -> None:
    with (
        pytest.raises((WebSocketDisconnect, WebSocketDenialResponse)),
        client.websocket_connect("/chat/lobby/"),
    ):
        pass


def test_echo(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/echo/") as ws:
        ws.send_text("ping")
        assert ws.receive_text() == "ping"


def cookie_of(client: ChanliteTestClient, name: str) -> dict[str, str]:
    """Log ``name`` in and return the headers that carry their session."""
    client.cookies.clear()
    log_in(client, name)
    return {"cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}


def test_rooms_broadcast_with_names_and_store(client: ChanliteTestClient) -> None:
    alice_cookie, bob_cookie = cookie_of(client, "Alice"), cookie_of(client, "Bob")
    client.cookies.clear()
    with (
        client.websocket_connect("/chat/lobby/", headers=alice_cookie) as alice,
        client.websocket_connect("/chat/lobby/", headers=bob_cookie) as bob,
        client.websocket_connect("/chat/other/", headers=bob_cookie) as bob_elsewhere,
    ):
        alice.send_text("hello lobby")
        expected = {"room": "lobby", "user": "Alice", "text": "hello lobby"}
        assert json.loads(alice.receive_text()) == expected
        assert json.loads(bob.receive_text()) == expected
        bob_elsewhere.send_text("hello other")
        received = json.loads(bob_elsewhere.receive_text())
        assert received == {"room": "other", "user": "Bob", "text": "hello other"}
    with sqlite3.connect(chat.DB_PATH) as db:
        rows = db.execute("SELECT room, user, text FROM messages ORDER BY rowid").fetchall()
    assert rows == [("lobby", "Alice", "hello lobby"), ("other", "Bob", "hello other")]


def test_leaving_removes_socket_from_room(client: ChanliteTestClient) -> None:
    log_in(client, "Alice")
    with client.websocket_connect("/chat/lobby/"):
        assert len(client.group_channels("chat-lobby")) == 1
    client.run_until_idle()
    assert client.group_channels("chat-lobby") == set()
