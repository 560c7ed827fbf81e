"""The channel layer contract.

A layer moves messages between the interface server and workers, possibly across
processes and machines. Every layer — memory, Redis, SQLite, or one of your own —
keeps the promises written on the methods of :class:`BaseChannelLayer`, and the one
contract test suite (``tests/layers/contract.py``) checks them all.

Validation and encoding happen once, here: the public ``send`` and ``group_send``
check names and encode content with chanlite's codec, then hand opaque payloads to
the ``*_encoded`` methods a backend implements. Backends store payloads and decode
them in ``receive``.

A backend failure is a :class:`~chanlite.LayerError` wherever it happens: each
backend turns its own errors into one at the boundary of a command (the Redis
shard's ``call_many``, the SQLite connection's ``run``), so callers handle one type
and the hot paths carry no extra handlers.
"""

from __future__ import annotations

import asyncio
import fnmatch
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from .._codec import encode
from ..exceptions import InvalidChannelName, LayerError
from ..history import DEFAULT_HISTORY_TTL, history_patterns
from ..names import (
    is_process_specific,
    validate_channel_name,
    validate_group_name,
    validate_new_channel_prefix,
)
from ..presence import DEFAULT_PRESENCE_GRACE, presence_patterns
from ._capabilities import OptionalCapabilities
from ._history import HistoryKeeping
from ._options import capacity_patterns, layer_prefix, positive_int, positive_number
from ._presence import PresenceKeeping
from ._send_waiting import WaitingSends

#: Defaults shared by every layer (DESIGN §5).
DEFAULT_EXPIRY = 60.0
DEFAULT_GROUP_EXPIRY = 86400.0
DEFAULT_CAPACITY = 100
DEFAULT_PREFIX = "chanlite"
#: The start of every interface server's reply prefix (``interface.<id>!``).
INTERFACE_PREFIX = "interface."
#: The group :meth:`BaseChannelLayer.ping` reads by default; nobody joins it.
PING_GROUP = "chanlite.ping"
#: Built-in capacities, consulted after the user's ``channel_capacity`` globs. All the
#: reply channels of one interface process share its ``interface.<id>!`` queue, so
#: one group send to N local sockets needs room for N messages there; what waits for
#: one socket is bounded by the interface itself (``max_pending_replies``).
BUILTIN_CHANNEL_CAPACITY: tuple[tuple[str, int], ...] = ((f"{INTERFACE_PREFIX}*!", 100_000),)
# Validated receive lists kept by cached_receive_names().
_RECEIVE_CACHE_LIMIT = 1_000
# 16 random bytes give the 128 bits that keep reply channels unguessable.
_NEW_CHANNEL_BYTES = 16

ReceiveResult = tuple[str, dict[str, Any]] | tuple[None, None]


class BaseChannelLayer(HistoryKeeping, PresenceKeeping, WaitingSends, OptionalCapabilities, ABC):
    """A channel layer: named FIFO channels, groups, expiry and capacity.

    Promises every layer keeps:

    * Each channel is an ordered FIFO queue. A message is delivered to at most one
      receiver, at most once — never twice, even under concurrent receivers in many
      processes.
    * A message not received within ``expiry`` seconds is dropped. A process-specific
      channel whose message expired unread is removed from every group it is in.
    * A channel holds at most ``capacity`` messages (overridden per glob pattern by
      ``channel_capacity``, matched against the stored name: ``prefix!`` for
      ``prefix!local``; then :data:`BUILTIN_CHANNEL_CAPACITY`, which gives interface
      reply queues ``interface.*!`` 100,000). Past that, ``send`` raises
      :class:`~chanlite.ChannelFull`.
    * Receivers wake when a message arrives; no layer makes a receiver wait longer than
      its own polling bound (zero for memory and Redis).
    * What a receiver gets is its own copy: mutating a message after ``send`` does not
      change what is received.
    * A backend that fails (a Redis server that cannot be reached, breaks the
      connection, does not answer in time or refuses a command; an ``sqlite3.Error``)
      makes the operation raise :class:`~chanlite.LayerError`, with the backend's own
      exception as its ``__cause__``; the operation may or may not have taken effect.
      A layer used after :meth:`aclose` raises ``LayerError`` too (the built-in ones
      from every operation that reaches the backend, and from a receive still
      waiting when the layer closes).
      ``ChannelFull``, ``MessageTooLarge``, ``InvalidChannelName`` and ``TypeError``
      are never backend failures: they keep their own types.
    """

    #: URL schemes this layer is built from by :func:`chanlite.get_layer`.
    schemes: tuple[str, ...] = ()
    #: True if only this process can reach the layer's channels (``memory://``): what
    #: is sent here is received here or nowhere.
    process_local: bool = False

    def __init__(
        self,
        *,
        expiry: float = DEFAULT_EXPIRY,
        group_expiry: float = DEFAULT_GROUP_EXPIRY,
        capacity: int = DEFAULT_CAPACITY,
        channel_capacity: Mapping[str, int] | None = None,
        prefix: str = DEFAULT_PREFIX,
        group_history: Mapping[str, int] | None = None,
        history_ttl: float = DEFAULT_HISTORY_TTL,
        group_presence: Sequence[str] | None = None,
        presence_grace: float = DEFAULT_PRESENCE_GRACE,
    ) -> None:
        self.expiry = positive_number("expiry", expiry)
        self.group_expiry = positive_number("group_expiry", group_expiry)
        self.capacity = positive_int("capacity", capacity)
        self.channel_capacity = capacity_patterns(channel_capacity)
        #: Every glob that sets a capacity, in the order they are tried: the user's,
        #: then :data:`BUILTIN_CHANNEL_CAPACITY`.
        self.capacity_patterns = [*self.channel_capacity, *BUILTIN_CHANNEL_CAPACITY]
        self.prefix = layer_prefix(prefix)
        #: ``(glob, messages kept)``: the groups that keep a history (DESIGN §11).
        self.history_globs = history_patterns(group_history)
        self.history_ttl = positive_number("history_ttl", history_ttl)
        self._history_sizes: dict[str, int] = {}
        self.presence_globs = presence_patterns(group_presence)  # DESIGN §12
        self.presence_grace = positive_number("presence_grace", presence_grace)
        self._presence_flags: dict[str, bool] = {}
        self._capacity_cache: dict[str, int] = {}
        self._receive_cache: dict[tuple[str, ...], list[str]] = {}
        #: Group deliveries skipped because the member's channel was full.
        self.group_full_skips = 0
        #: Messages this process found expired unread (and dropped).
        self.expired_messages = 0
        # Per channel, the FIFO that the default send_waiting's waiting senders join.
        self._send_turns: dict[str, asyncio.Lock] = {}

    # -- sending --------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Put ``message`` at the end of ``channel``.

        Raises :class:`~chanlite.ChannelFull` if the channel is at capacity,
        :class:`~chanlite.MessageTooLarge` if the message encodes to more than the
        size limit, :class:`~chanlite.InvalidChannelName` for a bad name,
        ``TypeError`` for content that is not a dict or cannot be encoded, and
        :class:`~chanlite.LayerError` if the backend fails or the layer is closed
        (the message may then have been stored or not).
        """
        validate_channel_name(channel)
        await self.send_encoded(channel, encode(message))

    @abstractmethod
    async def send_encoded(self, channel: str, payload: bytes) -> None:
        """Append an already-encoded payload to ``channel`` (name already valid).

        Atomic with its capacity check: raises :class:`~chanlite.ChannelFull` without
        storing anything when the channel is full. Raises
        :class:`~chanlite.LayerError` if the backend fails or the layer is closed.
        """

    # -- receiving ------------------------------------------------------------

    @abstractmethod
    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> ReceiveResult:
        """Take the next message from any of ``channels``.

        Waits until a message is on one of them, or ``timeout`` seconds pass
        (``None``: wait forever; ``0``: do not wait). Returns ``(channel, message)``,
        or ``(None, None)`` on timeout. A process-specific channel is named by its
        ``prefix!`` and comes back with its full ``prefix!local`` name; receiving on a
        full ``prefix!local`` name raises :class:`~chanlite.InvalidChannelName`.
        A cancelled receive takes nothing off any channel.

        Raises :class:`~chanlite.LayerError` if the backend fails, if the layer is
        closed, or if it closes while the receive waits. A layer that reconnects by
        itself (Redis) keeps a receive that may wait (any ``timeout`` but ``0``)
        waiting through an outage instead, until a message comes or its time is up.
        """

    async def new_channel(self, prefix: str) -> str:
        """Return a new, unique channel name starting with ``prefix``.

        ``prefix`` must end in ``!`` (process-specific) or ``?``. The random part carries
        128 bits, so one client cannot guess another's reply channel.
        """
        validate_new_channel_prefix(prefix)
        name = prefix + secrets.token_urlsafe(_NEW_CHANNEL_BYTES)
        return validate_channel_name(name)

    # -- groups ---------------------------------------------------------------

    @abstractmethod
    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group`` (idempotent; refreshes its ``group_expiry``).

        Raises :class:`~chanlite.InvalidChannelName` for a bad name, and
        :class:`~chanlite.LayerError` if the backend fails or the layer is closed.
        """

    @abstractmethod
    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group``; a non-member is a no-op.

        Raises :class:`~chanlite.InvalidChannelName` for a bad name, and
        :class:`~chanlite.LayerError` if the backend fails or the layer is closed.
        """

    @abstractmethod
    async def group_channels(self, group: str) -> set[str]:
        """The names of the current (unexpired) members of ``group``.

        Raises :class:`~chanlite.LayerError` if the backend fails or the layer is
        closed.
        """

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Send ``message`` to every member of ``group``.

        Never raises :class:`~chanlite.ChannelFull`: full members are skipped and
        counted in :attr:`group_full_skips`. Raises like :meth:`send` for bad content
        and for a backend failure (:class:`~chanlite.LayerError`; some members may
        then have the message and others not).
        """
        validate_group_name(group)
        await self.group_send_encoded(group, encode(message))

    @abstractmethod
    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        """Deliver an encoded payload to every member of ``group`` (name valid).

        Raises :class:`~chanlite.LayerError` if the backend fails or the layer is
        closed.
        """

    # -- housekeeping ---------------------------------------------------------

    @abstractmethod
    async def flush(self) -> None:
        """Delete every channel and group of this layer (and only this layer's).

        Raises :class:`~chanlite.LayerError` if the backend fails or the layer is
        closed.
        """

    async def ping(self) -> None:
        """Ask the backend one cheap, read-only question; return once it answered.

        Raises :class:`~chanlite.LayerError` if the backend fails or the layer is
        closed. Readiness checks call it every second. Optional to override: this
        default reads the members of a group nobody joins.
        """
        await self.group_channels(PING_GROUP)

    async def aclose(self) -> None:
        """Release connections and background tasks; closing twice is harmless.

        The layer is unusable after: the built-in layers raise
        :class:`~chanlite.LayerError` from every operation that reaches the backend.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the layer (:meth:`aclose`) as the ``async with`` block ends."""
        await self.aclose()

    async def stats(self) -> dict[str, Any] | None:
        """Channel depths and group sizes, where the layer can tell; else ``None``.

        Raises :class:`~chanlite.LayerError` if the backend fails or the layer is
        closed.
        """
        return None

    # -- helpers for backends ---------------------------------------------------

    def capacity_for(self, stored_name: str) -> int:
        """The capacity of a stored channel name (``prefix!`` or a plain name)."""
        cached = self._capacity_cache.get(stored_name)
        if cached is not None:
            return cached
        capacity = self.capacity
        for pattern, value in self.capacity_patterns:
            if fnmatch.fnmatchcase(stored_name, pattern):
                capacity = value
                break
        if len(self._capacity_cache) > 10_000:
            self._capacity_cache.clear()
        self._capacity_cache[stored_name] = capacity
        return capacity

    @staticmethod
    def receive_names(channels: Iterable[str]) -> list[str]:
        """Validate the ``channels`` of a receive and return them as a list."""
        if isinstance(channels, str):
            raise TypeError("receive() takes a list of channel names, not a str")
        names = [validate_channel_name(name) for name in channels]
        if not names:
            raise ValueError("receive() needs at least one channel name")
        for name in names:
            if is_process_specific(name) and not name.endswith("!"):
                raise InvalidChannelName(
                    name,
                    "receive on the process prefix (up to and including '!'), "
                    "not on a full process-specific name",
                )
        return names

    def cached_receive_names(self, channels: Iterable[str]) -> list[str]:
        """:meth:`receive_names` without duplicates; a list or tuple seen before costs
        one lookup (a worker receives on the same list every time).

        The returned list is shared between calls: it must not be changed.
        """
        if not isinstance(channels, (list, tuple)):
            return list(dict.fromkeys(self.receive_names(channels)))
        key = tuple(channels)
        names = self._receive_cache.get(key)
        if names is None:
            names = list(dict.fromkeys(self.receive_names(key)))
            if len(self._receive_cache) >= _RECEIVE_CACHE_LIMIT:
                self._receive_cache.clear()
            self._receive_cache[key] = names
        return names

    def __repr__(self) -> str:
        return f"<{type(self).__name__} prefix={self.prefix!r}>"


def backend_failure(backend: str, error: BaseException) -> LayerError:
    """``error``, raised by ``backend``'s own client, as a :class:`LayerError` whose
    ``__cause__`` it is (also when the result is handed to a future, not raised)."""
    failure = LayerError(backend, str(error) or type(error).__name__)
    failure.__cause__ = error
    return failure
