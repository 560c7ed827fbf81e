"""``Session``, session keys, and the signed values that carry them.

A session key is 256 random bits. It never travels bare: cookies and the
``session_key`` query parameter carry it signed with itsdangerous's
``TimestampSigner`` and the app's secret key. A value that is tampered with, signed
with another key, older than the session lifetime, or garbage counts as no session:
:func:`unsign_session_key` returns None and logs one INFO line without the value.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from itsdangerous import BadSignature, TimestampSigner

logger = logging.getLogger("chanlite.sessions")

#: Name of the cookie that carries the signed session key.
SESSION_COOKIE = "chanlite_session"
#: Query parameter that carries the same signed value (e.g. for WebSocket clients).
SESSION_QUERY_PARAMETER = "session_key"
#: Lifetime of an HTTP session, in seconds (two weeks).
HTTP_SESSION_TTL = 14 * 24 * 3600
#: A channel session expires this many seconds after its last use (one day).
CHANNEL_SESSION_TTL = 24 * 3600
# Salt of the signer, so a session value cannot stand in for another signed value.
_SALT = "chanlite.session"


class Session(dict[str, Any]):
    """A session's data: a dict that notes when it is modified.

    Changing a nested value in place (``session["cart"].append(x)``) is not seen;
    set ``session.modified = True`` after such a change. ``store_key`` is where the
    store keeps it. An HTTP session (``rotatable``) gets a new key from
    :meth:`cycle_key`, as on login, so a key known before login is worthless after.
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        namespace: str = "http",
        rotatable: bool = True,
    ) -> None:
        super().__init__(data or {})
        self.key = key
        self.namespace = namespace
        self.rotatable = rotatable
        self.modified = False
        #: The key before :meth:`cycle_key`, whose stored copy must be deleted.
        self.previous_key: str | None = None

    @property
    def store_key(self) -> str | None:
        """The store key (``<namespace>:<key>``), or None before the first save."""
        return None if self.key is None else store_key(self.namespace, self.key)

    def ensure_key(self) -> str:
        """The session key, made now if the session has none yet."""
        if self.key is None:
            self.key = new_session_key()
        return self.key

    def cycle_key(self) -> None:
        """Keep the data under a new key (no-op for a channel session)."""
        if not self.rotatable:
            return
        if self.previous_key is None:
            self.previous_key = self.key
        self.key = new_session_key()
        self.modified = True

    def flush(self) -> None:
        """Clear the data and move to a new key (logout)."""
        self.clear()
        self.cycle_key()

    def __setitem__(self, key: str, value: Any) -> None:
        self.modified = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.modified = True
        super().__delitem__(key)

    def clear(self) -> None:
        self.modified = True
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        self.modified = self.modified or key in self
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.modified = True
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.modified = True
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.modified = True
        super().update(*args, **kwargs)

    def __repr__(self) -> str:
        # Session data may be secret: show only the keys.
        return f"<Session {self.namespace} keys={sorted(self)!r}>"


def new_session_key() -> str:
    """A new random session key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def store_key(namespace: str, key: str) -> str:
    """Where the store keeps session ``key`` of ``namespace`` (``http``, ``channel``)."""
    return f"{namespace}:{key}"


def sign_session_key(key: str, secret_key: str) -> str:
    """The value a cookie or ``session_key`` parameter carries for ``key``."""
    return TimestampSigner(secret_key, salt=_SALT).sign(key).decode("ascii")


def unsign_session_key(value: str, secret_key: str | None) -> str | None:
    """The session key inside a signed ``value``, or None if it is not valid.

    None for a bad signature, a foreign key, a value older than
    :data:`HTTP_SESSION_TTL`, garbage, or when there is no secret key.
    """
    if not value:
        return None
    if secret_key is None:
        logger.info("ignored a session value: the app has no secret key")
        return None
    try:
        signer = TimestampSigner(secret_key, salt=_SALT)
        return signer.unsign(value, max_age=HTTP_SESSION_TTL).decode("ascii")
    except (BadSignature, UnicodeError, ValueError) as exc:
        logger.info("ignored a session value: %s", type(exc).__name__)
        return None
