"""Serving a ``Chanlite`` app on uvicorn, as ``chanlite serve`` does: chanlite's
hardened protocols and limits, and a graceful stop that drains chanlite before
uvicorn closes its connections and exits with code 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

from .app import Chanlite

logger = logging.getLogger("chanlite")

#: Seconds ``chanlite serve`` waits, once it has closed every socket on SIGTERM, for
#: connections to end before it exits anyway: a client that stopped reading would
#: keep its connection, and the server, alive forever.
SHUTDOWN_TIMEOUT = 10.0


def uvicorn_options(app: Chanlite, **options: Any) -> dict[str, Any]:
    """uvicorn settings for serving ``app``, with ``options`` (host, port, log_level):
    frames capped at ``max_frame_size``, request heads at
    :data:`~chanlite._uvicorn.MAX_REQUEST_HEAD`, and a shutdown that gives up on
    connections still open :data:`SHUTDOWN_TIMEOUT` seconds after every socket was
    closed."""
    from . import _uvicorn

    return {
        "ws_max_size": app.settings.max_frame_size,
        "http": _uvicorn.HTTP_PROTOCOL,
        "ws": _uvicorn.WS_PROTOCOL,
        "timeout_graceful_shutdown": SHUTDOWN_TIMEOUT,
        **options,
    }


class GracefulServer:
    """uvicorn's server, draining chanlite before uvicorn closes connections.

    uvicorn closes sockets with 1012 as its first shutdown step; chanlite first stops
    accepting connections (one opened now would only be closed again), lets
    in-flight consumers finish and deliver their replies, then closes with 1001.
    """

    def __init__(self, config: Any, app: Chanlite) -> None:
        import uvicorn

        chanlite_app = app

        class _Server(uvicorn.Server):
            async def shutdown(self, sockets: Any = None) -> None:
                for server in self.servers:
                    server.close()  # uvicorn closes them again, harmlessly
                await chanlite_app.drain()
                await super().shutdown(sockets)

        self._server = _Server(config)

    @property
    def started(self) -> bool:
        return bool(self._server.started)

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully and return."""
        with _signals_absorbed():
            self._server.run()


@contextlib.contextmanager
def _signals_absorbed() -> Iterator[None]:
    """Handle SIGTERM and SIGINT by doing nothing while the server runs.

    uvicorn replaces these handlers while it serves, and once it has stopped it
    raises the signal that stopped it again, into the handlers it found, so that
    the process ends as the signal's default would. A graceful stop is a normal
    end here (exit code 0), so the handlers uvicorn finds absorb that signal.
    """
    handled = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.signal(sig, _absorb) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _absorb(sig: int, frame: FrameType | None) -> None:
    logger.debug("%s arrived after the server stopped", signal.Signals(sig).name)
