"""Local readers (:class:`LocalReaders`): a process's ``prefix!`` attached so that its
messages are handed straight over (see :meth:`LocalReaders.attach_reader`)."""

from __future__ import annotations

import time

from ...names import validate_channel_name
from .._capabilities import LocalReader
from .receiving import ReceivingLayer


class LocalReaders(ReceivingLayer):
    """Attaching and detaching the local readers of the Redis layer."""

    def attach_reader(self, prefix: str, deliver: LocalReader) -> bool:
        """Hand every message for ``prefix`` + local names to ``deliver`` (see the base
        contract). One blocking read of ``prefix`` stays on while it is attached and
        hands over each entry it takes as it arrives: a group entry naming a thousand
        local members is one call. What this process sends to ``prefix`` names goes
        straight to ``deliver`` and never through Redis."""
        validate_channel_name(prefix)
        if not prefix.endswith("!"):
            raise ValueError(f"a local reader needs a process prefix ending in '!', not {prefix!r}")
        self.shards.refuse_if_closed()
        if prefix in self._local:
            self._local[prefix] = deliver
            return True
        self._local[prefix] = deliver
        self._reader_for(self.shards.index_for(prefix), (prefix,)).join()
        buffered = self._buffers.pop(prefix, None)
        if buffered:
            clock = time.monotonic()
            for taken in buffered:
                if taken.deadline > clock:
                    self._hand(deliver, [taken.channel], taken.payload)
        return True

    def detach_reader(self, prefix: str) -> None:
        """Stop handing ``prefix``'s messages to its local reader; they queue again."""
        if self._local.pop(prefix, None) is None:
            return
        reader = self._readers.get((self.shards.index_for(prefix), (prefix,)))
        if reader is not None:
            reader.leave()
