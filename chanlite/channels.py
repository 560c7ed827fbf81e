"""``Channel`` and ``Group``: sending, with consumer atomicity.

Inside a consumer, ``send`` is buffered and flushed in call order when the consumer
returns or raises. ``immediately=True``, and any send outside a consumer, goes at
once. ``Group.add`` and ``Group.discard`` always act at once. Each sync method has an
``a``-prefixed async twin; both share one implementation and differ only in how they
wait. With tracing on, a consumer's sends carry its span's context
(:mod:`chanlite.tracing`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._codec import encode
from .history import GroupHistory
from .names import validate_channel_name, validate_group_name
from .protocol import TRACE_KEY, accepts
from .recovery import Rejoin, rejoin_group
from .runtime import count_sent, current_scope, resolve_layer
from .sync_bridge import run_sync

if TYPE_CHECKING:
    from .layers.base import BaseChannelLayer

T = TypeVar("T")
ChannelLike = "Channel | str"


class Channel:
    """A named channel.

    Without ``layer``: the layer of the message whose consumer is running, else the
    layer of the current ``Chanlite`` app (the one whose worker, view or middleware is
    running), else ``CHANLITE_LAYER``, else one process-wide ``memory://`` layer (the
    same for ``Group``).
    """

    __slots__ = ("_layer", "name")

    def __init__(self, name: str, layer: BaseChannelLayer | None = None) -> None:
        self.name = validate_channel_name(name)
        self._layer = layer

    @property
    def layer(self) -> BaseChannelLayer:
        """The layer this channel sends through."""
        return resolve_layer(self._layer)

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send ``content`` (buffered inside a consumer unless ``immediately``)."""
        pending = self._prepare(content, immediately)
        if pending is not None:
            run_sync(*pending)

    async def asend(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Async twin of :meth:`send`."""
        pending = self._prepare(content, immediately)
        if pending is not None:
            await pending[0](*pending[1:])

    def _prepare(
        self, content: dict[str, Any], immediately: bool
    ) -> tuple[Callable[..., Awaitable[None]], str, bytes] | None:
        scope = current_scope()
        if scope is not None and scope.trace is not None:
            trace = scope.reply_trace if self.name == scope.reply_channel else scope.trace
            if trace is not None:
                content = {**content, TRACE_KEY: trace}
        payload = encode(content)
        if scope is not None and self.name == scope.reply_channel and accepts(content):
            scope.accepted = True
        if scope is not None and not immediately and self._layer in (None, scope.layer):
            scope.outbox.append((False, self.name, payload))
            return None
        count_sent(self.name, group=False)
        return self.layer.send_encoded, self.name, payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Channel) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"<Channel {self.name!r}>"


class Group:
    """A named set of channels that ``send`` reaches all at once."""

    __slots__ = ("_layer", "name")

    def __init__(self, name: str, layer: BaseChannelLayer | None = None) -> None:
        self.name = validate_group_name(name)
        self._layer = layer

    @property
    def layer(self) -> BaseChannelLayer:
        """The layer this group lives on."""
        return resolve_layer(self._layer)

    def add(self, channel: Channel | str, *, presence: dict[str, Any] | None = None) -> bool:
        """Add ``channel`` to the group, at once (idempotent).

        ``presence``: who the member is (a dict, at most 1 KB encoded), for a group
        that keeps presence (the layer's ``group_presence`` option): recorded, and
        announced on ``chanlite.presence`` if the channel was not present. Raises
        :class:`~chanlite.ConfigurationError` for a group that keeps none,
        ``TypeError`` for data that is not a dict, ``ValueError`` for data over 1 KB.

        In the connect consumer of a ``chanlite.v1`` socket that presented a
        position in this group, adding the socket also sends it what it missed
        (:mod:`chanlite.recovery`), and its presence carries the client's id, so that
        the same client re-joining after a reconnect announces nothing. Returns True
        if it was sent what it missed: the client then has the group's messages up
        to now, and needs no other catching up.
        """
        return run_sync(functools.partial(self.aadd, channel, presence=presence))

    async def aadd(self, channel: Channel | str, *, presence: dict[str, Any] | None = None) -> bool:
        """Async twin of :meth:`add`."""
        name = _channel_name(channel)
        layer = self.layer
        payload = None if presence is None else layer.presence_payload(self.name, presence)
        await layer.group_add(self.name, name)
        rejoin = _rejoin_of(name, layer)
        if payload is not None:
            client_id = rejoin.client_id if rejoin is not None else None
            await layer.presence_join(self.name, name, payload, client_id=client_id)
        if rejoin is None:
            return False
        return await rejoin_group(layer, self.name, rejoin)

    def discard(self, channel: Channel | str) -> None:
        """Remove ``channel`` from the group, at once (no-op for non-members), with its
        presence (the leave is announced; a closed socket's presence is left to its
        grace period)."""
        run_sync(self.adiscard, channel)

    async def adiscard(self, channel: Channel | str) -> None:
        """Async twin of :meth:`discard`."""
        name = _channel_name(channel)
        layer = self.layer
        await layer.group_discard(self.name, name)
        await layer.presence_discard(self.name, name)

    def send(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Send ``content`` to every member (buffered inside a consumer)."""
        pending = self._prepare(content, immediately)
        if pending is not None:
            run_sync(*pending)

    async def asend(self, content: dict[str, Any], immediately: bool = False) -> None:
        """Async twin of :meth:`send`."""
        pending = self._prepare(content, immediately)
        if pending is not None:
            await pending[0](*pending[1:])

    def channels(self) -> set[str]:
        """The names of the group's current members."""
        return run_sync(self.layer.group_channels, self.name)

    async def achannels(self) -> set[str]:
        """Async twin of :meth:`channels`."""
        return await self.layer.group_channels(self.name)

    def history(self, since: str | None = None, limit: int | None = None) -> GroupHistory:
        """The group's kept messages after position ``since``, at most ``limit`` (the
        newest): see :class:`~chanlite.history.GroupHistory`. Empty for a group that
        keeps no history (the layer's ``group_history`` option)."""
        return run_sync(self.layer.group_history, self.name, since, limit)

    async def ahistory(self, since: str | None = None, limit: int | None = None) -> GroupHistory:
        """Async twin of :meth:`history`."""
        return await self.layer.group_history(self.name, since, limit)

    def presence(self) -> dict[str, dict[str, Any]]:
        """The presence data of the group's present members, by channel name (``{}``
        for a group that keeps no presence)."""
        return run_sync(self.layer.group_presence, self.name)

    async def apresence(self) -> dict[str, dict[str, Any]]:
        """Async twin of :meth:`presence`."""
        return await self.layer.group_presence(self.name)

    def presence_count(self) -> int:
        """How many distinct presence values the members have (two sockets of user
        alice with equal data count once); one read, whatever the group size."""
        return run_sync(self.layer.group_presence_count, self.name)

    async def apresence_count(self) -> int:
        """Async twin of :meth:`presence_count`."""
        return await self.layer.group_presence_count(self.name)

    def _prepare(
        self, content: dict[str, Any], immediately: bool
    ) -> tuple[Callable[..., Awaitable[None]], str, bytes] | None:
        scope = current_scope()
        if scope is not None and scope.trace is not None:
            content = {**content, TRACE_KEY: scope.trace}
        payload = encode(content)
        if scope is not None and not immediately and self._layer in (None, scope.layer):
            scope.outbox.append((True, self.name, payload))
            return None
        count_sent(self.name, group=True)
        return self.layer.group_send_encoded, self.name, payload

    def __repr__(self) -> str:
        return f"<Group {self.name!r}>"


def _rejoin_of(channel: str, layer: BaseChannelLayer) -> Rejoin | None:
    """The re-join in progress, if the running consumer is the connect consumer of
    ``channel``, a ``chanlite.v1`` socket, on ``layer``."""
    scope = current_scope()
    rejoin = scope.rejoin if scope is not None and scope.layer is layer else None
    return rejoin if rejoin is not None and rejoin.reply_channel == channel else None


def _channel_name(channel: Channel | str) -> str:
    if isinstance(channel, Channel):
        return channel.name
    return validate_channel_name(channel)
