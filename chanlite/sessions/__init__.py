"""Sessions: server-side, signed keys, for consumers and views.

* :class:`Session` - the session dict, which notes when it is modified;
* :func:`channel_session`, :func:`http_session` - decorators for consumers;
* :class:`SessionMiddleware` - ``request.session`` for a host Starlette app;
* :class:`SessionStore`, :func:`get_session_store` - where sessions live
  (``memory``, ``redis``, ``sqlite``; by default the layer's backend).
"""

from __future__ import annotations

from ..stores import SessionStore as SessionStore
from ..stores import get_session_store as get_session_store
from .decorators import channel_session as channel_session
from .decorators import http_session as http_session
from .middleware import SessionMiddleware as SessionMiddleware
from .session import CHANNEL_SESSION_TTL as CHANNEL_SESSION_TTL
from .session import HTTP_SESSION_TTL as HTTP_SESSION_TTL
from .session import SESSION_COOKIE as SESSION_COOKIE
from .session import Session as Session
from .session import sign_session_key as sign_session_key

__all__ = [
    "CHANNEL_SESSION_TTL",
    "HTTP_SESSION_TTL",
    "SESSION_COOKIE",
    "Session",
    "SessionMiddleware",
    "SessionStore",
    "channel_session",
    "get_session_store",
    "http_session",
    "sign_session_key",
]
