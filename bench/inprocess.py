"""In-memory WebSockets that drive a ``Chanlite`` app through its ASGI interface in
the benchmark's own process: no network, no uvicorn, no load generator, so what a
suite measures is chanlite's own work.

A :class:`Socket` is the client side: it puts ASGI ``websocket.*`` events in the
app's receive queue and collects what the app sends. The handshake's query string
and offered subprotocols go in its scope, as a server would put them there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from chanlite import Chanlite

from .core import Sample, check


@dataclass
class Socket:
    """The client side of one in-memory WebSocket to an ASGI app."""

    path: str
    #: The handshake's query string, already URL-encoded (without the ``?``).
    query_string: str = ""
    #: The subprotocols the client offers, in order of preference.
    subprotocols: tuple[str, ...] = ()
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    outbox: asyncio.Queue[MutableMapping[str, Any]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None

    def scope(self) -> dict[str, Any]:
        """The ASGI connection scope of the handshake."""
        return {
            "type": "websocket",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": self.query_string.encode("ascii"),
            "headers": [(b"host", b"bench")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
            "subprotocols": list(self.subprotocols),
            "extensions": {},
        }

    async def open(self, app: Chanlite) -> MutableMapping[str, Any]:
        """Start the app's side, wait for the accept and return it."""
        self.task = asyncio.get_running_loop().create_task(
            app(self.scope(), self.inbox.get, self._sent)
        )
        self.inbox.put_nowait({"type": "websocket.connect"})
        accepted = await self.outbox.get()
        check(accepted["type"] == "websocket.accept", f"not accepted: {accepted}")
        return accepted

    async def _sent(self, message: MutableMapping[str, Any]) -> None:
        self.outbox.put_nowait(message)

    def send(self, text: str) -> None:
        """Send a text frame to the app."""
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})

    async def close(self) -> None:
        """Close the socket from the client's side and wait for the app's side."""
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1000})
        if self.task is not None:
            await self.task


async def open_all(app: Chanlite, path: str, count: int) -> list[Socket]:
    """``count`` sockets to ``path``, opened one after another."""
    sockets = [Socket(path) for _ in range(count)]
    for sock in sockets:
        await sock.open(app)
    return sockets


def cpu_sample(start: float, count: int) -> Sample:
    """``count`` operations in the process CPU time since ``start`` (``process_time``):
    what the work cost, whatever else the machine ran meanwhile."""
    return Sample(count, time.process_time() - start)


async def fanout(
    app: Chanlite,
    path: str,
    members: int,
    broadcasts: int,
    frame: str,
    settle: Callable[[], object] | None = None,
) -> Sample:
    """``members`` sockets in the room at ``path``, the first sending ``frame``
    ``broadcasts`` times; times the deliveries (the rate is deliveries per second of
    this process's CPU), each checked. ``settle`` (a tracer provider's
    ``force_flush``) runs before the timing, so that what opening the sockets left
    to do stays out of it, and again inside it, so that what the deliveries left to
    do is in."""
    sockets = await open_all(app, path, members)
    if settle is not None:
        settle()
    start = time.process_time()
    for _ in range(broadcasts):
        sockets[0].send(frame)
        for sock in sockets:
            reply = await sock.outbox.get()
            check(reply.get("text") == frame, f"wrong delivery: {reply}")
    if settle is not None:
        settle()
    sample = cpu_sample(start, broadcasts * members)
    await asyncio.gather(*(sock.close() for sock in sockets))
    return sample
