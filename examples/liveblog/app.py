"""A liveblog: posts published over HTTP appear at once on every reader's page.

* ``GET /``: the blog, newest post first, with a form to publish. The page opens a
  socket to ``/liveblog/``, which joins the ``liveblog`` group.
* ``POST /posts``: publish a post (a form or JSON with ``title`` and ``body``). The
  view stores it in SQLite and sends it to the ``liveblog`` group, so every open page
  shows it without reloading.
* ``GET /posts?after=ID``: the posts newer than ``ID``, as JSON, for pages that were
  offline for a moment (a socket reconnecting misses the posts sent meanwhile).

Run it with ``chanlite serve examples.liveblog.app:app``.
"""

from __future__ import annotations

import html
import json
import os
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from chanlite import Chanlite, Group, Message, Routes
from chanlite.static import javascript_route

routes = Routes()

#: The group every reader's socket joins.
GROUP = "liveblog"
#: Where posts are stored; override with LIVEBLOG_DB.
DB_PATH = os.environ.get("LIVEBLOG_DB", "liveblog.db")
#: Longest title and body accepted, in characters.
MAX_TITLE, MAX_BODY = 200, 10_000
#: Largest request body read by the publish view, in bytes.
MAX_REQUEST = 64 * 1024
_PAGE = (Path(__file__).parent / "index.html").read_text()
_SCHEMA = """CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT, body TEXT, created TEXT
)"""


# -- storage -------------------------------------------------------------------------


def _connect() -> sqlite3.Connection:
    """A connection to :data:`DB_PATH` with the posts table in place; the caller
    closes it."""
    db = sqlite3.connect(DB_PATH, timeout=10)
    try:
        db.row_factory = sqlite3.Row
        db.execute(_SCHEMA)
    except BaseException:
        db.close()  # the caller never gets it, so it cannot close it
        raise
    return db


def save_post(title: str, body: str) -> dict[str, Any]:
    """Store a post and return it as sent to readers."""
    created = datetime.now(UTC).isoformat(timespec="seconds")
    with closing(_connect()) as db, db:
        cursor = db.execute(
            "INSERT INTO posts (title, body, created) VALUES (?, ?, ?)", (title, body, created)
        )
    return {"id": cursor.lastrowid, "title": title, "body": body, "created": created}


def load_posts(after: int = 0) -> list[dict[str, Any]]:
    """The posts with an id above ``after``, oldest first."""
    with closing(_connect()) as db:
        rows = db.execute(
            "SELECT id, title, body, created FROM posts WHERE id > ? ORDER BY id", (after,)
        ).fetchall()
    return [dict(row) for row in rows]


# -- views ---------------------------------------------------------------------------


def home(request: Request) -> Response:
    """The blog page with every post so far, newest first."""
    posts = load_posts()
    articles = "\n".join(render_post(post) for post in reversed(posts))
    return HTMLResponse(_PAGE.replace("{{posts}}", articles))


def render_post(post: dict[str, Any]) -> str:
    """One post as HTML, the same markup the page's script builds for live posts."""
    return (
        f'<article data-id="{post["id"]}"><h2>{html.escape(post["title"])}</h2>'
        f"<time>{html.escape(post['created'])}</time><p>{html.escape(post['body'])}</p>"
        "</article>"
    )


def posts_after(request: Request) -> Response:
    """The posts newer than ``?after=ID``, oldest first."""
    after = request.query_params.get("after", "0")
    if not after.isdigit():
        return PlainTextResponse("after must be a post id", 400)
    return JSONResponse(load_posts(int(after)))


async def publish(request: Request) -> Response:
    """Store a post from a form or JSON body, then send it to every reader."""
    raw = await request.body()
    if len(raw) > MAX_REQUEST:
        return PlainTextResponse(f"a post is at most {MAX_REQUEST} bytes", 413)
    is_json = request.headers.get("content-type", "").startswith("application/json")
    fields = parse_json(raw) if is_json else parse_form(raw)
    if isinstance(fields, str):
        return PlainTextResponse(fields, 400)
    title, body = fields
    post = await run_in_threadpool(save_post, title, body)
    await Group(GROUP).asend({"text": json.dumps(post)})
    if is_json:
        return JSONResponse(post, 201)
    return RedirectResponse("/", status_code=303)


def parse_json(raw: bytes) -> tuple[str, str] | str:
    """``(title, body)`` from a JSON object, or what is wrong with it."""
    try:
        data = json.loads(raw)
    except ValueError:
        return "the body is not valid JSON"
    if not isinstance(data, dict):
        return "the body must be a JSON object with title and body"
    return validate(data.get("title"), data.get("body"))


def parse_form(raw: bytes) -> tuple[str, str] | str:
    """``(title, body)`` from an urlencoded form, or what is wrong with it."""
    form = parse_qs(raw.decode("utf-8", "replace"))
    return validate((form.get("title") or [""])[0], (form.get("body") or [""])[0])


def validate(title: object, body: object) -> tuple[str, str] | str:
    """Stripped ``(title, body)`` when both are non-empty strings of a sane length."""
    if not isinstance(title, str) or not isinstance(body, str):
        return "title and body must be strings"
    title, body = title.strip(), body.strip()
    if not 1 <= len(title) <= MAX_TITLE:
        return f"a title is 1-{MAX_TITLE} characters"
    if not 1 <= len(body) <= MAX_BODY:
        return f"a body is 1-{MAX_BODY} characters"
    return title, body


site = Starlette(
    routes=[
        Route("/", home),
        Route("/posts", posts_after, methods=["GET"]),
        Route("/posts", publish, methods=["POST"]),
        javascript_route(),
    ]
)


# -- consumers -------------------------------------------------------------------------


@routes.consumer("websocket.connect", path=r"^/liveblog/$")
def join(message: Message) -> None:
    """Add a reader's socket to the group, then accept it."""
    Group(GROUP).add(message.reply_channel)  # type: ignore[arg-type]
    message.reply_channel.send({"accept": True})  # type: ignore[union-attr]


@routes.consumer("websocket.disconnect", path=r"^/liveblog/$")
def leave(message: Message) -> None:
    """Remove a reader's socket from the group."""
    Group(GROUP).discard(message.reply_channel)  # type: ignore[arg-type]


#: The whole app: the site's views, and the consumers above.
app = Chanlite(routes, app=site)
