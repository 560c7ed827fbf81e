"""The default ``send_waiting`` of a layer (:class:`WaitingSends`, a part of
:class:`~chanlite.layers.BaseChannelLayer`), for layers that cannot tell when room
frees up on a full channel."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..exceptions import ChannelFull
from ..names import queue_name

# Bounds of the default send_waiting's polling, for layers that cannot say when room
# frees up on a full channel.
_FULL_BACKOFF_MIN = 0.001
_FULL_BACKOFF_MAX = 0.05


class WaitingSends:
    """Sends that wait for room, first come, first served (the layer's ``__init__``
    sets ``_send_turns``)."""

    # Per channel, the FIFO that the default send_waiting's waiting senders join.
    _send_turns: dict[str, asyncio.Lock]

    if TYPE_CHECKING:

        async def send(self, channel: str, message: dict[str, Any]) -> None: ...

        def capacity_for(self, stored_name: str) -> int: ...

    async def send_waiting(
        self, channel: str, message: dict[str, Any], timeout: float, *, owned: bool = False
    ) -> None:
        """Send ``message``, waiting up to ``timeout`` seconds for room while
        ``channel`` is full; raise :class:`~chanlite.ChannelFull` if there is still
        none by then. Senders waiting on one channel get room first come, first
        served, and ahead of later ones.

        Optional to override. This default cannot tell when room frees up, so one
        waiting sender per channel polls, 1 to 50 ms apart, and the others queue
        behind it; a layer that can tell (``memory://``) wakes its senders instead.
        ``owned``: the caller hands ``message`` over and never touches it again, so a
        layer may store it uncopied (this default copies it as ``send`` does).
        """
        turn = self._send_turns.get(channel)
        if turn is None:
            turn = self._send_turns[channel] = asyncio.Lock()
        if not turn.locked():  # nobody is waiting: no turn to take
            try:
                await self.send(channel, message)
                return
            except ChannelFull:
                if timeout <= 0:
                    raise
        await self._send_in_turn(turn, channel, message, timeout)

    async def _send_in_turn(
        self, turn: asyncio.Lock, channel: str, message: dict[str, Any], timeout: float
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                await turn.acquire()
        except TimeoutError:
            raise ChannelFull(channel, self.capacity_for(queue_name(channel))) from None
        try:
            delay = _FULL_BACKOFF_MIN
            while True:
                try:
                    await self.send(channel, message)
                    return
                except ChannelFull:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, _FULL_BACKOFF_MAX)
        finally:
            turn.release()
