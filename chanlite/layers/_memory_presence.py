"""A memory layer's group presence (DESIGN §12).

:class:`MemoryPresence` keeps, per group that has present members, each member's
:class:`Entry` (its encoded data, client id, and the end of its grace once its socket
closed), a count per distinct value, and which channel each client id is on. Like the
rest of the memory layer's state it is guarded by the layer's lock: every method
expects its caller to hold it, and takes ``now`` from the layer's clock.

One process reaches a memory layer, so no process dies under it: only graces end.
"""

from __future__ import annotations

from ..presence import Leaves

__all__ = ["Entry", "MemoryPresence"]


class Entry:
    """One member's presence; ``held_until`` is 0 while its socket is open."""

    __slots__ = ("client", "data", "held_until")

    def __init__(self, data: bytes, client: str | None) -> None:
        self.data = data
        self.client = client
        self.held_until = 0.0


class GroupPresence:
    """One group's entries, the count of each distinct value, and client -> channel."""

    __slots__ = ("clients", "counts", "entries")

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.counts: dict[bytes, int] = {}
        self.clients: dict[str, str] = {}

    def put(self, channel: str, entry: Entry) -> None:
        self.drop(channel)
        self.entries[channel] = entry
        self.counts[entry.data] = self.counts.get(entry.data, 0) + 1
        if entry.client is not None:
            self.clients[entry.client] = channel

    def drop(self, channel: str) -> Entry | None:
        entry = self.entries.pop(channel, None)
        if entry is None:
            return None
        left = self.counts[entry.data] - 1
        if left:
            self.counts[entry.data] = left
        else:
            del self.counts[entry.data]
        if entry.client is not None and self.clients.get(entry.client) == channel:
            del self.clients[entry.client]
        return entry


class MemoryPresence:
    """The presence of every group of a memory layer."""

    def __init__(self) -> None:
        self._groups: dict[str, GroupPresence] = {}
        # channel -> the groups it has presence in (for a socket that closes)
        self._channels: dict[str, set[str]] = {}
        # (group, channel) of the entries held in their grace, for the sweep
        self._held: set[tuple[str, str]] = set()

    def join(self, group: str, channel: str, data: bytes, client: str | None) -> bool:
        """Add, update or take over an entry; True only if one was added."""
        book = self._groups.get(group)
        moved_from = book.clients.get(client) if book and client is not None else None
        added = book is None or (channel not in book.entries and moved_from is None)
        if moved_from is not None and moved_from != channel:
            self._drop(group, moved_from)
        self._held.discard((group, channel))
        self._groups.setdefault(group, GroupPresence()).put(channel, Entry(data, client))
        self._channels.setdefault(channel, set()).add(group)
        return added

    def remove(self, group: str, channel: str, now: float, *, due: bool = False) -> bytes | None:
        """Remove ``channel``'s entry if its socket is open (``due``: if its grace
        ended by ``now``); its data if it was removed."""
        book = self._groups.get(group)
        entry = book.entries.get(channel) if book is not None else None
        if entry is None:
            return None
        held = entry.held_until
        if (held and not due) or (due and not 0 < held <= now):
            return None
        self._drop(group, channel)
        return entry.data

    def close(self, channel: str, now: float, grace: float) -> Leaves:
        """Hold ``channel``'s entries that have a client id for ``grace`` seconds;
        remove the others and return them."""
        leaves: Leaves = {}
        for group in list(self._channels.get(channel, ())):
            entry = self._groups[group].entries[channel]
            if entry.client is None:
                self._drop(group, channel)
                leaves[group] = {channel: entry.data}
            elif not entry.held_until:
                entry.held_until = now + grace
                self._held.add((group, channel))
        return leaves

    def sweep(self, now: float) -> Leaves:
        """Remove the entries whose grace ended by ``now`` and return them."""
        leaves: Leaves = {}
        for group, channel in list(self._held):
            data = self.remove(group, channel, now, due=True)
            if data is not None:
                leaves.setdefault(group, {})[channel] = data
        return leaves

    def read(self, group: str) -> dict[str, bytes]:
        """``group``'s entries: channel -> encoded data."""
        book = self._groups.get(group)
        return {} if book is None else {ch: entry.data for ch, entry in book.entries.items()}

    def count(self, group: str) -> int:
        """How many distinct values ``group``'s entries have."""
        book = self._groups.get(group)
        return 0 if book is None else len(book.counts)

    def clear(self) -> None:
        self._groups.clear()
        self._channels.clear()
        self._held.clear()

    def _drop(self, group: str, channel: str) -> None:
        self._held.discard((group, channel))
        book = self._groups[group]
        book.drop(channel)
        if not book.entries:
            del self._groups[group]
        groups = self._channels.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._channels[channel]
