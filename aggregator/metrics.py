"""Prometheus metrics: counters fed by poll and delivery reports, gauges from SQLite.

Only aggregate numbers leave through /metrics: counts, durations and timestamps,
labelled by fixed vocabularies (outcome, error class, channel, state, kind).
Never a subscriber address, a feed or webhook URL, a token or a member's error
text, so the endpoint can be scraped by a monitoring system nobody vets.

Each `Metrics` has its own `CollectorRegistry` (never the process-wide default),
so tests and several apps in one process do not share counters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import sqlite_utils
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator import logs
from aggregator.clock import Clock
from aggregator.deliver import DeliveryReport
from aggregator.models import MemberState, SubscriberKind, SubscriberState
from aggregator.poller import CycleReport
from aggregator.timefmt import from_db_required, to_db

log = logs.get("metrics")

CHANNELS = ("email", "webhook")
OUTBOX_STATES = ("pending", "sending", "retry", "failed")
WAITING = frozenset({"pending", "sending", "retry"})  # not yet delivered nor given up
SUCCESSES = (
    "ok",
    "not_modified",
    "unchanged",
)  # MemberReport kinds that reached a feed
DELIVERY_OUTCOMES = ("sent", "retry", "failed")  # "due" is a dry run: nothing happened
# A scrape or probe must not wait the connection's 5 s busy timeout behind a lock.
QUICK_BUSY_MS = 250

PARSE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CYCLE_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)

# One GROUP BY per table, constant SQL; the only parameter is bound.
OUTBOX_SQL = """
SELECT channel, state, count(*), min(created_at),
       min(CASE WHEN state IN ('pending', 'retry') AND due_at <= :now
                THEN due_at END)
FROM deliveries
WHERE state IN ('pending', 'sending', 'retry', 'failed')
GROUP BY channel, state
"""
SUBSCRIBERS_SQL = "SELECT kind, state, count(*) FROM subscribers GROUP BY kind, state"
MEMBERS_SQL = "SELECT state, count(*) FROM members GROUP BY state"
LAST_SUCCESS_SQL = """
SELECT max(started_at) FROM fetch_log
WHERE outcome IN ('ok', 'not_modified', 'unchanged')
"""


@contextmanager
def quick_busy_timeout(
    db: sqlite_utils.Database, timeout_ms: int = QUICK_BUSY_MS
) -> Iterator[None]:
    """Within the block, a locked database fails after `timeout_ms` (OperationalError).

    The connection is shared with the daemon's jobs on the same event loop, which
    never hold a transaction across an ``await``, so nobody else uses it
    meanwhile; the previous timeout is restored on the way out.
    """
    previous = int(db.execute("PRAGMA busy_timeout").fetchone()[0])
    # PRAGMA takes no bound parameters; both values are integers.
    db.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
    try:
        yield
    finally:
        db.execute(f"PRAGMA busy_timeout = {previous}")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    channel: str
    state: str
    count: int
    oldest_created: str | None
    oldest_overdue: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape read from the database."""

    outbox: tuple[OutboxRow, ...]
    subscribers: dict[tuple[str, str], int]
    members: dict[str, int]


def read_snapshot(db: sqlite_utils.Database, now: datetime) -> Snapshot:
    outbox = tuple(
        OutboxRow(*row) for row in db.execute(OUTBOX_SQL, {"now": to_db(now)})
    )
    people = {(k, s): n for k, s, n in db.execute(SUBSCRIBERS_SQL)}
    members = dict(db.execute(MEMBERS_SQL).fetchall())
    return Snapshot(outbox, people, members)


def _age(now: datetime, stamp: str | None) -> float:
    if stamp is None:
        return 0.0
    return max(0.0, (now - from_db_required(stamp)).total_seconds())


def outbox_families(snapshot: Snapshot, now: datetime) -> list[Metric]:
    depth = GaugeMetricFamily(
        "kairan_outbox_depth",
        "Delivery rows waiting or failed, by channel and state.",
        labels=["channel", "state"],
    )
    oldest = GaugeMetricFamily(
        "kairan_outbox_oldest_pending_age_seconds",
        "Age of the oldest pending, sending or retry delivery row (0: none).",
        labels=["channel"],
    )
    overdue = GaugeMetricFamily(
        "kairan_outbox_overdue_seconds",
        "How long the most overdue pending or retry delivery has been due (0: none)."
        " Unlike the oldest age, digests waiting for their hour do not count.",
        labels=["channel"],
    )
    counts = {(r.channel, r.state): r.count for r in snapshot.outbox}
    for channel in CHANNELS:
        for state in OUTBOX_STATES:
            depth.add_metric([channel, state], counts.get((channel, state), 0))
        waiting = [
            r for r in snapshot.outbox if r.channel == channel and r.state in WAITING
        ]
        created = [r.oldest_created for r in waiting if r.oldest_created]
        due = [r.oldest_overdue for r in waiting if r.oldest_overdue]
        oldest.add_metric([channel], _age(now, min(created, default=None)))
        overdue.add_metric([channel], _age(now, min(due, default=None)))
    return [depth, oldest, overdue]


def population_families(snapshot: Snapshot) -> list[Metric]:
    people = GaugeMetricFamily(
        "kairan_subscribers",
        "Subscribers by kind and state.",
        labels=["kind", "state"],
    )
    for kind in SubscriberKind:
        for state in SubscriberState:
            people.add_metric(
                [kind.value, state.value],
                snapshot.subscribers.get((kind.value, state.value), 0),
            )
    # members keeps a row for a member removed from config.toml (its articles
    # refer to it), so these counts include such members in their last state.
    members = GaugeMetricFamily(
        "kairan_members", "Member feeds by state.", labels=["state"]
    )
    for member_state in MemberState:
        members.add_metric(
            [member_state.value], snapshot.members.get(member_state.value, 0)
        )
    return [people, members]


def database_up(value: int) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "kairan_database_up",
        "1 when the last scrape could read the database, else 0.",
        value=value,
    )


class DatabaseCollector(Collector):
    """Gauges read at scrape time, so they are right after a restart or a CLI edit."""

    def __init__(self, db: sqlite_utils.Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        now = self.clock.now()
        try:
            with quick_busy_timeout(self.db):
                snapshot = read_snapshot(self.db, now)
        except sqlite3.Error as e:
            # A scrape must answer: a locked or broken database is itself the news.
            log.warning("metrics.database_unreadable", extra=logs.fields(error=str(e)))
            return [database_up(0)]
        return [
            *outbox_families(snapshot, now),
            *population_families(snapshot),
            database_up(1),
        ]


class Metrics:
    """The daemon's metrics; observe_* are called after each poll cycle and pass."""

    def __init__(self, db: sqlite_utils.Database, clock: Clock) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "kairan_polls", "Feed polls (one per member per cycle).", registry=r
        )
        self.fetch_outcomes = Counter(
            "kairan_fetch_outcomes",
            "Feed polls by outcome and error class ('' when not an error).",
            ["outcome", "error_class"],
            registry=r,
        )
        self.articles = Counter(
            "kairan_articles",
            "Articles stored as new or edited.",
            ["change"],
            registry=r,
        )
        self.parse_seconds = Histogram(
            "kairan_parse_seconds",
            "Time to parse one feed body.",
            buckets=PARSE_BUCKETS,
            registry=r,
        )
        self.cycle_seconds = Histogram(
            "kairan_poll_cycle_seconds",
            "Time of one poll cycle, all due members.",
            buckets=CYCLE_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "kairan_last_successful_poll_timestamp_seconds",
            "Start of the last poll cycle in which a feed answered (0: never).",
            registry=r,
        )
        self.deliveries = Counter(
            "kairan_deliveries",
            "Delivery attempts by channel and outcome.",
            ["channel", "outcome"],
            registry=r,
        )
        self._zero_series()
        r.register(DatabaseCollector(db, clock))
        # Seeded from fetch_log, so a restart does not look like polling stopped.
        seeded = db.execute(LAST_SUCCESS_SQL).fetchone()[0]
        self._last_success_at = 0.0
        if seeded is not None:
            self._succeeded_at(from_db_required(seeded))

    def _zero_series(self) -> None:
        """Series that exist from the start, so rate() and alerts see a 0, not a gap."""
        for kind in SUCCESSES:
            self.fetch_outcomes.labels(kind, "")
        for change in ("new", "edited"):
            self.articles.labels(change)
        for channel in CHANNELS:
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(channel, outcome)

    def observe_cycle(self, cycle: CycleReport) -> None:
        self.cycle_seconds.observe(cycle.duration)
        for member in cycle.members:
            self.polls.inc()
            self.fetch_outcomes.labels(member.kind, member.error_class or "").inc()
            self.articles.labels("new").inc(member.new)
            self.articles.labels("edited").inc(member.edited)
            if member.parse_seconds is not None:
                self.parse_seconds.observe(member.parse_seconds)
        if any(m.kind in SUCCESSES for m in cycle.members):
            self._succeeded_at(cycle.started_at)

    def _succeeded_at(self, when: datetime) -> None:
        # never backwards: a manual `kairan poll` logged later may have started later
        self._last_success_at = max(self._last_success_at, when.timestamp())
        self.last_success.set(self._last_success_at)

    def observe_deliveries(self, report: DeliveryReport) -> None:
        for result in report.results:
            if result.outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(result.channel, result.outcome).inc()

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
