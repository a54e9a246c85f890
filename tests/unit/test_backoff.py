"""backoff.next_poll: jitter, doubling, caps, and hints that only lengthen the wait."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.backoff import next_poll
from aggregator.models import CachingHints
from aggregator.settings import MIN_INTERVAL, PollSettings

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
HOUR = 3600
EXACT = PollSettings(interval=1800, jitter=0.0, max_backoff=24 * HOUR)


def wait(
    poll: PollSettings = EXACT,
    failures: int = 0,
    rng: random.Random | None = None,
    retry_after: datetime | None = None,
    caching: CachingHints | None = None,
    ttl_minutes: int | None = None,
) -> float:
    """The chosen wait in seconds."""
    chosen = next_poll(
        NOW, poll, rng or random.Random(0), failures, retry_after, caching, ttl_minutes
    )
    return (chosen - NOW).total_seconds()


def test_success_waits_the_interval():
    assert wait() == 1800


def test_result_is_timezone_aware_utc():
    assert next_poll(NOW, EXACT, random.Random(0), 0).tzinfo is UTC


def test_jitter_stays_within_its_fraction_and_uses_it():
    poll = PollSettings(interval=1800, jitter=0.1)
    waits = [wait(poll, rng=random.Random(seed)) for seed in range(500)]
    assert all(1620 <= w <= 1980 for w in waits)
    assert min(waits) < 1650  # both ends are reached, not just a sliver
    assert max(waits) > 1950


def test_jitter_is_driven_by_the_injected_rng():
    poll = PollSettings(interval=1800, jitter=0.2)
    assert wait(poll, rng=random.Random(7)) == wait(poll, rng=random.Random(7))
    assert wait(poll, rng=random.Random(7)) != wait(poll, rng=random.Random(8))


def test_never_below_the_minimum_interval():
    poll = PollSettings(interval=60, jitter=0.5)
    assert all(
        wait(poll, rng=random.Random(seed)) >= MIN_INTERVAL for seed in range(100)
    )


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(1, 1800), (2, 3600), (3, 7200), (4, 14400), (6, 57600), (7, 24 * HOUR)],
)
def test_failures_double_the_wait_up_to_the_cap(failures, expected):
    assert wait(failures=failures) == expected


def test_a_member_failing_for_ever_is_still_probed_daily():
    assert wait(failures=10**9) == 24 * HOUR


def test_jitter_at_the_cap_spreads_below_it_never_above():
    poll = PollSettings(interval=1800, jitter=0.1, max_backoff=24 * HOUR)
    waits = [wait(poll, failures=20, rng=random.Random(s)) for s in range(200)]
    assert all(0.9 * 24 * HOUR <= w <= 24 * HOUR for w in waits)
    assert len(set(waits)) > 100


def test_failing_never_polls_more_often_than_succeeding():
    poll = PollSettings(interval=48 * HOUR, jitter=0.0, max_backoff=24 * HOUR)
    assert wait(poll, failures=3) == 48 * HOUR


def test_negative_failures_are_refused():
    with pytest.raises(ValueError, match="failures"):
        wait(failures=-1)


@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        ({"caching": CachingHints(max_age=2 * HOUR)}, 2 * HOUR),
        ({"caching": CachingHints(max_age=60)}, 1800),  # shorter: ignored
        ({"caching": CachingHints(max_age=0)}, 1800),
        ({"caching": CachingHints(expires=NOW + timedelta(hours=3))}, 3 * HOUR),
        ({"caching": CachingHints(expires=NOW - timedelta(hours=3))}, 1800),
        ({"ttl_minutes": 120}, 2 * HOUR),
        ({"ttl_minutes": 5}, 1800),
        ({"caching": CachingHints(max_age=10 * 24 * HOUR)}, 24 * HOUR),  # clamped
        ({"ttl_minutes": 7 * 24 * 60}, 24 * HOUR),
        ({"caching": CachingHints(max_age=HOUR), "ttl_minutes": 90}, 90 * 60),
        ({"caching": CachingHints()}, 1800),
    ],
)
def test_server_hints_only_lengthen_and_are_clamped(hints, expected):
    assert wait(**hints) == expected


@pytest.mark.parametrize(
    ("failures", "retry_after", "expected"),
    [
        (1, NOW + timedelta(hours=5), 5 * HOUR),  # longer than the backoff: honoured
        (3, NOW + timedelta(minutes=10), 7200),  # shorter: the backoff stands
        (1, NOW + timedelta(seconds=10), 1800),
        (1, NOW - timedelta(hours=1), 1800),  # already past
        (1, NOW + timedelta(days=30), 24 * HOUR),  # clamped to the cap
        (0, NOW + timedelta(hours=2), 2 * HOUR),
    ],
)
def test_retry_after_lengthens_within_the_clamps(failures, retry_after, expected):
    assert wait(failures=failures, retry_after=retry_after) == expected


def test_retry_after_never_comes_before_the_minimum_interval():
    poll = PollSettings(interval=60, jitter=0.0)
    soon = NOW + timedelta(seconds=30)
    assert wait(poll, failures=1, retry_after=soon) == MIN_INTERVAL
