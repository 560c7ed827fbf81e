"""The liveblog example: a post published by an HTTP view is stored in SQLite and
reaches every reader's socket through the ``liveblog`` group."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from websockets.asyncio.client import connect

from chanlite import Chanlite
from chanlite.testing import ChanliteTestClient
from examples.liveblog import app as liveblog
from tests.conftest import TrackedConnection, require_browser
from tests.e2e.server import Served, serve

#: How long a reader waits for a live post.
RECEIVE_TIMEOUT = 10.0
#: How long a browser page may take to show what a test waits for, in ms.
WAIT_MS = 30_000


@pytest.fixture
def client(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_connections: list[TrackedConnection],
) -> Iterator[ChanliteTestClient]:
    monkeypatch.setattr(liveblog, "DB_PATH", str(tmp_path / "liveblog.db"))
    with ChanliteTestClient(Chanlite(liveblog.routes, app=liveblog.site)) as test_client:
        yield test_client
    assert [conn for conn in sqlite_connections if not conn.was_closed] == []


def test_a_database_that_cannot_be_used_is_closed_after_the_error(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sqlite_connections: list[TrackedConnection],
) -> None:
    not_a_database = tmp_path / "liveblog.db"
    not_a_database.write_bytes(b"this is not a SQLite database file" * 100)
    monkeypatch.setattr(liveblog, "DB_PATH", str(not_a_database))
    with pytest.raises(sqlite3.DatabaseError):
        liveblog.load_posts()
    with pytest.raises(sqlite3.DatabaseError):
        liveblog.save_post("title", "body")
    assert len(sqlite_connections) == 2
    assert all(conn.was_closed for conn in sqlite_connections)


def test_page_shows_existing_posts_newest_first_and_escaped(client: ChanliteTestClient) -> None:
    liveblog.save_post("First", "plain text")
    liveblog.save_post("<script>alert(1)</script>", "fish & chips")
    page = client.get("/").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "fish &amp; chips" in page
    assert page.index('data-id="2"') < page.index('data-id="1"')
    assert '<script src="/chanlite.js"></script>' in page
    assert 'new ChanliteSocket("/liveblog/"' in page


def test_the_page_script_is_served(client: ChanliteTestClient) -> None:
    response = client.get("/chanlite.js")
    assert response.status_code == 200
    assert "ChanliteSocket" in response.text


def test_two_readers_get_a_post_published_as_json(client: ChanliteTestClient) -> None:
    with (
        client.websocket_connect("/liveblog/") as alice,
        client.websocket_connect("/liveblog/") as bob,
    ):
        assert len(client.group_channels(liveblog.GROUP)) == 2
        response = client.post("/posts", json={"title": " Kick-off ", "body": "We are live."})
        assert response.status_code == 201
        post = response.json()
        assert post["title"] == "Kick-off" and post["body"] == "We are live."
        assert json.loads(alice.receive_text()) == post
        assert json.loads(bob.receive_text()) == post
    assert liveblog.load_posts() == [post]


def test_a_form_post_is_stored_sent_and_redirects(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/liveblog/") as reader:
        response = client.post(
            "/posts", data={"title": "Half time", "body": "1 - 0"}, follow_redirects=False
        )
        assert response.status_code == 303 and response.headers["location"] == "/"
        live = json.loads(reader.receive_text())
    assert (live["id"], live["title"], live["body"]) == (1, "Half time", "1 - 0")
    assert "Half time" in client.get("/").text


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"title": "", "body": "text"}, "title"),
        ({"title": "t", "body": "   "}, "body"),
        ({"title": "x" * 201, "body": "text"}, "title"),
        ({"title": 1, "body": "text"}, "strings"),
        (["not", "an", "object"], "object"),
    ],
)
def test_bad_posts_are_refused_and_not_stored(
    client: ChanliteTestClient, body: Any, error: str
) -> None:
    response = client.post("/posts", json=body)
    assert response.status_code == 400
    assert error in response.text
    assert liveblog.load_posts() == []


def test_invalid_json_and_oversized_bodies_are_refused(client: ChanliteTestClient) -> None:
    headers = {"content-type": "application/json"}
    assert client.post("/posts", content=b"{nope", headers=headers).status_code == 400
    huge = json.dumps({"title": "t", "body": "x" * (liveblog.MAX_REQUEST + 1)})
    assert client.post("/posts", content=huge, headers=headers).status_code == 413
    assert liveblog.load_posts() == []


def test_posts_after_an_id_for_catching_up(client: ChanliteTestClient) -> None:
    first, second, third = (liveblog.save_post(f"post {n}", "text") for n in range(3))
    assert client.get("/posts").json() == [first, second, third]
    assert client.get("/posts", params={"after": first["id"]}).json() == [second, third]
    assert client.get("/posts", params={"after": third["id"]}).json() == []
    assert client.get("/posts", params={"after": "-1"}).status_code == 400


def test_a_closed_reader_leaves_the_group(client: ChanliteTestClient) -> None:
    with client.websocket_connect("/liveblog/"):
        assert len(client.group_channels(liveblog.GROUP)) == 1
    client.run_until_idle()
    assert client.group_channels(liveblog.GROUP) == set()


# -- a real ``chanlite serve`` --------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("liveblog") / "liveblog.db"
    with serve("examples.liveblog.app:app", env={"LIVEBLOG_DB": str(db)}) as served:
        yield served


@pytest.mark.anyio
async def test_served_two_readers_get_a_post_published_over_http(server: Served) -> None:
    async with (
        connect(f"{server.ws}/liveblog/") as alice,
        connect(f"{server.ws}/liveblog/") as bob,
        httpx.AsyncClient(base_url=server.http) as http,
    ):
        response = await http.post("/posts", json={"title": "Live", "body": "From the pitch"})
        assert response.status_code == 201
        post = response.json()
        received = await asyncio.wait_for(asyncio.gather(alice.recv(), bob.recv()), RECEIVE_TIMEOUT)
        assert [json.loads(frame) for frame in received] == [post, post]
        page = (await http.get("/")).text
    assert f'data-id="{post["id"]}"><h2>Live</h2>' in page


# -- in a real browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        try:
            yield browser
        finally:
            browser.close()


def open_reader(browser: Browser, server: Served) -> Page:
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server.http}/")
    expect(page.locator("#state")).to_have_text("open", timeout=WAIT_MS)
    return page


@pytest.mark.browser
def test_two_pages_show_posts_live_as_text(browser: Browser, server: Served) -> None:
    alice, bob = open_reader(browser, server), open_reader(browser, server)
    try:
        alice.get_by_text("Publish a post").click()
        alice.get_by_label("title").fill("<b>Goal</b>")
        alice.get_by_label("body").fill("1 - 0 & counting")
        alice.get_by_role("button", name="Publish").click()
        # The browser's post must be in before the next one, for "newest first" to hold.
        expect(alice.locator("article h2").first).to_have_text("<b>Goal</b>", timeout=WAIT_MS)
        httpx.post(f"{server.http}/posts", json={"title": "Half time", "body": "Tea."})
        for page in (alice, bob):
            newest = page.locator("article h2").first
            expect(newest).to_have_text("Half time", timeout=WAIT_MS)
            posted = page.locator("article", has_text="<b>Goal</b>")
            expect(posted.locator("p")).to_have_text("1 - 0 & counting", timeout=WAIT_MS)
            assert page.locator("article h2 b").count() == 0  # shown as text, not markup
        expect(alice.get_by_label("title")).to_have_value("")  # the form was reset
    finally:
        alice.close()
        bob.close()
