"""chanlite's exceptions: one tree, rooted at :class:`ChanliteError`.

```
ChanliteError
├── ChannelFull                 a channel is at capacity (send only)
├── MessageTooLarge             encoded content over the size limit (also ValueError)
├── InvalidChannelName          a channel or group name breaks a rule (also ValueError)
├── ConfigurationError          a bad setting, URL, option, import string or route (also ValueError)
│   └── ImportStringError       a "module:attr" string that cannot be resolved
├── LayerError                  a layer's or session store's backend failed, or it was closed
├── ConsumeLater                raised by a consumer: run this message again later
└── DenyConnection              raised by a connect consumer: reject the socket
```

Errors carry the data they describe as attributes, so callers can react without
parsing messages.
"""

from __future__ import annotations


class ChanliteError(Exception):
    """The root of every error chanlite raises on purpose."""


class ChannelFull(ChanliteError):
    """``send`` found ``channel`` holding ``capacity`` messages already."""

    def __init__(self, channel: str, capacity: int) -> None:
        self.channel = channel
        self.capacity = capacity
        super().__init__(f"channel {channel!r} is full (capacity {capacity})")


class MessageTooLarge(ChanliteError, ValueError):
    """A message encodes to ``size`` bytes, more than ``limit``."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message encodes to {size} bytes, over the limit of {limit}")


class InvalidChannelName(ChanliteError, ValueError):
    """``name`` is not a valid channel or group name; ``rule`` says why."""

    def __init__(self, name: object, rule: str) -> None:
        self.name = name
        self.rule = rule
        super().__init__(f"invalid name {name!r}: {rule}")


class ConfigurationError(ChanliteError, ValueError):
    """A setting, layer URL, option, command-line value or routing table is wrong."""


class ImportStringError(ConfigurationError):
    """A ``"module:attr"`` import string cannot be resolved."""


class LayerError(ChanliteError):
    """The backend of a channel layer or session store failed: ``backend`` names it
    (``"Redis at host:port/db"``, ``"SQLite database '/path/app.db'"``,
    ``"memory layer"``) and ``problem`` says what went wrong.

    Raised when a Redis server cannot be reached, breaks a connection, does not answer
    in time or refuses a command; when SQLite raises ``sqlite3.Error``; and when a
    layer or store is used after ``aclose()``. The backend's own exception (redis-py's
    ``ConnectionError``, ``TimeoutError`` or ``ResponseError``, or the
    ``sqlite3.Error``) is the ``__cause__``. The operation may or may not have taken
    effect: a send that failed this way may still have been stored.

    Layers and stores raise one type because they share their backends (a store made
    for a layer uses its Redis connections or its SQLite file), so one outage is one
    error to handle, whichever of them met it first.
    """

    def __init__(self, backend: str, problem: str) -> None:
        self.backend = backend
        self.problem = problem
        super().__init__(f"{backend}: {problem}")


class ConsumeLater(ChanliteError):
    """Raised by a consumer to put its message back at the end of its channel.

    A message is requeued at most 10 times (``chanlite.worker.MAX_CONSUME_LATER``),
    then dropped with a warning.
    """


class DenyConnection(ChanliteError):
    """Raised by a ``websocket.connect`` consumer to reject the socket (HTTP 403)."""
