"""Group history on a layer (:class:`HistoryKeeping`, a part of
:class:`~chanlite.layers.BaseChannelLayer`): which groups keep one, and reading it.

A layer that keeps history overrides :meth:`HistoryKeeping.read_history` and appends
in its ``group_send_encoded``; :mod:`chanlite.history` holds what every layer shares.
"""

from __future__ import annotations

from ..history import (
    EMPTY,
    GroupHistory,
    KeptHistory,
    check_limit,
    history_size,
    parse_position,
    select,
)
from ..names import validate_group_name

# Group names whose history size is remembered (then it starts over).
_SIZE_CACHE_LIMIT = 1_000


class HistoryKeeping:
    """The history part of the layer contract (its options are set by the layer's
    ``__init__``: ``group_history`` and ``history_ttl``)."""

    #: ``(glob, messages kept)``: the groups that keep a history (DESIGN §11).
    history_globs: list[tuple[str, int]]
    #: Seconds a message of such a group is kept.
    history_ttl: float
    _history_sizes: dict[str, int]

    def history_size(self, group: str) -> int:
        """How many messages ``group`` keeps in its history (0: none)."""
        size = self._history_sizes.get(group)
        if size is None:
            if len(self._history_sizes) > _SIZE_CACHE_LIMIT:
                self._history_sizes.clear()
            size = self._history_sizes[group] = history_size(self.history_globs, group)
        return size

    async def group_history(
        self, group: str, since: str | None = None, limit: int | None = None
    ) -> GroupHistory:
        """The messages of ``group`` kept in its history after position ``since``,
        at most ``limit`` (see :class:`~chanlite.history.GroupHistory`).

        Raises :class:`~chanlite.InvalidChannelName` for a bad group name,
        ``ValueError`` for a malformed ``since`` or ``limit``, and
        :class:`~chanlite.LayerError` if the backend fails or the layer is closed.
        """
        validate_group_name(group)
        if since is not None:
            parse_position(since)
        checked = check_limit(limit)
        kept = await self.read_history(group) if self.history_size(group) else EMPTY
        return select(kept, since, checked)

    async def history_position(self, group: str) -> str | None:
        """The latest position of ``group`` (None for a group without history),
        starting its history's epoch if it has none, so a member that joins before
        the group's first message has a position to recover from. The epoch and
        offset then live as long as after a message.

        Raises :class:`~chanlite.InvalidChannelName` for a bad group name and
        :class:`~chanlite.LayerError` if the backend fails.
        """
        validate_group_name(group)
        if not self.history_size(group):
            return None
        return await self.start_history(group)

    async def start_history(self, group: str) -> str:
        """What :meth:`history_position` returns, for a group that keeps a history.

        Layers that keep history override this (and :meth:`read_history`); this
        default keeps nothing, so there is no position to give.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no group history")

    async def read_history(self, group: str) -> KeptHistory:
        """What this layer keeps of ``group``'s history (a group that keeps one).

        Layers that keep history override this, and append to it in
        :meth:`group_send_encoded`, once per send: the next offset, and the entry
        kept for :attr:`history_ttl` seconds. This default keeps nothing.
        """
        return EMPTY
