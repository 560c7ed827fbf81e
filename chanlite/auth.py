"""Authentication on sessions.

A logged-in session holds the user's id under :data:`USER_ID_KEY`; nothing else
about the user is stored. ``message.user`` is what the app's ``user_loader(user_id)``
returns (sync or async, called at most once per message), or :class:`AnonymousUser`
when the session has no user or the loader returns None. Without a ``user_loader``,
``message.user`` is a :class:`User` that carries only the id.

* :func:`login`, :func:`logout`, :func:`transfer_user`: plain functions on session
  dicts (``request.session``, ``message.http_session``, ``message.channel_session``).
* :func:`http_session_user`: ``@http_session`` plus ``message.user`` from it.
* :func:`channel_session_user`: ``@channel_session`` plus ``message.user`` from it.
* :func:`channel_session_user_from_http`: for ``websocket.connect``: ``@http_session``
  and ``@channel_session``, copies the HTTP session's user into the channel session,
  and sets ``message.user``; later messages of the socket use
  :func:`channel_session_user`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import MutableMapping
from typing import Any

from ._wrap import Consumer, around
from .messages import Message
from .runtime import app_services
from .sessions import channel_session, http_session
from .sessions.session import Session

__all__ = [
    "USER_ID_KEY",
    "AnonymousUser",
    "User",
    "channel_session_user",
    "channel_session_user_from_http",
    "http_session_user",
    "login",
    "logout",
    "transfer_user",
]

#: Session key that holds the logged-in user's id.
USER_ID_KEY = "_auth_user_id"


class AnonymousUser:
    """The user of a message whose session has no logged-in user."""

    id = None
    is_authenticated = False
    is_anonymous = True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnonymousUser)

    def __hash__(self) -> int:
        return hash(AnonymousUser)

    def __repr__(self) -> str:
        return "<AnonymousUser>"


class User:
    """A logged-in user known only by id (when the app has no ``user_loader``)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, user_id: Any) -> None:
        self.id = user_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, User) and other.id == self.id

    def __hash__(self) -> int:
        return hash((User, self.id))

    def __repr__(self) -> str:
        return f"<User id={self.id!r}>"


# -- session functions ------------------------------------------------------------


def login(session: MutableMapping[str, Any], user_id: Any) -> None:
    """Log ``user_id`` in on ``session``; an HTTP session moves to a new key.

    ``user_id`` must be JSON-able (a str or an int, typically).
    """
    if isinstance(session, Session):
        session.cycle_key()
    session[USER_ID_KEY] = user_id


def logout(session: MutableMapping[str, Any]) -> None:
    """Log out: the session's data is cleared (and an HTTP session gets a new key)."""
    if isinstance(session, Session):
        session.flush()
    else:
        session.clear()


def transfer_user(from_session: MutableMapping[str, Any] | None, to_session: Any) -> None:
    """Copy the logged-in user of ``from_session`` into ``to_session``, if there is one."""
    if from_session is not None and USER_ID_KEY in from_session:
        to_session[USER_ID_KEY] = from_session[USER_ID_KEY]


async def load_user(session: MutableMapping[str, Any] | None) -> Any:
    """The user of ``session`` through the app's ``user_loader``, or AnonymousUser."""
    user_id = session.get(USER_ID_KEY) if session is not None else None
    if user_id is None:
        return AnonymousUser()
    loader = app_services().user_loader
    if loader is None:
        return User(user_id)
    if inspect.iscoroutinefunction(loader):
        user = await loader(user_id)
    else:
        # A sync loader may block (a database query): keep it off the event loop.
        user = await asyncio.to_thread(loader, user_id)
        if inspect.isawaitable(user):
            user = await user
    return AnonymousUser() if user is None else user


# -- decorators ---------------------------------------------------------------------


def http_session_user(consumer: Consumer) -> Consumer:
    """``@http_session``, and ``message.user`` from the HTTP session."""
    return http_session(around(consumer, _user_from_http, _nothing))


def channel_session_user(consumer: Consumer) -> Consumer:
    """``@channel_session``, and ``message.user`` from the channel session."""
    return channel_session(around(consumer, _user_from_channel, _nothing))


def channel_session_user_from_http(consumer: Consumer) -> Consumer:
    """For connect: the HTTP session's user moves into the channel session, and
    ``message.user`` is set from it."""
    inner = around(consumer, _transfer_user, _nothing)
    return http_session(channel_session(inner))


async def _user_from_http(message: Message) -> None:
    if "user" not in message.__dict__:
        message.user = await load_user(message.http_session)


async def _user_from_channel(message: Message) -> None:
    if "user" not in message.__dict__:
        message.user = await load_user(message.channel_session)


async def _transfer_user(message: Message) -> None:
    transfer_user(message.http_session, message.channel_session)
    await _user_from_channel(message)


async def _nothing(message: Message, state: None, error: BaseException | None) -> None:
    return None
