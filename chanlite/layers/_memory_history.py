"""A memory layer's group histories (DESIGN §11).

:class:`MemoryHistories` keeps, per group that has a history, its epoch, its latest
offset and a bounded deque of ``(offset, expires_at, payload)``. Like the rest of the
memory layer's state it is guarded by the layer's lock: every method expects its
caller to hold it, and takes ``now`` from the layer's clock.

A group's epoch and offset live :func:`~chanlite.history.meta_ttl` seconds after its
last message; past that, or after :meth:`MemoryHistories.clear`, the next message
starts a new epoch. Groups are kept in the order of their last message, so those
whose history has run out are dropped from the front as others append.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from ..history import EMPTY, KeptHistory, format_position, new_epoch

__all__ = ["GroupLog", "MemoryHistories"]


class GroupLog:
    """One group's history: epoch, latest offset, the entries kept, and when the epoch
    and offset are forgotten."""

    __slots__ = ("entries", "epoch", "forget_at", "offset")

    def __init__(self, size: int) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.forget_at = 0.0
        self.entries: deque[tuple[int, float, bytes]] = deque(maxlen=size)

    def drop_expired(self, now: float) -> None:
        """Forget the entries past their ``history_ttl`` (oldest first: all entries of
        a layer are kept equally long, so they expire in order)."""
        entries = self.entries
        while entries and entries[0][1] <= now:
            entries.popleft()


class MemoryHistories:
    """Every group history of one memory layer.

    ``ttl``: how long each message is kept; ``meta_ttl``: how long a group's epoch and
    offset outlive its last message.
    """

    def __init__(self, ttl: float, meta_ttl: float) -> None:
        self.ttl = ttl
        self.meta_ttl = meta_ttl
        self._logs: OrderedDict[str, GroupLog] = OrderedDict()

    def append(self, group: str, size: int, payload: bytes, now: float) -> str:
        """Record one message sent to ``group`` (which keeps ``size``); return its
        position."""
        self._forget_stale(now)
        log = self._logs.get(group)
        if log is None or log.forget_at <= now:
            log = self._logs[group] = GroupLog(size)
        else:
            log.drop_expired(now)
        log.offset += 1
        log.forget_at = now + self.meta_ttl
        log.entries.append((log.offset, now + self.ttl, payload))
        self._logs.move_to_end(group)
        return format_position(log.epoch, log.offset)

    def start(self, group: str, size: int, now: float) -> str:
        """``group``'s latest position, starting its epoch (at offset 0) if it has
        none; either way its epoch and offset live :attr:`meta_ttl` from now."""
        self._forget_stale(now)
        log = self._logs.get(group)
        if log is None or log.forget_at <= now:
            log = self._logs[group] = GroupLog(size)
        log.forget_at = now + self.meta_ttl
        self._logs.move_to_end(group)
        return format_position(log.epoch, log.offset)

    def read(self, group: str, now: float) -> KeptHistory:
        """What ``group`` keeps now: its epoch, latest offset and live entries."""
        log = self._logs.get(group)
        if log is None:
            return EMPTY
        if log.forget_at <= now:
            del self._logs[group]
            return EMPTY
        log.drop_expired(now)
        return KeptHistory(log.epoch, log.offset, [(n, data) for n, _, data in log.entries])

    def clear(self) -> None:
        """Forget every history: each group starts a new epoch with its next message."""
        self._logs.clear()

    def __len__(self) -> int:
        return len(self._logs)

    def _forget_stale(self, now: float) -> None:
        logs = self._logs
        while logs:
            log = next(iter(logs.values()))
            if log.forget_at > now:
                return
            logs.popitem(last=False)
