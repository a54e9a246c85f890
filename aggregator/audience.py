"""Who hears of a new article: active subscribers grouped by filter, kept until
subscribers change.

At national scale (100,000 subscribers, bench/scale.py) building every active
subscriber for each changed feed cost seconds per feed and hundreds of MB. So
the audience is read with only the columns enqueueing needs, subscribers with
the same filters share one compiled `Matcher` (matched once per article, not
once per subscriber), and a poller keeps it between feeds: migration 0005's
triggers bump `audience_version` whenever a subscriber is added, removed or
changes state, schedule, zone, filters or `notify_since`, and the cached
audience is read again only then. The version is read inside the ingest
transaction, which holds the write lock, so no change can slip in between.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import sqlite_utils

from aggregator.matching import Matcher
from aggregator.models import Cadence, Filters, Schedule
from aggregator.timefmt import from_db_required


@dataclass(frozen=True, slots=True)
class Recipient:
    subscriber_id: int
    channel: str  # "email" or "webhook"
    schedule: Schedule
    timezone: str
    notify_since: datetime  # nothing published before it is sent


@dataclass(frozen=True, slots=True)
class Group:
    """Active subscribers with the same filters."""

    matcher: Matcher
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True, slots=True)
class Audience:
    version: int
    groups: tuple[Group, ...]

    def __len__(self) -> int:
        return sum(len(g.recipients) for g in self.groups)


def version(db: sqlite_utils.Database) -> int:
    row = db.execute("SELECT version FROM audience_version WHERE id = 1").fetchone()
    return int(row[0])


def load(db: sqlite_utils.Database) -> Audience:
    """The active subscribers that can be told (their notify_since is set)."""
    current = version(db)
    cursor = db.execute(
        """SELECT id, kind, cadence, hour, weekday, timezone, notify_since,
                  filter_members, filter_tags, filter_keywords
           FROM subscribers
           WHERE state = 'active' AND notify_since IS NOT NULL
           ORDER BY id"""
    )
    grouped: dict[tuple[str, str, str], list[Recipient]] = {}
    schedules: dict[tuple[str, int, int], Schedule] = {}  # one object per schedule
    for row in cursor:
        sid, kind, cadence, hour, weekday, zone, since, members, tags, words = row
        schedule = schedules.get((cadence, hour, weekday))
        if schedule is None:
            schedule = Schedule(Cadence(cadence), hour, weekday)
            schedules[cadence, hour, weekday] = schedule
        recipient = Recipient(sid, kind, schedule, zone, from_db_required(since))
        grouped.setdefault((members, tags, words), []).append(recipient)
    return Audience(
        current,
        tuple(
            Group(_matcher(*filters), tuple(recipients))
            for filters, recipients in grouped.items()
        ),
    )


def _matcher(members: str, tags: str, keywords: str) -> Matcher:
    return Matcher.from_filters(
        Filters(
            members=tuple(json.loads(members)),
            tags=tuple(json.loads(tags)),
            keywords=tuple(json.loads(keywords)),
        )
    )


@dataclass
class AudienceCache:
    """One poller's audience, read again only when subscribers changed."""

    _audience: Audience | None = field(default=None, repr=False)

    def get(self, db: sqlite_utils.Database) -> Audience:
        cached = self._audience
        if cached is None or cached.version != version(db):
            cached = self._audience = load(db)
        return cached
