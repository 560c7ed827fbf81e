"""Settings shared by the app, the interface server and the CLI, with their defaults."""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from .exceptions import ConfigurationError

#: Environment variables chanlite reads.
LAYER_ENV = "CHANLITE_LAYER"
SECRET_KEY_ENV = "CHANLITE_SECRET_KEY"

#: Largest WebSocket frame accepted; a bigger one closes the socket with 1009.
MAX_FRAME_SIZE = 1024 * 1024
#: Seconds a consumer may run before the worker stops waiting for it: an ``async
#: def`` consumer is cancelled; a ``def`` consumer's thread cannot be stopped and runs
#: on, keeping its worker thread, but its message is given up on (see the worker).
CONSUMER_TIMEOUT = 60.0
#: Keys that are refused as secret keys outside debug mode.
PLACEHOLDER_KEYS = frozenset({"secret", "changeme", "change-me", "secret_key", "password"})
#: Shortest secret key accepted outside debug mode.
MIN_SECRET_KEY_LENGTH = 16


@dataclass(frozen=True)
class InterfaceSettings:
    """How the interface server treats clients (DESIGN §6)."""

    #: Seconds to wait for an ``http.request`` consumer's first reply, then 503.
    http_timeout: float = 60.0
    #: Seconds to wait for a ``websocket.connect`` reply, then reject (403).
    websocket_connect_timeout: float = 5.0
    #: Seconds a frame may wait for room on a full channel, then close with 1013.
    receive_full_timeout: float = 5.0
    #: Largest frame in bytes; larger closes with 1009.
    max_frame_size: int = MAX_FRAME_SIZE
    #: Replies queued for one socket that cannot keep up before it is closed (1013).
    max_pending_replies: int = 1000
    #: Full origins allowed to open sockets, or ``("*",)``; ``None`` checks nothing.
    allowed_origins: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("http_timeout", "websocket_connect_timeout", "receive_full_timeout"):
            check_timeout(name, getattr(self, name))
        for name in ("max_frame_size", "max_pending_replies"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")

    def origin_allowed(self, origin: str | None) -> bool:
        """True if a socket from ``origin`` may connect."""
        if self.allowed_origins is None or "*" in self.allowed_origins:
            return True
        return origin is not None and origin in self.allowed_origins


def check_timeout(name: str, value: object) -> float:
    """``value`` if it is a positive number of seconds, else ConfigurationError naming
    the setting ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def check_consumer_timeout(value: object) -> float | None:
    """The ``consumer_timeout`` setting: a positive number of seconds, or None for no
    limit; else ConfigurationError."""
    return None if value is None else check_timeout("consumer_timeout", value)


def normalize_origins(origins: Sequence[str] | None) -> tuple[str, ...] | None:
    """Check ``allowed_origins``: full origins such as ``"https://example.com"``, or ``*``."""
    if origins is None:
        return None
    if isinstance(origins, str):
        raise ConfigurationError("allowed_origins must be a list of origins, not a str")
    result = []
    for origin in origins:
        if origin != "*" and "://" not in origin:
            raise ConfigurationError(
                f"allowed_origins entry {origin!r} must be a full origin such as "
                "'https://example.com', or '*'"
            )
        result.append(origin.rstrip("/"))
    return tuple(result)


def resolve_secret_key(
    secret_key: str | None, *, spans_processes: bool, debug: bool
) -> tuple[str, bool]:
    """Return ``(key, generated)``: the configured key, or a random per-process one.

    Raises ConfigurationError when no key is set and the deployment spans processes,
    or when the key is a placeholder and ``debug`` is off.
    """
    key = secret_key if secret_key is not None else os.environ.get(SECRET_KEY_ENV) or None
    if key is None:
        if spans_processes:
            raise ConfigurationError(
                f"a secret key is required when chanlite spans processes: set "
                f"{SECRET_KEY_ENV} (e.g. to the output of "
                "'python -c \"import secrets; print(secrets.token_urlsafe(32))\"')"
            )
        return secrets.token_urlsafe(32), True
    if not debug and (key.lower() in PLACEHOLDER_KEYS or len(key) < MIN_SECRET_KEY_LENGTH):
        raise ConfigurationError(
            f"the secret key is a placeholder or shorter than {MIN_SECRET_KEY_LENGTH} "
            "characters; set a long random key (debug=True allows it in development)"
        )
    return key, False
