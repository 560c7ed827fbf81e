"""Running a host app's lifespan inside chanlite's own (``Chanlite(routes, app=host)``)."""

from __future__ import annotations

import asyncio
import contextvars
import logging

from starlette.types import ASGIApp, Message, Scope

from .exceptions import ConfigurationError

logger = logging.getLogger("chanlite")


class HostLifespan:
    """Runs a host app's lifespan protocol inside chanlite's own."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self, context: contextvars.Context) -> None:
        """Start the host's lifespan in ``context`` (where its app is current)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), context=context)
        await self._step("lifespan.startup")

    async def shutdown(self) -> None:
        if self._task is not None and not self._task.done():
            await self._step("lifespan.shutdown")
            await self._task

    async def _run(self) -> None:
        try:
            await self.app(dict(self.scope), self._inbox.get, self._outbox.put)
        except Exception as exc:
            # An app without lifespan support raises here; chanlite carries on.
            logger.debug("host app lifespan ended: %r", exc)
        finally:
            await self._outbox.put({"type": "_ended"})

    async def _step(self, event: str) -> None:
        await self._inbox.put({"type": event})
        reply = await self._outbox.get()
        if reply["type"].endswith(".failed"):
            raise ConfigurationError(f"host app {event} failed: {reply.get('message', '')}")
