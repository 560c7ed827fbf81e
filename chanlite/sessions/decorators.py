"""``channel_session`` and ``http_session``: sessions for consumers.

* ``@channel_session`` sets ``message.channel_session``, a :class:`Session` keyed by
  the message's reply channel. It is loaded before the consumer and saved after it
  (also when it raised) if modified; after a ``websocket.disconnect`` consumer it is
  deleted. A message without a ``reply_channel`` raises ``ValueError``. Channel
  sessions expire :data:`CHANNEL_SESSION_TTL` seconds after their last use.
* ``@http_session`` sets ``message.http_session`` from the signed ``session_key``
  query parameter, else the ``chanlite_session`` cookie: the same sessions that
  :class:`SessionMiddleware` gives the host app's views. It is ``None`` when the
  message carries neither, or a value that is not valid. Saved after the consumer if
  modified. Its key does not rotate (a consumer cannot set the client's cookie);
  logins that must rotate the key happen in views behind :class:`SessionMiddleware`.

Both work on sync and async consumers. Stacked twice, only the outer one loads and
saves. The store, and the secret key, are those of the app whose worker runs the
consumer: its ``session_store`` (by default the layer's backend).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.requests import cookie_parser

from .._wrap import Consumer, around, mark
from ..layers.base import BaseChannelLayer
from ..messages import Message
from ..protocol import WEBSOCKET_DISCONNECT
from ..runtime import app_services, resolve_layer
from ..stores import SessionStore, get_session_store
from .session import (
    CHANNEL_SESSION_TTL,
    HTTP_SESSION_TTL,
    SESSION_COOKIE,
    SESSION_QUERY_PARAMETER,
    Session,
    store_key,
    unsign_session_key,
)

#: Mark on consumers that use a channel session (the worker deletes the session of
#: a closed socket when its disconnect consumer does not).
CHANNEL_SESSION_MARK = "__chanlite_channel_session__"
#: Namespaces of the two kinds of session in the store.
CHANNEL_NAMESPACE = "channel"
HTTP_NAMESPACE = "http"


def session_store(layer: BaseChannelLayer | None = None) -> SessionStore:
    """The session store of the current app (or of ``layer``'s backend)."""
    return get_session_store(app_services().session_store, resolve_layer(layer))


def channel_session_key(reply_channel: str) -> str:
    """The store key of the channel session of ``reply_channel``."""
    return store_key(CHANNEL_NAMESPACE, reply_channel)


# -- channel_session --------------------------------------------------------------


def channel_session(consumer: Consumer) -> Consumer:
    """Give ``consumer`` ``message.channel_session`` (see the module docstring)."""
    wrapper = around(consumer, _enter_channel_session, _leave_channel_session)
    return mark(wrapper, CHANNEL_SESSION_MARK)


async def _enter_channel_session(message: Message) -> Session | None:
    if "channel_session" in message.__dict__:
        return None  # an outer channel_session loads and saves
    reply = message.content.get("reply_channel")
    if not isinstance(reply, str) or not reply:
        raise ValueError(
            f"channel_session needs a message with a reply_channel; the message on "
            f"{message.channel.name!r} has none"
        )
    key = channel_session_key(reply)
    data = await session_store(message.channel_layer).load(key, CHANNEL_SESSION_TTL)
    session = Session(data, key=reply, namespace=CHANNEL_NAMESPACE, rotatable=False)
    message.channel_session = session
    return session


async def _leave_channel_session(
    message: Message, session: Session | None, error: BaseException | None
) -> None:
    if session is None:
        return
    store = session_store(message.channel_layer)
    key = channel_session_key(str(session.key))
    if message.channel.name == WEBSOCKET_DISCONNECT:
        await store.delete(key)
    elif session.modified:
        await store.save(key, dict(session), CHANNEL_SESSION_TTL)
        session.modified = False


# -- http_session -----------------------------------------------------------------


def http_session(consumer: Consumer) -> Consumer:
    """Give ``consumer`` ``message.http_session`` (see the module docstring)."""
    return around(consumer, _enter_http_session, _leave_http_session)


async def _enter_http_session(message: Message) -> Session | None:
    if "http_session" in message.__dict__:
        return None
    session = await load_http_session(message)
    message.http_session = session
    return session


async def load_http_session(message: Message) -> Session | None:
    """The HTTP session a message's query string or cookie names, or None."""
    value = signed_session_value(message.content)
    key = unsign_session_key(value, app_services().secret_key) if value else None
    if key is None:
        return None
    store = session_store(message.channel_layer)
    data = await store.load(store_key(HTTP_NAMESPACE, key), HTTP_SESSION_TTL)
    if data is None:
        return None
    # A consumer cannot set the client's cookie, so the key must not change here.
    return Session(data, key=key, namespace=HTTP_NAMESPACE, rotatable=False)


async def _leave_http_session(
    message: Message, session: Session | None, error: BaseException | None
) -> None:
    if session is None or not session.modified:
        return
    await save_http_session(session, session_store(message.channel_layer))


async def save_http_session(
    session: Session, store: SessionStore, ttl: float = HTTP_SESSION_TTL
) -> None:
    """Save a modified HTTP session, dropping the stored copy of a rotated key."""
    if session.previous_key is not None:
        await store.delete(store_key(HTTP_NAMESPACE, session.previous_key))
        session.previous_key = None
    key = store_key(HTTP_NAMESPACE, session.ensure_key())
    if session:
        await store.save(key, dict(session), ttl)
    else:
        await store.delete(key)
    session.modified = False


def signed_session_value(content: dict[str, Any]) -> str | None:
    """The signed session value in a message: ``session_key`` query parameter first,
    then the session cookie; None when there is neither."""
    query = content.get("query_string")
    if isinstance(query, str) and SESSION_QUERY_PARAMETER in query:
        values = parse_qs(query).get(SESSION_QUERY_PARAMETER)
        if values:
            return values[0]
    for header in content.get("headers") or ():
        if isinstance(header, (list, tuple)) and len(header) == 2 and header[0] == "cookie":
            value = cookie_parser(str(header[1])).get(SESSION_COOKIE)
            if value:
                return value
    return None
