"""``SessionMiddleware``: chanlite's sessions for a host Starlette app's views.

``request.session`` is a :class:`Session` (a dict) kept in the same store as the
sessions that ``@http_session`` reads over WebSocket, so a login made by a view is
seen by the socket the page opens afterwards. The cookie carries the session key
signed with the secret key; it is ``HttpOnly``, ``SameSite=Lax``, and ``Secure``
when the request came over https. A modified session is saved and its cookie set
when the response starts; a session emptied by ``logout`` is deleted and its cookie
cleared; a key rotated by ``login`` replaces the old one, whose stored copy is
deleted.

By default the store and secret key are those of the :class:`~chanlite.Chanlite` app
serving the request: the app that wraps the site (``Chanlite(routes, app=site)``),
or whose :meth:`~chanlite.Chanlite.middleware` the site added; else
``CHANLITE_SECRET_KEY`` and the default layer's backend. They are looked up on each
request, so the middleware can be built before the app starts, and two apps in one
process each use their own.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..exceptions import ConfigurationError
from ..runtime import app_services
from ..stores import SessionStore, get_session_store
from .decorators import HTTP_NAMESPACE, save_http_session, session_store
from .session import (
    HTTP_SESSION_TTL,
    SESSION_COOKIE,
    Session,
    sign_session_key,
    store_key,
    unsign_session_key,
)


class SessionMiddleware:
    """ASGI middleware that gives views ``request.session`` (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | None = None,
        store: str | SessionStore | None = None,
        *,
        cookie_name: str = SESSION_COOKIE,
        max_age: int = HTTP_SESSION_TTL,
        path: str = "/",
    ) -> None:
        self.app = app
        self.secret_key = secret_key
        self.store_setting = store
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        secret_key, store = self._secret_key(), self._store()
        connection = HTTPConnection(scope)
        session = await self._load(connection.cookies.get(self.cookie_name), secret_key, store)
        scope["session"] = session
        had_cookie = self.cookie_name in connection.cookies
        secure = scope.get("scheme") in ("https", "wss")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.modified:
                await save_http_session(session, store, self.max_age)
                headers = MutableHeaders(scope=message)
                if session:
                    value = sign_session_key(session.ensure_key(), secret_key)
                    headers.append("set-cookie", self._cookie(value, self.max_age, secure))
                elif had_cookie:
                    headers.append("set-cookie", self._cookie("", 0, secure))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _secret_key(self) -> str:
        key = self.secret_key or app_services().secret_key
        if not key:
            raise ConfigurationError(
                "SessionMiddleware needs a secret key: pass secret_key=, run it inside a "
                "Chanlite app, or set CHANLITE_SECRET_KEY"
            )
        return key

    def _store(self) -> SessionStore:
        if self.store_setting is None:
            return session_store()
        if not isinstance(self.store_setting, SessionStore):
            self.store_setting = get_session_store(self.store_setting)
        return self.store_setting

    async def _load(self, value: str | None, secret_key: str, store: SessionStore) -> Session:
        key = unsign_session_key(value, secret_key) if value else None
        if key is not None:
            data = await store.load(store_key(HTTP_NAMESPACE, key), self.max_age)
            if data is not None:
                return Session(data, key=key, namespace=HTTP_NAMESPACE)
        return Session(namespace=HTTP_NAMESPACE)

    def _cookie(self, value: str, max_age: int, secure: bool) -> str:
        cookie: SimpleCookie = SimpleCookie()
        cookie[self.cookie_name] = value
        morsel = cookie[self.cookie_name]
        morsel["path"] = self.path
        morsel["max-age"] = max_age
        morsel["httponly"] = True
        morsel["samesite"] = "Lax"
        if secure:
            morsel["secure"] = True
        return morsel.OutputString()
