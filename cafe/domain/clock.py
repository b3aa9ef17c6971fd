"""Round clock math from persisted timestamps (epoch seconds). No loops, no I/O.

A round's clock is ``started_at``, ``duration`` (seconds, grows when time is added),
``paused_at`` (set while paused) and ``paused_total`` (seconds spent paused before now).
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class RoundClock:
    started_at: float
    duration: float
    paused_at: float | None = None
    paused_total: float = 0.0

    @property
    def paused(self) -> bool:
        return self.paused_at is not None

    def ends_at(self, now: float) -> float:
        """When the round ends if it is not paused again; while paused, as if resumed ``now``."""
        paused_for = self.paused_total + ((now - self.paused_at) if self.paused_at is not None else 0.0)
        return self.started_at + self.duration + paused_for

    def remaining(self, now: float) -> float:
        """Seconds left, never negative; frozen (exactly) while paused."""
        if self.paused_at is not None:
            return max(0.0, self.started_at + self.duration + self.paused_total - self.paused_at)
        return max(0.0, self.ends_at(now) - now)

    def time_up(self, now: float) -> bool:
        return self.remaining(now) <= 0.0

    def pause(self, now: float) -> RoundClock:
        if self.paused or self.time_up(now):
            return self
        return replace(self, paused_at=now)

    def resume(self, now: float) -> RoundClock:
        if self.paused_at is None:
            return self
        return replace(self, paused_at=None, paused_total=self.paused_total + max(0.0, now - self.paused_at))

    def extend(self, seconds: float, now: float) -> RoundClock:
        """Add time. If time was already up, the new time counts from ``now``."""
        if self.time_up(now) and not self.paused:
            overdue = now - self.ends_at(now)
            return replace(self, duration=self.duration + overdue + seconds)
        return replace(self, duration=self.duration + seconds)
