"""``ChanliteTestClient``: Starlette's TestClient with channels, groups and workers."""

from __future__ import annotations

from typing import Any

from anyio.from_thread import BlockingPortal
from starlette.testclient import TestClient

from ..app import Chanlite
from ..exceptions import ChanliteError
from ..layers.base import BaseChannelLayer


class ChanliteTestClient(TestClient):
    """Drive a :class:`~chanlite.Chanlite` app in-process, synchronously.

    Use it in a ``with`` block: entering runs the app's startup (layer, interface,
    workers) on a background event loop, leaving runs the graceful shutdown.
    """

    def __init__(self, app: Chanlite, **options: Any) -> None:
        if not isinstance(app, Chanlite):
            raise TypeError(f"ChanliteTestClient drives a Chanlite app, not {type(app).__name__}")
        options.setdefault("base_url", "http://testserver")
        super().__init__(app, **options)
        self.chanlite = app

    @property
    def layer(self) -> BaseChannelLayer:
        """The running app's layer."""
        self._running_portal()
        assert self.chanlite.layer is not None
        return self.chanlite.layer

    def _running_portal(self) -> BlockingPortal:
        portal: BlockingPortal | None = getattr(self, "portal", None)
        if portal is None or self.chanlite.layer is None:
            raise ChanliteError("use ChanliteTestClient in a 'with' block to start the app")
        return portal

    def channel_send(self, channel: str, content: dict[str, Any]) -> None:
        """Send ``content`` to ``channel`` at once."""
        self._running_portal().call(self.layer.send, channel, content)

    def group_send(self, group: str, content: dict[str, Any]) -> None:
        """Send ``content`` to every member of ``group``."""
        self._running_portal().call(self.layer.group_send, group, content)

    def channel_receive(self, channel: str, timeout: float = 5.0) -> dict[str, Any] | None:
        """The next message on ``channel`` (a plain or ``prefix!`` name), or None."""
        _, message = self._running_portal().call(self.layer.receive, [channel], timeout)
        return message

    def new_channel(self, prefix: str = "test!") -> str:
        """A new unique channel name, e.g. to stand in for a reply channel."""
        name: str = self._running_portal().call(self.layer.new_channel, prefix)
        return name

    def group_channels(self, group: str) -> set[str]:
        """The current members of ``group``."""
        members: set[str] = self._running_portal().call(self.layer.group_channels, group)
        return members

    def run_until_idle(self, timeout: float = 5.0) -> None:
        """Wait until the workers have taken every message and finished every consumer."""
        worker = self.chanlite.worker
        if worker is None:
            raise ChanliteError("the app runs no in-process workers (workers=False)")
        self._running_portal().call(worker.wait_idle, timeout)
