"""``chanlite.js``, the browser client, and the route that serves it.

``ChanliteSocket`` (in ``chanlite.js``, shipped in this package) is a WebSocket that
decodes JSON frames, queues sends while it is not open and reconnects with
exponential backoff and full jitter, except after a close code that means the server
refused it (4000-4999, 1008). The file's header documents it in full.

Serving it is opt-in: add :func:`javascript_route` to the host Starlette app's routes
and load it from a page::

    site = Starlette(routes=[Route("/", home), javascript_route()])
    app = Chanlite(routes, app=site)

    <script src="/chanlite.js"></script>
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["JAVASCRIPT_PATH", "javascript_route"]

#: The client's source file.
JAVASCRIPT_PATH = Path(__file__).with_name("chanlite.js")
# The client is ASCII, but say so: a script without a charset takes the page's.
_MEDIA_TYPE = "application/javascript; charset=utf-8"
# The URL carries no version, so browsers revalidate on every use; the ETag turns
# that into a 304 without a body until chanlite (and so the file) changes.
_CACHE_CONTROL = "no-cache"


def javascript_route(path: str = "/chanlite.js") -> Route:
    """A Starlette ``Route`` (GET and HEAD, named ``chanlite_js``) that serves
    ``chanlite.js`` at ``path`` as ``application/javascript``, with an ETag and
    ``Cache-Control: no-cache``."""
    body = JAVASCRIPT_PATH.read_bytes()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"cache-control": _CACHE_CONTROL, "etag": etag}

    async def chanlite_js(request: Request) -> Response:
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=_MEDIA_TYPE, headers=headers)

    return Route(path, chanlite_js, methods=["GET"], name="chanlite_js")


def _matches(if_none_match: str | None, etag: str) -> bool:
    """True if an ``If-None-Match`` header names ``etag`` (weakly) or is ``*``."""
    if not if_none_match:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags
