"""``ChanliteTestClient``: Starlette's TestClient with channels, groups and workers."""

from __future__ import annotations

from contextvars import Token
from typing import Any, Self

from anyio.from_thread import BlockingPortal
from starlette.testclient import TestClient

from .. import auth
from ..app import Chanlite
from ..exceptions import ChanliteError
from ..layers.base import BaseChannelLayer
from ..runtime import AppServices, enter_app, exit_app
from ..sessions.decorators import HTTP_NAMESPACE, channel_session_key, save_http_session
from ..sessions.session import (
    CHANNEL_SESSION_TTL,
    HTTP_SESSION_TTL,
    SESSION_COOKIE,
    Session,
    sign_session_key,
    store_key,
    unsign_session_key,
)
from ..stores import SessionStore


class ChanliteTestClient(TestClient):
    """Drive a :class:`~chanlite.Chanlite` app in-process, synchronously.

    Use it in a ``with`` block: entering runs the app's startup (layer, interface,
    workers) on a background event loop, leaving runs the graceful shutdown. Inside
    the block the app is current, as it is for its views: a ``Channel`` or ``Group``
    without a layer uses the app's, and the session helpers its secret key and store.
    Several clients may run side by side, each with its own app.
    """

    def __init__(self, app: Chanlite, **options: Any) -> None:
        if not isinstance(app, Chanlite):
            raise TypeError(f"ChanliteTestClient drives a Chanlite app, not {type(app).__name__}")
        options.setdefault("base_url", "http://testserver")
        super().__init__(app, **options)
        self.chanlite = app
        self._entered: Token[AppServices | None] | None = None

    def __enter__(self) -> Self:
        client = super().__enter__()
        self._entered = enter_app(self.chanlite.services())
        return client

    def __exit__(self, *args: Any) -> None:
        token, self._entered = self._entered, None
        try:
            if token is not None:
                exit_app(token)
        finally:
            super().__exit__(*args)

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

    # -- sessions and login ------------------------------------------------------

    def login(self, user_id: Any) -> None:
        """Log ``user_id`` in, as a login view behind ``SessionMiddleware`` would.

        A new HTTP session holds the user, and its signed cookie goes on this
        client, so the requests and WebSocket connects that follow carry it: to
        ``@http_session`` consumers, ``channel_session_user_from_http`` and the host
        app's views alike. Any session the client had before is replaced.
        """
        session = Session()
        auth.login(session, user_id)
        self._running_portal().call(save_http_session, session, self._session_store())
        self.cookies.set(SESSION_COOKIE, sign_session_key(session.ensure_key(), self._secret()))

    def logout(self) -> None:
        """End the client's HTTP session: its stored data and its cookie."""
        key = self._http_session_key()
        if key is not None:
            store = self._session_store()
            self._running_portal().call(store.delete, store_key(HTTP_NAMESPACE, key))
        self.cookies.delete(SESSION_COOKIE)

    def http_session(self) -> dict[str, Any] | None:
        """The data of the HTTP session the client's cookie names, or None."""
        key = self._http_session_key()
        if key is None:
            return None
        store = self._session_store()
        data: dict[str, Any] | None = self._running_portal().call(
            store.load, store_key(HTTP_NAMESPACE, key), HTTP_SESSION_TTL
        )
        return data

    def channel_session(self, reply_channel: str) -> dict[str, Any] | None:
        """The data of the channel session of ``reply_channel`` (a socket's reply
        channel, as a consumer or :meth:`group_channels` sees it), or None."""
        store = self._session_store()
        data: dict[str, Any] | None = self._running_portal().call(
            store.load, channel_session_key(reply_channel), CHANNEL_SESSION_TTL
        )
        return data

    def _http_session_key(self) -> str | None:
        value = self.cookies.get(SESSION_COOKIE)
        return unsign_session_key(value, self._secret()) if value else None

    def _session_store(self) -> SessionStore:
        self._running_portal()
        store = self.chanlite.services().session_store
        assert isinstance(store, SessionStore)
        return store

    def _secret(self) -> str:
        self._running_portal()
        if self.chanlite.secret_key is None:  # pragma: no cover - check() always sets one
            raise ChanliteError("the app has no secret key to sign sessions with")
        return self.chanlite.secret_key
