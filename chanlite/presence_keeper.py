"""What an interface process does for group presence (DESIGN §12): its heartbeat, the
sweep, and telling the layer when a socket closes.

:class:`PresenceKeeper` runs beside an interface whose layer keeps presence (the app
starts it with the interface and stops it before the layer closes). It refreshes the
process's heartbeat every ``heartbeat_interval`` seconds, kept ``heartbeat_ttl``, and
sweeps every ``sweep_interval`` seconds (a :class:`~chanlite.presence.PresenceTiming`):
every interface process sweeps, and each leave is still announced once. A dead
interface's members therefore leave within ``heartbeat_ttl + sweep_interval`` seconds
(40 by default), and a closed socket's within ``presence_grace + sweep_interval``.

A failure of the layer is logged and tried again at the next turn: presence catches up
when the backend answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .exceptions import ChanliteError
from .layers.base import BaseChannelLayer
from .presence import PresenceTiming

__all__ = ["PresenceKeeper", "socket_closed"]

logger = logging.getLogger("chanlite.presence")


class PresenceKeeper:
    """The heartbeat of one interface process (its reply prefix ``process``) and its
    periodic sweep, as one task."""

    def __init__(
        self, layer: BaseChannelLayer, process: str, timing: PresenceTiming | None = None
    ) -> None:
        self.layer = layer
        self.process = process
        self.timing = timing or PresenceTiming()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<PresenceKeeper {self.process!r}>"

    async def start(self) -> None:
        """Beat once (before this process's sockets can join), then keep beating and
        sweeping in a task."""
        await self._beat()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the task. The heartbeat is left to expire: the presence of sockets
        closed just now keeps its grace, so clients may re-join another process."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def sweep(self) -> int:
        """Sweep once now; how many leaves were announced (0 if the layer failed)."""
        try:
            return await self.layer.presence_sweep()
        except ChanliteError as exc:
            logger.warning("the presence sweep failed; trying again later: %s", exc)
            return 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        timing = self.timing
        next_beat = loop.time() + timing.heartbeat_interval
        next_sweep = loop.time() + timing.sweep_interval
        while True:
            await asyncio.sleep(max(0.0, min(next_beat, next_sweep) - loop.time()))
            now = loop.time()
            if now >= next_beat:
                next_beat = now + timing.heartbeat_interval
                await self._beat()
            if now >= next_sweep:
                next_sweep = now + timing.sweep_interval
                await self.sweep()

    async def _beat(self) -> None:
        try:
            await self.layer.presence_heartbeat(self.process, self.timing.heartbeat_ttl)
        except ChanliteError as exc:
            logger.warning("the presence heartbeat failed; trying again later: %s", exc)


async def socket_closed(layer: BaseChannelLayer, reply_channel: str) -> None:
    """Tell ``layer`` that the socket of ``reply_channel`` closed (its presence is held
    for its grace, or leaves); never raises a layer failure, which is logged."""
    if not layer.presence_globs:
        return
    try:
        await layer.presence_close(reply_channel)
    except ChanliteError as exc:
        logger.warning("could not note that %r closed for presence: %s", reply_channel, exc)
