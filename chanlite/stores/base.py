"""``SessionStore``: the server-side state kept per session and per socket.

A store holds two kinds of state, both shared by every process that uses it:

* **Sessions**: a dict of JSON-able data (and bytes) under a string key, with an
  expiry that each load and save pushes forward (sliding expiry).
* **Ordering cursors** for ``enforce_ordering``: per socket, the ``next`` order number
  whose turn it is (0 until the first message finished), and the messages *parked*
  because their turn had not come. Check-and-park and advance-and-unpark are each
  atomic, so any number of workers in any number of processes agree on whose turn it
  is and never run one parked message twice.

Backends: ``memory``, ``redis`` and ``sqlite``, chosen like layers (see
:func:`chanlite.stores.get_session_store`).

A backend failure raises :class:`~chanlite.LayerError`, the layers' error, not an
error of its own: a store usually runs on its layer's backend (the same Redis
connections, the same SQLite file), so one outage is one error type to handle,
whichever of the two met it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from ..exceptions import ConfigurationError, InvalidChannelName
from ..names import validate_group_name

#: A parked message: its bytes, or a function that makes them, which a store calls
#: only when it parks the message (most messages run at once and need none).
type Payload = bytes | Callable[[], bytes]

__all__ = ["SessionStore"]

#: The key prefix of a store when none is given (the layers' default too).
DEFAULT_PREFIX = "chanlite"


class SessionStore(ABC):
    """The contract every session store implements.

    Keys are opaque strings chosen by the caller (chanlite uses ``http:<random>`` for
    HTTP sessions and ``channel:<reply channel>`` for channel sessions). ``ttl`` is in
    seconds and must be positive.

    Every operation raises :class:`~chanlite.LayerError` when the backend fails (a
    Redis server that cannot be reached, breaks the connection or refuses a command;
    an ``sqlite3.Error``), with the backend's own exception as its ``__cause__``; the
    built-in stores also raise it when used after :meth:`aclose`. The operation may or
    may not have taken effect. Bad arguments keep their own errors (``TypeError``,
    ``ValueError``, ``MessageTooLarge``).
    """

    #: URL schemes this backend serves (``"memory"``, ``"redis"``, ...).
    schemes: ClassVar[tuple[str, ...]] = ()

    # -- sessions -----------------------------------------------------------------

    @abstractmethod
    async def load(self, key: str, ttl: float) -> dict[str, Any] | None:
        """The data saved under ``key``, or None when there is none or it expired.

        A hit pushes the expiry to ``ttl`` seconds from now. Raises
        :class:`~chanlite.LayerError` if the backend fails or the store is closed.
        """

    @abstractmethod
    async def save(self, key: str, data: dict[str, Any], ttl: float) -> None:
        """Store ``data`` under ``key`` (replacing what was there), expiring ``ttl``
        seconds from now. ``data`` must be encodable by chanlite's codec
        (``TypeError`` otherwise, naming the key path; ``MessageTooLarge`` over the
        codec's size limit). Nothing is stored when encoding fails. Raises
        :class:`~chanlite.LayerError` if the backend fails or the store is closed."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Forget ``key``; no error when it is absent. Raises
        :class:`~chanlite.LayerError` if the backend fails or the store is closed."""

    # -- ordering cursors ---------------------------------------------------------

    @abstractmethod
    async def order_start(
        self, socket: str, order: int, slight: bool, payload: Payload, ttl: float
    ) -> bool:
        """Atomically decide whether message ``order`` of ``socket`` may run now.

        Strict (``slight=False``): it may run when ``order <= next``. Slight: it may
        run once ``next >= 1`` (the connect has finished). If it may run, return True.
        Otherwise park ``payload`` (bytes, or a function returning them, called
        only then) under ``order`` (with its ``slight`` flag) and
        return False. Either way the cursor exists afterwards (``next`` 0 when it was
        absent or had expired, its parked messages gone with it) and its expiry moves to
        ``ttl`` from now. Parking an order that is already parked replaces its payload.

        Raises :class:`~chanlite.LayerError` if the backend fails or the store is
        closed; the message may then have been parked or not.
        """

    @abstractmethod
    async def order_finish(self, socket: str, order: int, last: bool, ttl: float) -> list[bytes]:
        """Atomically record that message ``order`` of ``socket`` has finished.

        Sets ``next = max(next, order + 1)``, then removes and returns, lowest order
        first, the parked payloads that may now run: every parked slight message
        once ``next >= 1``, and the lowest-order parked strict message if its order
        is ``<= next`` (only that one: the next waits for it to finish).
        ``order=-1`` leaves ``next`` as it is (a message that ran out of turn). With
        ``last=True`` (the socket's disconnect) and nothing left parked, the cursor
        is deleted.

        Raises :class:`~chanlite.LayerError` if the backend fails or the store is
        closed; the cursor may then have moved or not.
        """

    # -- lifecycle ----------------------------------------------------------------

    async def aclose(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release connections; the store must not be used afterwards (the built-in
        stores then raise :class:`~chanlite.LayerError`)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


# -- shared by the backends ------------------------------------------------------------
# The ordering rules live here once; the Redis backend restates them in Lua.


def may_run(next_order: int, order: int, slight: bool) -> bool:
    """Whether message ``order`` may run when the cursor is at ``next_order``."""
    return next_order >= 1 if slight else order <= next_order


def releasable(next_order: int, parked: Iterable[tuple[int, bool]]) -> list[int]:
    """The parked orders that may run once the cursor is at ``next_order``.

    ``parked`` is (order, slight) pairs, lowest order first. Every slight one goes once
    ``next_order >= 1``; of the strict ones only the lowest, if its turn has come.
    """
    released: list[int] = []
    strict_seen = False
    for order, slight in parked:
        if slight:
            if next_order >= 1:
                released.append(order)
        elif not strict_seen:
            strict_seen = True
            if order <= next_order:
                released.append(order)
    return released


def payload_bytes(payload: Payload) -> bytes:
    """The bytes of a payload given as bytes or as a function that makes them."""
    return bytes(payload() if callable(payload) else payload)


def check_ttl(ttl: float) -> float:
    """``ttl`` as a float: ``TypeError`` unless a number, ``ValueError`` unless
    positive and finite."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    if not (math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
    return float(ttl)


def check_order(order: int, lowest: int = 0) -> int:
    """``order``: ``TypeError`` unless an int, ``ValueError`` unless from ``lowest`` to
    below 2**53 (so that ``order + 1`` is exact in every backend, Lua numbers
    included)."""
    if isinstance(order, bool) or not isinstance(order, int):
        raise TypeError(f"order must be an int, not {type(order).__name__}")
    if not lowest <= order < 2**53:
        raise ValueError(f"order must be from {lowest} to below 2**53, got {order}")
    return order


def check_prefix(prefix: object) -> str:
    """A store's key prefix: a valid group name, like a layer's prefix."""
    try:
        return validate_group_name(prefix)
    except InvalidChannelName as exc:
        raise ConfigurationError(f"session store prefix {prefix!r}: {exc.rule}") from None
