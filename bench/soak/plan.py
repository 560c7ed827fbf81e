"""What a soak run does: sizes, pace, durations, CPUs (from the command line)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """The settings of a soak run, shared by every layer it runs on."""

    command: str
    connections: int
    room_size: int
    chatting: float
    interval_s: float
    minutes: float
    sample_s: float
    warmup_s: float
    tolerance: float
    workers: int
    close_rate: float
    server_cpu: int
    load_cpu: int

    @property
    def rooms(self) -> int:
        """Rooms of ``room_size`` (the last one may be smaller)."""
        return max(1, math.ceil(self.connections / self.room_size))

    @property
    def chatters(self) -> int:
        """Sockets that chat: ``chatting`` of them, at least one unless it is 0."""
        if self.chatting <= 0:
            return 0
        return min(self.connections, max(1, round(self.connections * self.chatting)))

    @property
    def duration_s(self) -> float:
        """How long the sockets are held, in seconds."""
        return self.minutes * 60

    @property
    def messages_per_second(self) -> float:
        """Messages the chatters send per second, in all."""
        return self.chatters / self.interval_s

    @property
    def deliveries_per_second(self) -> float:
        """Deliveries per second if every room is full."""
        return self.messages_per_second * min(self.room_size, self.connections)

    def closing(self) -> str:
        """How the sockets are closed at the end."""
        return f"{self.close_rate:,.0f} a second" if self.close_rate else "all at once"

    def describe(self) -> str:
        """The load in one sentence."""
        minutes = f"{self.minutes:g} min"
        return (
            f"{self.connections:,} sockets in {self.rooms:,} rooms of up to "
            f"{self.room_size:,}; {self.chatters:,} of them ({self.chatting:.0%}) chat, "
            f"one message every {self.interval_s:g} s each (about "
            f"{rate(self.messages_per_second)} messages and "
            f"{rate(self.deliveries_per_second)} deliveries a second); held {minutes}, "
            f"sampled every {self.sample_s:g} s; warm-up {self.warmup_s:g} s, "
            f"tolerance ±{self.tolerance:.0%}; then closed {self.closing()}"
        )


def rate(value: float) -> str:
    """A rate for prose: whole numbers from 10 up, one decimal below."""
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"
