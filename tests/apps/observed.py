"""An app for the observability tests: known traffic with known counts.

``/echo/`` echoes, ``/boom/`` raises, ``/slow/`` runs past its ``consumer_timeout``,
``/fill/`` sends one message more than ``observed.sink`` holds (nobody reads it), and
``/linger/`` holds its message until the file named by ``LINGER_RELEASE`` exists.
Only WebSockets from :data:`ORIGIN` are accepted.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from chanlite import Chanlite, Channel, Message, Routes
from chanlite.layers.base import DEFAULT_CAPACITY

ORIGIN = "http://good.example"
CONSUMER_TIMEOUT = 0.5
#: A channel no consumer reads, filled past its capacity by ``/fill/``.
SINK = "observed.sink"

routes = Routes()


@routes.consumer("websocket.receive", path=r"^/echo/$")
async def echo(message: Message) -> None:
    await message.reply_channel.asend({"text": message["text"]})  # type: ignore[union-attr]


@routes.consumer("websocket.receive", path=r"^/boom/$")
async def boom(message: Message) -> None:
    raise RuntimeError("boom, as the test asked")


@routes.consumer("websocket.receive", path=r"^/slow/$")
async def slow(message: Message) -> None:
    await asyncio.sleep(CONSUMER_TIMEOUT * 20)  # given up on at consumer_timeout


@routes.consumer("websocket.receive", path=r"^/fill/$")
async def fill(message: Message) -> None:
    for number in range(DEFAULT_CAPACITY + 1):
        await Channel(SINK).asend({"number": number})


@routes.consumer("websocket.receive", path=r"^/linger/$")
def linger(message: Message) -> None:
    release = Path(os.environ["LINGER_RELEASE"])
    while not release.exists():  # the test creates it once it has seen what it waits for
        time.sleep(0.02)
    message.reply_channel.send({"text": "released"})  # type: ignore[union-attr]


app = Chanlite(routes, consumer_timeout=CONSUMER_TIMEOUT, allowed_origins=[ORIGIN])
#: The same routes with no consumer_timeout, for ``/linger/``.
lingering = Chanlite(routes, consumer_timeout=None, allowed_origins=[ORIGIN])
