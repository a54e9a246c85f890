"""ratelimit: the sliding window per client key, its Retry-After, its bounded memory."""

from __future__ import annotations

import pytest

from aggregator.ratelimit import RateLimiter
from aggregator.server import rate_key


def test_accepts_up_to_the_limit_then_refuses() -> None:
    limiter = RateLimiter(limit=3, window=60.0)

    answers = [limiter.check("a", t) for t in (0.0, 1.0, 2.0, 3.0, 4.0)]

    assert answers == [0, 0, 0, 57, 56]


def test_keys_are_counted_apart() -> None:
    limiter = RateLimiter(limit=1, window=60.0)

    assert limiter.check("a", 0.0) == 0
    assert limiter.check("b", 0.0) == 0
    assert limiter.check("a", 1.0) == 59
    assert limiter.check("b", 1.0) == 59


def test_retry_after_is_whole_seconds_until_the_oldest_hit_leaves() -> None:
    limiter = RateLimiter(limit=2, window=60.0)
    limiter.check("a", 0.0)
    limiter.check("a", 10.0)

    assert limiter.check("a", 20.3) == 40  # 39.7 s, rounded up: never too early
    assert limiter.check("a", 59.9) == 1  # a fraction of a second is still 1
    assert limiter.check("a", 60.0) == 0  # the hit at 0 has left the window


def test_the_window_slides_and_refusals_do_not_count() -> None:
    limiter = RateLimiter(limit=2, window=60.0)
    limiter.check("a", 0.0)
    limiter.check("a", 30.0)
    for t in (40.0, 50.0, 59.0):  # refused: none of these extends the wait
        assert limiter.check("a", t) > 0

    assert limiter.check("a", 60.0) == 0  # 0 left; 30 and 60 inside
    assert limiter.check("a", 61.0) == 29  # until 30 leaves, at 90
    assert limiter.check("a", 90.0) == 0
    assert limiter.check("a", 200.0) == 0  # long quiet: the whole window is free
    assert limiter.check("a", 200.0) == 0
    assert limiter.check("a", 200.0) == 60


def test_the_least_recently_seen_key_is_forgotten_first() -> None:
    limiter = RateLimiter(limit=1, window=60.0, max_keys=2)
    limiter.check("a", 0.0)
    limiter.check("b", 1.0)
    assert limiter.check("a", 2.0) > 0  # seen again, even refused: now the newest

    limiter.check("c", 3.0)  # a third key: "b" is forgotten, not "a"

    assert limiter.check("a", 4.0) > 0
    assert limiter.check("b", 5.0) == 0  # starts afresh
    assert limiter.check("c", 6.0) == 0  # "b"'s return pushed "c" out in turn


def test_memory_stays_bounded_by_max_keys() -> None:
    # a window longer than the test: a remembered key would be refused
    limiter = RateLimiter(limit=1, window=10_000.0, max_keys=100)

    for n in range(1000):
        limiter.check(f"client-{n}", float(n))

    assert limiter.check("client-999", 1000.0) > 0  # the newest are remembered
    assert limiter.check("client-900", 1000.0) > 0
    assert limiter.check("client-899", 1000.0) == 0  # the older were forgotten
    assert limiter.check("client-0", 1000.0) == 0


@pytest.mark.parametrize(
    ("limit", "window", "max_keys"),
    [(0, 60.0, 10), (1, 0.0, 10), (1, -1.0, 10), (1, 60.0, 0)],
)
def test_a_limiter_that_could_never_accept_is_refused(
    limit: int, window: float, max_keys: int
) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(limit, window, max_keys)


# The key a client address counts under (aggregator/server.py).


def test_one_ipv6_slash_64_is_one_client() -> None:
    one = rate_key("2001:db8:1:2:aaaa::1")

    assert one == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == one
    assert rate_key("2001:DB8:1:2::7") == one  # written differently, same client
    assert rate_key("2001:db8:1:3::1") != one  # the next /64 is someone else


def test_ipv4_addresses_count_one_by_one() -> None:
    assert rate_key("192.0.2.1") == "192.0.2.1"
    assert rate_key("192.0.2.2") != rate_key("192.0.2.1")


def test_a_client_that_is_not_an_address_is_its_own_key() -> None:
    assert rate_key("unknown") == "unknown"
