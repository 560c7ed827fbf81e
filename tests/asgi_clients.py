"""Fake WebSocket clients that talk to a ``Chanlite`` app through ASGI, in-process,
and bounded waits for what they see."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from chanlite import Chanlite
from chanlite.layers.memory import InMemoryChannelLayer

#: Longest any wait of these tests lasts.
TIMEOUT = 5.0


class FakeClient:
    """One WebSocket client talking to ``app`` through ASGI, without a network."""

    def __init__(
        self,
        app: Chanlite,
        path: str = "/",
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        query_string: bytes = b"",
        subprotocols: list[str] | None = None,
    ) -> None:
        self.app = app
        self.path = path
        self.headers = headers or []
        self.query_string = query_string
        self.subprotocols = subprotocols or []
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def connect(self) -> None:
        """Start the handshake (the app runs in a task of its own)."""
        scope = {
            "type": "websocket",
            "path": self.path,
            "root_path": "",
            "query_string": self.query_string,
            "headers": [(b"host", b"test"), *self.headers],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
            "scheme": "ws",
            "subprotocols": self.subprotocols,
            "extensions": {"websocket.http.response": {}},
        }
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.get_running_loop().create_task(
            self.app(scope, self.inbox.get, self._record)
        )

    async def _record(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self.changed.set()
        if message["type"] == "websocket.close" and self.status == "open":
            # As uvicorn does: the app's own close comes back as a disconnect.
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": message["code"]})

    def send_text(self, text: str) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": text})

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [message for message in self.sent if message["type"] == kind]

    @property
    def texts(self) -> list[str]:
        return [message["text"] for message in self.of_type("websocket.send")]

    @property
    def status(self) -> str | None:
        """ "open", "closed" or "refused <status>", once the handshake is decided."""
        for message in self.sent:
            if message["type"] == "websocket.accept":
                return "open"
            if message["type"] == "websocket.close":
                return "closed"
            if message["type"] == "websocket.http.response.start":
                return f"refused {message['status']}"
        return None

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(TIMEOUT):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    async def finished(self) -> None:
        assert self.task is not None
        async with asyncio.timeout(TIMEOUT):
            await self.task


async def until(condition: Callable[[], bool]) -> None:
    """Wait (boundedly) for a condition that no event announces, such as layer state."""
    async with asyncio.timeout(TIMEOUT):
        # Layer state announces no event: look again after every other task has had
        # a turn (bounded by the timeout; no time passes between looks).
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0)


async def until_depth(layer: InMemoryChannelLayer, channel: str, depth: int) -> None:
    """Wait (boundedly) until ``channel`` holds ``depth`` messages."""
    async with asyncio.timeout(TIMEOUT):
        while (await layer.stats())["channels"].get(channel, 0) != depth:  # noqa: ASYNC110
            await asyncio.sleep(0)


@asynccontextmanager
async def started(app: Chanlite) -> AsyncIterator[Chanlite]:
    await app.startup()
    try:
        yield app
    finally:
        await app.shutdown()
