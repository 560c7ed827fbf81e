"""A channel layer of your own: a small in-process layer, checked and then served."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from chanlite import Chanlite, ChannelFull, Message, Routes
from chanlite._codec import decode
from chanlite.layers import BaseChannelLayer
from chanlite.names import (
    is_process_specific,
    queue_name,
    validate_channel_name,
    validate_group_name,
)
from chanlite.testing import ChanliteTestClient

# (expires at, full channel name, encoded payload)
Entry = tuple[float, str, bytes]


class DictLayer(BaseChannelLayer):
    """Channels and groups in dicts: one process, one event loop."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # expiry, group_expiry, capacity, ...
        self._queues: dict[str, deque[Entry]] = {}
        self._groups: dict[str, dict[str, float]] = {}  # group -> {channel: expires at}
        self._arrival = asyncio.Event()

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        name = queue_name(channel)  # "prefix!" for "prefix!local"
        queue = self._queues.setdefault(name, deque())
        self._drop_expired(queue)
        if len(queue) >= self.capacity_for(name):
            raise ChannelFull(channel, self.capacity_for(name))
        queue.append((time.monotonic() + self.expiry, channel, payload))
        self._arrival.set()  # wake every waiting receiver; each looks again
        self._arrival = asyncio.Event()

    async def receive(
        self, channels: Iterable[str], timeout: float | None = None
    ) -> tuple[str, dict[str, Any]] | tuple[None, None]:
        names = self.receive_names(channels)  # validates, refuses "prefix!local"
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for name in names:
                queue = self._queues.get(name)
                if queue:
                    self._drop_expired(queue)
                if queue:  # taken with no await in between: cancelling takes nothing
                    _, channel, payload = queue.popleft()
                    return channel, decode(payload)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None, None
            with contextlib.suppress(TimeoutError):  # then look once more
                async with asyncio.timeout(left):
                    await self._arrival.wait()

    async def group_add(self, group: str, channel: str) -> None:
        validate_group_name(group)
        validate_channel_name(channel)
        self._groups.setdefault(group, {})[channel] = time.monotonic() + self.group_expiry

    async def group_discard(self, group: str, channel: str) -> None:
        validate_group_name(group)
        validate_channel_name(channel)
        self._groups.get(group, {}).pop(channel, None)

    async def group_channels(self, group: str) -> set[str]:
        validate_group_name(group)
        members = self._groups.get(group, {})
        now = time.monotonic()
        for channel in [name for name, until in members.items() if until <= now]:
            del members[channel]
        return set(members)

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        for channel in await self.group_channels(group):
            try:
                await self.send_encoded(channel, payload)
            except ChannelFull:
                self.group_full_skips += 1  # a group send never raises ChannelFull

    async def flush(self) -> None:
        self._queues.clear()
        self._groups.clear()

    async def stats(self) -> dict[str, Any]:
        return {
            "channels": {name: len(queue) for name, queue in self._queues.items() if queue},
            "groups": {group: len(members) for group, members in self._groups.items()},
        }

    def _drop_expired(self, queue: deque[Entry]) -> None:
        while queue and queue[0][0] <= time.monotonic():
            _, channel, _ = queue.popleft()
            if is_process_specific(channel):  # a reader that stopped reading
                for members in self._groups.values():
                    members.pop(channel, None)


async def check_contract() -> None:
    """A few of the promises every layer keeps."""
    layer = DictLayer(capacity=2)
    await layer.send("proc!a", {"n": 1})
    await layer.send("proc!b", {"n": 2, "raw": b"\x00"})
    assert await layer.receive(["proc!"]) == ("proc!a", {"n": 1})  # FIFO, full name
    assert await layer.receive(["proc!"]) == ("proc!b", {"n": 2, "raw": b"\x00"})
    assert await layer.receive(["proc!"], timeout=0) == (None, None)

    await layer.send("jobs", {"n": 1})
    await layer.send("jobs", {"n": 2})
    try:
        await layer.send("jobs", {"n": 3})
        raise AssertionError("a third message fit a channel of capacity 2")
    except ChannelFull as full:
        assert full.capacity == 2

    short = DictLayer(expiry=0.1)
    await short.send("jobs", {"n": 1})
    await asyncio.sleep(0.3)  # it expires unread
    assert await short.receive(["jobs"], timeout=0) == (None, None)

    waiting = asyncio.create_task(layer.receive(["later"], timeout=5))
    await asyncio.sleep(0.01)
    await layer.send("later", {"n": 1})
    assert await waiting == ("later", {"n": 1})  # a waiting receiver wakes

    await layer.group_add("room", "proc!a")
    await layer.group_add("room", "proc!a")  # idempotent
    await layer.group_send("room", {"text": "hi"})
    assert await layer.receive(["proc!"]) == ("proc!a", {"text": "hi"})
    await layer.group_discard("room", "proc!a")
    assert await layer.group_channels("room") == set()
    await layer.aclose()


routes = Routes()


@routes.consumer("websocket.receive")
async def echo(message: Message) -> None:
    await message.reply_channel.asend({"text": message["text"]})


def serve_on_it() -> None:
    """The same app on the custom layer, through the test client."""
    app = Chanlite(
        routes,
        layer=DictLayer(),
        secret_key="a-long-random-key-for-this-demo",
        session_store="memory://",  # chanlite has no store for a layer it does not know
    )
    with ChanliteTestClient(app) as client, client.websocket_connect("/echo/") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "hello"


if __name__ == "__main__":
    asyncio.run(check_contract())
    serve_on_it()
    print("DictLayer keeps the checked promises and serves an echo app")
