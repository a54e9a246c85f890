"""Pure: a member's next poll time from interval, jitter, failures and server hints."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from aggregator.models import CachingHints
from aggregator.settings import MIN_INTERVAL, PollSettings

# 2**32 five-minute intervals is far beyond any ceiling; capping the exponent keeps a
# member that has failed for years from costing a huge integer power.
_MAX_DOUBLINGS = 32


def next_poll(
    now: datetime,
    poll: PollSettings,
    rng: random.Random,
    failures: int,
    retry_after: datetime | None = None,
    caching: CachingHints | None = None,
    ttl_minutes: int | None = None,
) -> datetime:
    """When to poll a member next, given how its last poll went.

    ``failures`` is the number of consecutive failed polls (0 after a success).
    The wait is the interval, doubled per failure after the first (capped at
    ``poll.max_backoff`` so a failing member keeps being probed), spread by
    ``± poll.jitter`` so members do not poll in lockstep. Server hints
    (Retry-After, Cache-Control max-age, Expires, RSS ttl) can only lengthen it.
    The result never comes sooner than MIN_INTERVAL (SPEC) and never later than
    the ceiling: ``max_backoff``, or the interval itself when that is longer, since
    failing must never make a member polled more often than succeeding does.
    """
    if failures < 0:
        raise ValueError(f"failures must be >= 0, got {failures}")
    interval = max(poll.interval, MIN_INTERVAL)
    ceiling = max(poll.max_backoff, interval)
    doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
    scheduled = min(interval * 2**doublings, ceiling)
    jittered = _jittered(scheduled, poll.jitter, rng)
    wait = max([jittered, *_hinted_waits(now, retry_after, caching, ttl_minutes)])
    return now + timedelta(seconds=min(max(wait, MIN_INTERVAL), ceiling))


def _jittered(seconds: float, jitter: float, rng: random.Random) -> float:
    return seconds * (1 + rng.uniform(-jitter, jitter))


def _hinted_waits(
    now: datetime,
    retry_after: datetime | None,
    caching: CachingHints | None,
    ttl_minutes: int | None,
) -> list[float]:
    """Every wait the server asked for, in seconds from ``now``."""
    waits: list[float] = []
    if retry_after is not None:
        waits.append((retry_after - now).total_seconds())
    if caching is not None and caching.max_age is not None:
        waits.append(caching.max_age)
    if caching is not None and caching.expires is not None:
        waits.append((caching.expires - now).total_seconds())
    if ttl_minutes is not None:
        waits.append(ttl_minutes * 60)
    return waits


def next_retry(
    attempt: int,
    schedule: tuple[int, ...],
    now: datetime,
    rng: random.Random,
    retry_after: float | None = None,
    max_retry_after: float = 86400,
) -> datetime | None:
    """When to try a delivery again after its ``attempt``-th failure; None: give up.

    ``schedule[n - 1]`` is the wait after the n-th failure, spread by ±10% so that
    a recovered server is not hit by every retry in the same second. A server's
    Retry-After (seconds) can lengthen the wait, up to ``max_retry_after``.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if attempt > len(schedule):
        return None
    wait = _jittered(schedule[attempt - 1], 0.1, rng)
    if retry_after is not None:
        wait = max(wait, min(retry_after, max_retry_after))
    return now + timedelta(seconds=wait)
