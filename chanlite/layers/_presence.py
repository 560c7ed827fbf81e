"""Group presence on a layer (:class:`PresenceKeeping`, a part of
:class:`~chanlite.layers.BaseChannelLayer`): which groups keep it, changing it, and
announcing what changed.

A layer that keeps presence overrides the ``store_presence_*`` and ``read_presence*``
methods; each store method is one atomic step of its backend, and says what it
changed, so that what is announced follows what was stored. :mod:`chanlite.presence`
holds what every layer shares.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._codec import decode, encode
from ..exceptions import ChanliteError, ConfigurationError
from ..names import validate_channel_name, validate_group_name
from ..presence import PRESENCE_CHANNEL, Leaves, announcement, encode_presence, keeps_presence

logger = logging.getLogger("chanlite.presence")

# Group names whose presence flag is remembered (then it starts over).
_FLAG_CACHE_LIMIT = 1_000


class PresenceKeeping:
    """The presence part of the layer contract (its options are set by the layer's
    ``__init__``: ``group_presence`` and ``presence_grace``)."""

    #: The globs of the groups that keep presence (DESIGN §12).
    presence_globs: list[str]
    #: Seconds a closed socket's presence waits for its client to re-join.
    presence_grace: float
    #: Joins and leaves this layer announced (summed over every process, their
    #: difference is how many members are present).
    presence_joins = 0
    presence_leaves = 0
    _presence_flags: dict[str, bool]

    if TYPE_CHECKING:

        async def send_encoded(self, channel: str, payload: bytes) -> None: ...

    def keeps_presence(self, group: str) -> bool:
        """Whether ``group`` keeps presence (it matches a ``group_presence`` glob)."""
        flag = self._presence_flags.get(group)
        if flag is None:
            if len(self._presence_flags) > _FLAG_CACHE_LIMIT:
                self._presence_flags.clear()
            flag = self._presence_flags[group] = keeps_presence(self.presence_globs, group)
        return flag

    def presence_payload(self, group: str, data: object) -> bytes:
        """``data`` checked and encoded as ``group``'s presence data.

        Raises :class:`~chanlite.ConfigurationError` if ``group`` keeps no presence,
        ``TypeError`` for data that is not a dict or cannot be encoded, and
        ``ValueError`` for data over :data:`~chanlite.presence.PRESENCE_SIZE_LIMIT`.
        """
        validate_group_name(group)
        if not self.keeps_presence(group):
            raise ConfigurationError(
                f"group {group!r} keeps no presence: it matches no glob of the layer's "
                f"group_presence option ({self.presence_globs!r})"
            )
        return encode_presence(data)

    # -- changing presence ------------------------------------------------------

    async def presence_join(
        self, group: str, channel: str, payload: bytes, *, client_id: str | None = None
    ) -> None:
        """Record ``channel``'s presence in ``group`` (``payload`` from
        :meth:`presence_payload`), and announce the join if it was not present.

        An entry of the same ``client_id`` in the group (a socket of the same client
        that closed, or is closing) moves to ``channel`` and nothing is announced.
        Raises :class:`~chanlite.LayerError` if the backend fails or the layer is
        closed.
        """
        validate_channel_name(channel)
        if await self.store_presence_join(group, channel, payload, client_id):
            await self._announce(group, joins={channel: payload})

    async def presence_discard(self, group: str, channel: str) -> None:
        """Remove ``channel``'s presence from ``group`` and announce the leave, if it
        was present and its socket is open (a closed socket's presence is left to its
        grace period). Raises :class:`~chanlite.LayerError` like the other methods."""
        if not self.keeps_presence(group):
            return
        data = await self.store_presence_remove(group, channel)
        if data is not None:
            await self._announce(group, leaves={channel: data})

    async def presence_close(self, channel: str) -> None:
        """``channel``'s socket closed: hold its presence, in every group, for
        :attr:`presence_grace` seconds when it has a client id (a sweep announces the
        leave when the grace ends), else remove it and announce the leave now."""
        if self.presence_globs:
            await self._announce_leaves(await self.store_presence_close(channel))

    async def presence_sweep(self) -> int:
        """Remove the presence whose grace ended and that of channels whose process
        has no live heartbeat; announce those leaves and return how many there were.
        Any number of processes may sweep at once: each leave is announced once."""
        if not self.presence_globs:
            return 0
        leaves = await self.store_presence_sweep()
        await self._announce_leaves(leaves)
        return sum(len(channels) for channels in leaves.values())

    async def presence_heartbeat(self, process: str, ttl: float) -> None:
        """Note that ``process`` (a process prefix, ``...!``) is alive for ``ttl``
        seconds; a sweep removes the presence of channels of a process that is not.
        This default keeps none: a layer only this process reaches needs none."""

    # -- reading presence -------------------------------------------------------

    async def group_presence(self, group: str) -> dict[str, dict[str, Any]]:
        """The presence data of ``group``'s present members, by channel name (``{}``
        for a group that keeps none)."""
        validate_group_name(group)
        if not self.keeps_presence(group):
            return {}
        entries = await self.read_presence(group)
        return {channel: decode(data) for channel, data in entries.items()}

    async def group_presence_count(self, group: str) -> int:
        """How many distinct presence values ``group``'s members have (two sockets of
        one user, with equal data, count once); one read, whatever the group size."""
        validate_group_name(group)
        if not self.keeps_presence(group):
            return 0
        return await self.read_presence_count(group)

    # -- what a layer that keeps presence overrides ------------------------------

    async def store_presence_join(
        self, group: str, channel: str, payload: bytes, client_id: str | None
    ) -> bool:
        """In one atomic step: move an entry of ``client_id`` to ``channel``, or update
        ``channel``'s entry, or add it; return True only if it was added (then the
        join is announced). Equal data is counted once (see
        :meth:`read_presence_count`)."""
        raise ConfigurationError(f"{type(self).__name__} keeps no group presence")

    async def store_presence_remove(self, group: str, channel: str) -> bytes | None:
        """Remove ``channel``'s entry if its socket is open; its data if this call
        removed it (atomic: only one caller gets it)."""
        return None

    async def store_presence_close(self, channel: str) -> Leaves:
        """Hold each entry of ``channel`` that has a client id until
        :attr:`presence_grace` seconds from now; remove those without one and return
        them."""
        return {}

    async def store_presence_sweep(self) -> Leaves:
        """Remove the held entries whose grace ended, and the entries (not held) of
        channels whose process has no live heartbeat; return those this call
        removed."""
        return {}

    async def read_presence(self, group: str) -> dict[str, bytes]:
        """``group``'s entries: channel -> encoded data."""
        return {}

    async def read_presence_count(self, group: str) -> int:
        """How many distinct encoded values ``group``'s entries have."""
        return 0

    # -- announcing ---------------------------------------------------------------

    async def _announce_leaves(self, leaves: Leaves) -> None:
        for group, channels in leaves.items():
            if channels:
                await self._announce(group, leaves=channels)

    async def _announce(
        self,
        group: str,
        joins: Mapping[str, bytes] | None = None,
        leaves: Mapping[str, bytes] | None = None,
    ) -> None:
        """Send the announcement; one that cannot be sent (a full channel, a failed
        backend) is logged and dropped, as at-most-once delivery allows."""
        self.presence_joins += len(joins or ())
        self.presence_leaves += len(leaves or ())
        try:
            await self.send_encoded(PRESENCE_CHANNEL, encode(announcement(group, joins, leaves)))
        except ChanliteError as exc:
            logger.warning("a presence announcement of %r was dropped: %s", group, exc)
