"""A sliding-window rate limiter: pure, with the clock passed in."""
from __future__ import annotations

from collections import deque


class SlidingWindowLimiter:
    """At most ``limit`` hits per ``window`` seconds for each key."""

    def __init__(self, limit: int, window: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[object, deque[float]] = {}

    def _trim(self, key: object, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.max_keys:
                self._forget_stale(now)
            hits = self._hits[key] = deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        return hits

    def _forget_stale(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]:
            del self._hits[key]

    def allowed(self, key: object, now: float) -> bool:
        """Would one more hit be allowed? (Does not count one.)"""
        return len(self._trim(key, now)) < self.limit

    def hit(self, key: object, now: float) -> bool:
        """Count a hit; False if it is over the limit (and then it is not counted)."""
        hits = self._trim(key, now)
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True

    def retry_after(self, key: object, now: float) -> float:
        hits = self._trim(key, now)
        if len(hits) < self.limit:
            return 0.0
        return max(0.0, hits[0] + self.window - now)
