"""The deadline of a layer's ``receive``: a ``time.monotonic()`` time, or None (wait
for ever)."""

from __future__ import annotations

import time

__all__ = ["deadline_after", "past", "pause"]


def deadline_after(timeout: float | None) -> float | None:
    """The deadline of a receive given ``timeout`` seconds (a negative one is now)."""
    return None if timeout is None else time.monotonic() + max(timeout, 0.0)


def past(deadline: float | None) -> bool:
    """True once ``deadline`` has come."""
    return deadline is not None and time.monotonic() >= deadline


def pause(deadline: float | None, delay: float) -> float:
    """``delay``, cut short to the time left before ``deadline``."""
    if deadline is None:
        return delay
    return max(0.0, min(delay, deadline - time.monotonic()))
