"""Metrics: counters from poll and delivery reports, gauges from a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils
from prometheus_client.parser import text_string_to_metric_families

from aggregator.db import open_database, unit_of_work
from aggregator.deliver import DeliveryReport, SendResult
from aggregator.metrics import Metrics
from aggregator.poller import CycleReport, MemberReport
from aggregator.store import sync_members
from aggregator.timefmt import to_db
from tests.support.builders import member
from tests.support.clock import FixedClock
from tests.support.followers import add_subscriber

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    database = open_database(tmp_path / "kairan.sqlite3")
    try:
        yield database
    finally:
        database.close()


def scrape(metrics: Metrics) -> Samples:
    body, _ = metrics.render()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def cycle(
    started: datetime, *members: MemberReport, seconds: float = 3.0
) -> CycleReport:
    return CycleReport(started_at=started, duration=seconds, members=members)


def sent(channel: str, outcome: str) -> SendResult:
    return SendResult(
        batch_id=1,
        subscriber_id=1,
        address="taro@example.jp",
        channel=channel,
        kind="immediate",
        articles=1,
        outcome=outcome,
    )


def test_a_cycle_counts_polls_outcomes_articles_and_parse_time(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    metrics = Metrics(db, clock)
    metrics.observe_cycle(
        cycle(
            clock.now(),
            MemberReport("kobe", "ok", 0.5, new=2, edited=1, parse_seconds=0.02),
            MemberReport("osaka", "not_modified", 0.1),
            MemberReport(
                "kyoto", "error", 5.0, error="timed out", error_class="timeout"
            ),
            MemberReport("nara", "internal_error", 0.2, error_class="internal"),
        )
    )

    got = scrape(metrics)

    assert value(got, "kairan_polls_total") == 4
    outcomes = "kairan_fetch_outcomes_total"
    assert value(got, outcomes, outcome="ok", error_class="") == 1
    assert value(got, outcomes, outcome="not_modified", error_class="") == 1
    assert value(got, outcomes, outcome="unchanged", error_class="") == 0
    assert value(got, outcomes, outcome="error", error_class="timeout") == 1
    assert value(got, outcomes, outcome="internal_error", error_class="internal") == 1
    assert value(got, "kairan_articles_total", change="new") == 2
    assert value(got, "kairan_articles_total", change="edited") == 1
    # only the parsed body is timed
    assert value(got, "kairan_parse_seconds_count") == 1
    assert value(got, "kairan_parse_seconds_sum") == pytest.approx(0.02)
    assert value(got, "kairan_poll_cycle_seconds_count") == 1
    assert value(got, "kairan_poll_cycle_seconds_sum") == 3.0
    assert (
        value(got, "kairan_last_successful_poll_timestamp_seconds")
        == clock.now().timestamp()
    )


def test_a_cycle_of_failures_leaves_the_last_success_alone(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    metrics = Metrics(db, clock)
    first = clock.now()
    metrics.observe_cycle(cycle(first, MemberReport("kobe", "unchanged", 0.1)))
    later = first + timedelta(hours=1)

    metrics.observe_cycle(
        cycle(later, MemberReport("kobe", "error", 1.0, error_class="dns"))
    )
    metrics.observe_cycle(cycle(later + timedelta(hours=1)))  # nothing was due

    got = scrape(metrics)
    assert value(got, "kairan_last_successful_poll_timestamp_seconds") == (
        first.timestamp()
    )
    assert value(got, "kairan_polls_total") == 2
    assert value(got, "kairan_poll_cycle_seconds_count") == 3


def test_the_last_success_survives_a_restart_through_the_fetch_log(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    before = clock.now() - timedelta(hours=3)
    with unit_of_work(db):
        sync_members(db, (member("kobe", "http://127.0.0.1:9/kobe"),))
        for started, outcome in [
            (before - timedelta(hours=1), "ok"),
            (before, "not_modified"),
            (before + timedelta(hours=1), "error"),  # a failure is not a success
        ]:
            db.execute(
                """INSERT INTO fetch_log (member_id, started_at, outcome, url,
                   duration_ms) VALUES ('kobe', ?, ?, 'http://127.0.0.1:9/kobe', 5)""",
                [to_db(started), outcome],
            )

    got = scrape(Metrics(db, clock))

    assert value(got, "kairan_last_successful_poll_timestamp_seconds") == (
        before.timestamp()
    )


def test_a_fresh_database_reports_zeros_not_gaps(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    got = scrape(Metrics(db, clock))

    assert value(got, "kairan_database_up") == 1
    assert value(got, "kairan_last_successful_poll_timestamp_seconds") == 0
    for channel in ("email", "webhook"):
        for state in ("pending", "sending", "retry", "failed"):
            assert value(got, "kairan_outbox_depth", channel=channel, state=state) == 0
        for outcome in ("sent", "retry", "failed"):
            name = "kairan_deliveries_total"
            assert value(got, name, channel=channel, outcome=outcome) == 0
        oldest = "kairan_outbox_oldest_pending_age_seconds"
        assert value(got, oldest, channel=channel) == 0
        assert value(got, "kairan_outbox_overdue_seconds", channel=channel) == 0
    assert value(got, "kairan_subscribers", kind="webhook", state="active") == 0
    assert value(got, "kairan_members", state="gone") == 0


def test_deliveries_count_sends_retries_and_failures_but_not_dry_runs(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    metrics = Metrics(db, clock)
    metrics.observe_deliveries(
        DeliveryReport(
            (
                sent("email", "sent"),
                sent("email", "sent"),
                sent("email", "retry"),
                sent("webhook", "failed"),
                sent("webhook", "due"),
            )
        )
    )

    got = scrape(metrics)

    name = "kairan_deliveries_total"
    assert value(got, name, channel="email", outcome="sent") == 2
    assert value(got, name, channel="email", outcome="retry") == 1
    assert value(got, name, channel="email", outcome="failed") == 0
    assert value(got, name, channel="webhook", outcome="failed") == 1
    assert not [key for key in got if ("outcome", "due") in key[1]]


def add_delivery(
    db: sqlite_utils.Database,
    subscriber_id: int,
    channel: str,
    state: str,
    created: datetime,
    due: datetime,
) -> None:
    with unit_of_work(db):
        db.execute(
            """INSERT INTO deliveries (subscriber_id, entry_id, channel, state,
               due_at, created_at) VALUES (?, NULL, ?, ?, ?, ?)""",
            [subscriber_id, channel, state, to_db(due), to_db(created)],
        )


def test_outbox_depth_and_ages_are_read_at_scrape_time(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    now = clock.now()
    taro = add_subscriber(db, "taro@example.jp", now).id
    hours = [now - timedelta(hours=h) for h in range(8)]
    metrics = Metrics(db, clock)  # rows added later still show: read per scrape
    add_delivery(db, taro, "email", "pending", hours[2], hours[1])  # overdue 1 h
    add_delivery(db, taro, "email", "pending", hours[7], now + timedelta(days=6))
    add_delivery(db, taro, "email", "retry", hours[3], hours[0])
    add_delivery(db, taro, "email", "failed", hours[6], hours[6])  # given up
    add_delivery(db, taro, "email", "sent", hours[5], hours[5])
    add_delivery(db, taro, "webhook", "sending", hours[4], hours[4])
    add_delivery(db, taro, "webhook", "cancelled", hours[7], hours[7])

    got = scrape(metrics)

    def depth(channel: str, state: str) -> float:
        return value(got, "kairan_outbox_depth", channel=channel, state=state)

    assert [depth("email", s) for s in ("pending", "sending", "retry", "failed")] == [
        2, 0, 1, 1,
    ]  # fmt: skip
    assert [depth("webhook", s) for s in ("pending", "sending", "retry", "failed")] == [
        0, 1, 0, 0,
    ]  # fmt: skip
    oldest = "kairan_outbox_oldest_pending_age_seconds"
    assert value(got, oldest, channel="email") == 7 * 3600  # the weekly digest row
    assert value(got, oldest, channel="webhook") == 4 * 3600
    assert value(got, "kairan_outbox_overdue_seconds", channel="email") == 3600
    assert value(got, "kairan_outbox_overdue_seconds", channel="webhook") == 0

    clock.advance(600)
    assert value(scrape(metrics), oldest, channel="email") == 7 * 3600 + 600


def test_subscribers_and_members_are_counted_by_state_without_addresses(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    now = clock.now()
    add_subscriber(db, "taro@example.jp", now)
    add_subscriber(db, "jiro@example.jp", now)
    add_subscriber(db, "hanako@example.jp", now, confirmed=False)
    with unit_of_work(db):
        sync_members(
            db,
            (
                member("kobe", "http://127.0.0.1:9/kobe"),
                member("osaka", "http://127.0.0.1:9/osaka"),
            ),
        )
        db.execute("UPDATE members SET state = 'failing' WHERE id = 'osaka'")
    metrics = Metrics(db, clock)

    body, _ = metrics.render()
    got = scrape(metrics)

    assert value(got, "kairan_subscribers", kind="email", state="active") == 2
    assert value(got, "kairan_subscribers", kind="email", state="pending") == 1
    assert value(got, "kairan_subscribers", kind="email", state="bouncing") == 0
    assert value(got, "kairan_members", state="new") == 1
    assert value(got, "kairan_members", state="failing") == 1
    assert value(got, "kairan_members", state="ok") == 0
    for private in (b"@example.jp", b"127.0.0.1", b"kobe", b"osaka"):
        assert private not in body


def test_a_closed_database_reports_database_up_zero_instead_of_failing(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    metrics = Metrics(db, clock)
    metrics.observe_cycle(cycle(clock.now(), MemberReport("kobe", "ok", 0.1)))
    db.close()

    got = scrape(metrics)

    assert value(got, "kairan_database_up") == 0
    assert not [key for key in got if key[0] == "kairan_outbox_depth"]
    assert value(got, "kairan_polls_total") == 1  # the counters still answer


def test_each_metrics_object_has_its_own_registry(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    one, other = Metrics(db, clock), Metrics(db, clock)

    one.observe_cycle(cycle(clock.now(), MemberReport("kobe", "ok", 0.1)))

    assert value(scrape(one), "kairan_polls_total") == 1
    assert value(scrape(other), "kairan_polls_total") == 0
