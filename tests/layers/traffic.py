"""Numbered traffic through a layer for the failover tests (Sentinel, cluster):
a sender at a steady rate and a receiver, recording what was sent, what failed and
what arrived, so a test can tell lost messages from duplicates."""

from __future__ import annotations

import anyio

from chanlite import LayerError
from chanlite.layers import BaseChannelLayer

# Messages per second the sender sends.
RATE = 200


class Traffic:
    """Numbered messages sent through a layer at :data:`RATE` while a receiver takes
    them; a send that fails is never repeated (its message may or may not land)."""

    def __init__(self, layer: BaseChannelLayer, channel: str) -> None:
        self.layer, self.channel = layer, channel
        #: The number of the next message to send.
        self.next = 1
        #: The numbers whose send returned, and those whose send raised LayerError.
        self.sent: list[int] = []
        self.failed: list[int] = []
        self.received: list[int] = []
        self.sending = True

    async def send(self) -> None:
        while self.sending:
            number, self.next = self.next, self.next + 1
            try:
                await self.layer.send(self.channel, {"n": number})
            except LayerError:
                self.failed.append(number)
            else:
                self.sent.append(number)
            await anyio.sleep(1 / RATE)  # the sending rate, not a wait for anything

    async def receive(self) -> None:
        while True:
            _, message = await self.layer.receive([self.channel])
            assert message is not None
            self.received.append(message["n"])

    def has_received_after(self, number: int) -> bool:
        return bool(self.received) and self.received[-1] > number
