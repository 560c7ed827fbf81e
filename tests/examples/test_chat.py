"""The chat example: echo, rooms through Groups, and the chat-messages channel that
stores every message in SQLite before broadcasting it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from chanlite import Chanlite
from chanlite.testing import ChanliteTestClient
from examples.chat import app as chat


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ChanliteTestClient]:
    monkeypatch.setattr(chat, "DB_PATH", str(tmp_path / "chat.db"))
    with ChanliteTestClient(Chanlite(chat.routes)) as test_client:
        yield test_client


def test_page_is_served(client: ChanliteTestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "new WebSocket" in response.text


def test_echo(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/echo/") as ws:
        ws.send_text("ping")
        assert ws.receive_text() == "ping"


def test_rooms_broadcast_and_store(client: ChanliteTestClient) -> None:
    with (
        client.websocket_connect("/chat/lobby/") as alice,
        client.websocket_connect("/chat/lobby/") as bob,
        client.websocket_connect("/chat/other/") as carol,
    ):
        alice.send_text("hello lobby")
        expected = {"room": "lobby", "text": "hello lobby"}
        assert json.loads(alice.receive_text()) == expected
        assert json.loads(bob.receive_text()) == expected
        carol.send_text("hello other")
        assert json.loads(carol.receive_text()) == {"room": "other", "text": "hello other"}
    with sqlite3.connect(chat.DB_PATH) as db:
        rows = db.execute("SELECT room, text FROM messages ORDER BY rowid").fetchall()
    assert rows == [("lobby", "hello lobby"), ("other", "hello other")]


def test_leaving_removes_socket_from_room(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/chat/lobby/"):
        assert len(client.group_channels("chat-lobby")) == 1
    client.run_until_idle()
    assert client.group_channels("chat-lobby") == set()
