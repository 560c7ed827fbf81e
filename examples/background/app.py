"""Background jobs: an HTTP view queues slow work and answers at once; the result
reaches the browser over its WebSocket when the work is done.

* ``GET /``: a page that makes a random client id, opens a socket to
  ``/results/<client>/`` (which joins the group ``browser-<client>``) and starts jobs.
* ``POST /jobs``: JSON (or a form) with ``client``, ``limit`` and ``seconds``. The view
  sends the job to the ``jobs`` channel and answers ``202 {"job": "<id>"}`` without
  waiting for it.
* The ``jobs`` consumer is a plain ``def``, so it runs in a worker thread: it tells the
  browser the job is running, sleeps ``seconds`` (standing for slow work such as a
  call to another service), counts the primes below ``limit``, and sends the result
  to the browser's group.

The view knows where to send the result because the page tells it: the client id in
the job names the same group the page's socket joined. A group, rather than the
socket's reply channel, survives the socket reconnecting and reaches every socket
the page has open.

Run it with ``chanlite serve examples.background.app:app``.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from chanlite import Chanlite, Channel, ChannelFull, Group, Message, Routes
from chanlite.static import javascript_route

routes = Routes()

#: The channel jobs wait on until a worker takes them.
JOBS = "jobs"
#: Client ids: long random tokens. With the ``browser-`` prefix this stays inside
#: the group-name rule (``^[a-zA-Z0-9\-_.]+$``, under 100 characters).
CLIENT_ID = re.compile(r"^[a-zA-Z0-9_-]{16,64}$")
#: The close code for a socket whose client id is malformed.
BAD_CLIENT_ID = 4400
#: Largest ``limit`` and ``seconds`` a job may ask for.
MAX_LIMIT, MAX_SECONDS = 10_000_000, 60.0
#: Largest request body read by the job view, in bytes.
MAX_REQUEST = 4096
_PAGE = (Path(__file__).parent / "index.html").read_text()


def browser_group(client: str) -> str:
    """The group of every socket a browser page with this client id has open."""
    return f"browser-{client}"


def count_primes(limit: int) -> int:
    """How many primes are below ``limit`` (a sieve of Eratosthenes)."""
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0] = sieve[1] = 0
    for n in range(2, int(limit**0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, limit, n)))
    return sum(sieve)


# -- views -------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    """The page that starts jobs and shows their results."""
    return HTMLResponse(_PAGE)


async def start_job(request: Request) -> Response:
    """Queue a job on the ``jobs`` channel and answer 202 at once."""
    raw = await request.body()
    if len(raw) > MAX_REQUEST:
        return PlainTextResponse(f"a job request is at most {MAX_REQUEST} bytes", 413)
    is_json = request.headers.get("content-type", "").startswith("application/json")
    job = parse_job(raw, is_json)
    if isinstance(job, str):
        return PlainTextResponse(job, 400)
    if not await Group(browser_group(job["client"])).achannels():
        # Nobody would hear the result: a group send to no member is dropped.
        return PlainTextResponse("no socket is open for this client id; connect first", 409)
    job["job"] = uuid.uuid4().hex
    try:
        await Channel(JOBS).asend(job)
    except ChannelFull:
        return PlainTextResponse("too many jobs waiting; try again soon", 503)
    return JSONResponse({"job": job["job"]}, 202)


def parse_job(raw: bytes, is_json: bool) -> dict[str, Any] | str:
    """The job fields from a JSON object or a form, or what is wrong with them."""
    if is_json:
        try:
            data = json.loads(raw)
        except ValueError:
            return "the body is not valid JSON"
        if not isinstance(data, dict):
            return "the body must be a JSON object"
    else:
        data = {key: values[0] for key, values in parse_qs(raw.decode("utf-8", "replace")).items()}
    return validate_job(data.get("client"), data.get("limit"), data.get("seconds", 0))


def validate_job(client: object, limit: object, seconds: object) -> dict[str, Any] | str:
    """A job message, when every field is in range; else what is wrong."""
    if not isinstance(client, str) or not CLIENT_ID.match(client):
        return "client must be 16-64 letters, digits, '-' or '_'"
    number = _number(limit)
    if number is None or number != int(number) or not 2 <= number <= MAX_LIMIT:
        return f"limit must be a whole number from 2 to {MAX_LIMIT}"
    delay = _number(seconds)
    if delay is None or not 0 <= delay <= MAX_SECONDS:
        return f"seconds must be a number from 0 to {MAX_SECONDS:g}"
    return {"client": client, "limit": int(number), "seconds": delay}


def _number(value: object) -> float | None:
    """A finite float from a JSON number or a form string, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


site = Starlette(
    routes=[
        Route("/", home),
        Route("/jobs", start_job, methods=["POST"]),
        javascript_route(),
    ]
)


# -- consumers ---------------------------------------------------------------------------


@routes.consumer("websocket.connect", path=r"^/results/(?P<client>[^/]*)/$")
def connect(message: Message, client: str) -> None:
    """Join the browser's group, or turn away a malformed client id."""
    reply = message.reply_channel
    assert reply is not None
    if not CLIENT_ID.match(client):
        # Accepted, then closed with an application code: a browser sees a refused
        # handshake as a network failure and retries, but chanlite.js stops for good
        # on a 4xxx close.
        reply.send({"accept": True})
        reply.send({"close": BAD_CLIENT_ID})
        return
    Group(browser_group(client)).add(reply)
    reply.send({"accept": True})


@routes.consumer("websocket.disconnect", path=r"^/results/(?P<client>[^/]*)/$")
def disconnect(message: Message, client: str) -> None:
    """Leave the browser's group."""
    if CLIENT_ID.match(client):
        Group(browser_group(client)).discard(message.reply_channel)  # type: ignore[arg-type]


@routes.consumer(JOBS)
def run_job(message: Message) -> None:
    """Do the slow work of one job and send the result to its browser."""
    group = Group(browser_group(message["client"]))
    job = message["job"]
    # Sent now, not when the consumer returns, so the page sees the job start.
    group.send({"text": json.dumps({"job": job, "state": "running"})}, immediately=True)
    started = time.monotonic()
    time.sleep(message["seconds"])
    primes = count_primes(message["limit"])
    result = {
        "job": job,
        "state": "done",
        "limit": message["limit"],
        "primes": primes,
        "elapsed": round(time.monotonic() - started, 3),
    }
    group.send({"text": json.dumps(result)})


#: The whole app: the site's views, and the consumers above.
app = Chanlite(routes, app=site)
