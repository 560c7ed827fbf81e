"""``memory://``: the in-process layer, and the embedded default.

Every operation is a short critical section under one lock, so the layer may be used
from any thread and any event loop in the process. What the lock guards, and how a
send wakes a waiting receive, is in ``_memory_state``; the local readers and takers
below are kept in ``_memory_handoff``.

Three additions beyond the base contract serve an interface server and a worker in
this process:

* :meth:`InMemoryChannelLayer.send_waiting` is a send that waits for room while the
  channel is full. The senders waiting on a queue form a FIFO, and each message that
  leaves the queue admits the oldest of them in the same critical section: nobody
  barges ahead, nobody polls, and none is starved.
* :meth:`InMemoryChannelLayer.attach_reader` installs a *local reader* for a process
  prefix ``prefix!``: messages for ``prefix!local`` names are handed to it as they are
  sent instead of being queued, so a reply reaches its socket without a queue, a
  reader task or a capacity check (the interface bounds what waits per socket).
* :meth:`InMemoryChannelLayer.attach_taker` installs a *local taker* for plain
  channels: a send on the taker's thread that would be first on its queue is offered
  to it first, so an idle in-process worker starts the consumer inside the send
  instead of being woken on the next turn of the loop.

Messages are stored encoded, which both enforces the codec's rules and isolates
receivers from senders (and from each other, for group sends). The one exception is
a message the sender hands over (``send_waiting(..., owned=True)``): the interface's
``websocket.receive`` frames, which nobody else holds, are stored as the dict itself.

Nothing here can fail as a backend does, except being used after
:meth:`InMemoryChannelLayer.aclose`: every operation checks for that inside its
critical section, so one that races with the close either finishes before it or
raises :class:`~chanlite.LayerError`, and none is left waiting for a wake-up that
will never come.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._codec import decode, encode
from ..exceptions import ChannelFull
from ..history import KeptHistory, meta_ttl, stamp
from ..names import queue_name, validate_channel_name, validate_group_name
from ..presence import Leaves
from ._deadline import deadline_after, past
from ._memory_handoff import LocalHandoff
from ._memory_history import MemoryHistories
from ._memory_presence import MemoryPresence
from ._memory_state import BACKEND, Entry, Sender, closed_error, wake
from .base import ReceiveResult

if TYPE_CHECKING:
    from ..stores.base import SessionStore

__all__ = ["BACKEND", "InMemoryChannelLayer"]


class InMemoryChannelLayer(LocalHandoff):
    """A channel layer in this process's memory (``memory://``).

    ``clock`` is the time source of message and group expiry (``time.monotonic`` by
    default; tests pass a fake one). Receive timeouts always run on real time.
    """

    schemes = ("memory",)
    process_local = True

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, **options: Any) -> None:
        super().__init__(clock=clock, **options)
        self._histories = MemoryHistories(
            self.history_ttl, meta_ttl(self.history_ttl, self.group_expiry)
        )
        self._presence = MemoryPresence()

    # -- sending --------------------------------------------------------------

    async def send_encoded(self, channel: str, payload: bytes) -> None:
        """Append ``payload`` to ``channel``; raise ChannelFull when at capacity."""
        key = queue_name(channel)
        reader = self._readers.get(key) if self._readers else None
        if reader is not None:
            reader.hand([channel], payload)
            return
        if self._takers and key in self._takers and self._offer(key, channel, payload):
            return
        now = self._clock()
        with self._lock:
            if self._closed:
                raise closed_error()
            if not self._append(key, channel, payload, now):
                raise ChannelFull(channel, self.capacity_for(key))

    async def send_waiting(
        self, channel: str, message: dict[str, Any], timeout: float, *, owned: bool = False
    ) -> None:
        """Send ``message``, waiting up to ``timeout`` seconds for room while
        ``channel`` is full; raise ChannelFull if there is still none by then.

        The senders waiting on a queue are admitted oldest first, one per message that
        leaves it, and ahead of any later ``send``. Raises like :meth:`send` for a bad
        name or content. A cancelled call may already have sent its message.

        ``owned=True`` hands ``message`` over instead of copying it: it is stored and
        received as is, unencoded. Only for a dict the caller built, never touches
        again and knows the codec accepts within its size limit.
        """
        validate_channel_name(channel)
        key = queue_name(channel)
        reader = self._readers.get(key) if self._readers else None
        if reader is not None:
            reader.hand([channel], encode(message))
            return
        payload: bytes | dict[str, Any] = message if owned else encode(message)
        if self._takers and key in self._takers and self._offer(key, channel, payload):
            return
        with self._lock:
            if self._closed:
                raise closed_error()
            if self._append(key, channel, payload, self._clock()):
                return
            if timeout <= 0:
                raise ChannelFull(channel, self.capacity_for(key))
            sender = Sender(asyncio.get_running_loop().create_future(), channel, payload)
            self._senders.setdefault(key, deque()).append(sender)
        await self._wait_for_room(sender, key, timeout)

    def waiting_receivers(self, channel: str) -> int:
        """How many receives wait on ``channel``'s queue now, on any thread."""
        with self._lock:
            waiters = self._waiters.get(queue_name(channel), ())
            return sum(not waiter.woken for waiter in waiters)

    def waiting_senders(self, channel: str) -> int:
        """How many :meth:`send_waiting` calls wait for room on ``channel``'s queue."""
        with self._lock:
            return len(self._senders.get(queue_name(channel), ()))

    async def group_send_encoded(self, group: str, payload: bytes) -> None:
        """Append ``payload`` to every live member; full members are skipped.

        A group with history records the message first, under the same lock, so
        its positions follow the order of the sends, and its members get it
        stamped with its position (:func:`~chanlite.history.stamp`).
        """
        now = self._clock()
        local: dict[str, list[str]] = {}
        size = self.history_size(group) if self.history_globs else 0
        with self._lock:
            if self._closed:
                raise closed_error()
            if size:
                position = self._histories.append(group, size, payload, now)
                payload = stamp(payload, group, position)
            readers = self._readers
            for channel in self._live_members(group, now):
                key = queue_name(channel)
                if readers and key in readers:
                    local.setdefault(key, []).append(channel)
                elif not self._append(key, channel, payload, now):
                    self.group_full_skips += 1
            targets = [(readers[key], channels) for key, channels in local.items()]
        for reader, channels in targets:
            reader.hand(channels, payload)

    async def start_history(self, group: str) -> str:
        """``group``'s latest position, its epoch started if it has none."""
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._histories.start(group, self.history_size(group), self._clock())

    async def read_history(self, group: str) -> KeptHistory:
        """``group``'s epoch, latest offset and unexpired messages."""
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._histories.read(group, self._clock())

    # -- presence -------------------------------------------------------------

    async def store_presence_join(
        self, group: str, channel: str, payload: bytes, client_id: str | None
    ) -> bool:
        """Add, update or take over ``channel``'s entry; True if it was added."""
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._presence.join(group, channel, payload, client_id)

    async def store_presence_remove(self, group: str, channel: str) -> bytes | None:
        """Remove ``channel``'s entry if its socket is open; its data if removed."""
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._presence.remove(group, channel, self._clock())

    async def store_presence_close(self, channel: str) -> Leaves:
        """Hold ``channel``'s entries with a client id; remove the others."""
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._presence.close(channel, self._clock(), self.presence_grace)

    async def store_presence_sweep(self) -> Leaves:
        """Remove the entries whose grace ended (no process dies under memory://)."""
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._presence.sweep(self._clock())

    async def read_presence(self, group: str) -> dict[str, bytes]:
        """``group``'s entries: channel -> encoded data."""
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._presence.read(group)

    async def read_presence_count(self, group: str) -> int:
        """How many distinct values ``group``'s entries have."""
        with self._lock:
            if self._closed:
                raise closed_error()
            return self._presence.count(group)

    # -- receiving ------------------------------------------------------------

    async def receive(self, channels: Iterable[str], timeout: float | None = None) -> ReceiveResult:
        """Take the next message from any of ``channels`` (see the base contract)."""
        keys = self.cached_receive_names(channels)
        deadline = deadline_after(timeout)
        while True:
            waiter = None
            with self._lock:
                if self._closed:  # also what a receive woken by aclose() finds
                    raise closed_error()
                entry = self._pop_first(keys, self._clock())
                if entry is None and not past(deadline):
                    waiter = self._register(keys)
            if entry is not None:
                return _content(entry)
            if waiter is None:
                return None, None
            await self._wait(waiter, keys, deadline)

    def receive_ready(self, channels: list[str]) -> tuple[str, dict[str, Any]] | None:
        """The next message of ``channels`` if one is queued now (see the base)."""
        keys = self.cached_receive_names(channels)
        with self._lock:
            if self._closed:
                return None
            entry = self._pop_first(keys, self._clock())
        return None if entry is None else _content(entry)

    # -- groups ---------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        """Add ``channel`` to ``group``, refreshing its membership expiry."""
        validate_group_name(group)
        validate_channel_name(channel)
        with self._lock:
            if self._closed:
                raise closed_error()
            self._groups.setdefault(group, {})[channel] = self._clock() + self.group_expiry
            self._memberships.setdefault(channel, set()).add(group)

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` if it is a member."""
        validate_group_name(group)
        validate_channel_name(channel)
        with self._lock:
            if self._closed:
                raise closed_error()
            self._remove_member(group, channel)

    async def group_channels(self, group: str) -> set[str]:
        """The unexpired members of ``group``."""
        validate_group_name(group)
        with self._lock:
            if self._closed:
                raise closed_error()
            return set(self._live_members(group, self._clock()))

    # -- housekeeping ---------------------------------------------------------

    async def flush(self) -> None:
        """Drop every message, group, group history and presence (senders waiting for
        room get it); each group's next message starts a new epoch."""
        with self._lock:
            if self._closed:
                raise closed_error()
            self._histories.clear()
            self._presence.clear()
            self._queues.clear()
            self._groups.clear()
            self._memberships.clear()
            now = self._clock()
            for key in list(self._senders):
                self._admit_senders(key, now)

    def make_session_store(self) -> SessionStore:
        """A :class:`~chanlite.stores.memory.MemorySessionStore`: state in this
        process, like the layer's."""
        from ..stores.memory import MemorySessionStore

        return MemorySessionStore.for_layer(self)

    async def stats(self) -> dict[str, Any]:
        """Current channel depths and group sizes."""
        with self._lock:
            if self._closed:
                raise closed_error()
            return {
                "channels": {key: len(queue) for key, queue in self._queues.items() if queue},
                "groups": {group: len(members) for group, members in self._groups.items()},
            }

    async def aclose(self) -> None:
        """Close the layer and drop what it holds; closing twice is harmless.

        From now on every operation raises :class:`~chanlite.LayerError`, and so do
        the receives and the :meth:`send_waiting` calls waiting when it closes: they
        are woken to find the layer closed.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for waiters in self._waiters.values():
                for waiter in waiters:
                    if not waiter.woken:
                        waiter.wake()
            for senders in self._senders.values():
                for sender in senders:
                    wake(sender.future)  # not admitted: it raises on waking
            self._waiters.clear()
            self._senders.clear()
            self._queues.clear()
            self._readers.clear()
            self._takers.clear()
            self._groups.clear()
            self._memberships.clear()
            self._histories.clear()
            self._presence.clear()


def _content(entry: Entry) -> tuple[str, dict[str, Any]]:
    """A taken entry's channel and content (decoded, unless it was stored owned)."""
    payload = entry[2]
    return entry[1], payload if isinstance(payload, dict) else decode(payload)
