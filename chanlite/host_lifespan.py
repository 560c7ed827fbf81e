"""The ASGI lifespan of a ``Chanlite`` app (:func:`serve_lifespan`), and a host app's
lifespan run inside it (``Chanlite(routes, app=host)``, :class:`HostLifespan`)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .exceptions import ConfigurationError
from .runtime import AppServices, app_context

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


async def serve_lifespan(
    startup: Callable[[], Awaitable[None]],
    shutdown: Callable[[], Awaitable[None]],
    host: HostLifespan | None,
    services: Callable[[], AppServices],
    receive: Receive,
    send: Send,
) -> None:
    """Answer the ASGI lifespan protocol: ``startup`` (then the ``host``'s, with the
    app's ``services`` current), and at the end the host's shutdown, then ours. A
    failed startup is reported to the server and raised (as Starlette does: a test
    client raises it, uvicorn exits quietly)."""
    await receive()  # lifespan.startup
    try:
        await startup()
        if host is not None:
            await host.startup(app_context(services()))
    except Exception as exc:
        logger.error("startup failed: %s", exc)
        await send({"type": "lifespan.startup.failed", "message": str(exc)})
        raise
    await send({"type": "lifespan.startup.complete"})
    await receive()  # lifespan.shutdown
    try:
        if host is not None:
            await host.shutdown()
    finally:
        await shutdown()
    await send({"type": "lifespan.shutdown.complete"})
