"""Pure: a sliding-window rate limit per client key, handed `now` (monotonic seconds).

Each key keeps the times of its last `limit` accepted requests; a request is
accepted when fewer than `limit` of them fall inside the window. Memory is
bounded: at most `limit` times per key and `max_keys` keys, the least recently
seen key being forgotten first (a forgotten key starts afresh, which only ever
errs towards letting a request through).
"""

from __future__ import annotations

import math
from collections import deque


class RateLimiter:
    def __init__(self, limit: int, window: float, max_keys: int = 10_000) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be ≥ 1 and window > 0")
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def check(self, key: str, now: float) -> int:
        """Record a request from `key` and return 0, or refuse it and return the
        whole seconds to wait before one would be accepted (for Retry-After)."""
        hits = self._hits.pop(key, None) or deque(maxlen=self.limit)
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        self._hits[key] = hits  # re-inserted last: the dict stays in LRU order
        if len(hits) >= self.limit:
            return max(1, math.ceil(hits[0] + self.window - now))
        hits.append(now)
        self._evict()
        return 0

    def _evict(self) -> None:
        while len(self._hits) > self.max_keys:
            del self._hits[next(iter(self._hits))]
