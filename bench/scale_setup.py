"""The scale benchmark's population: members, subscribers, months of outbox history.

Not measured (only timed as setup). Subscribers go in through the real
`subscribers.add` and `endpoints.add`; paused and unsubscribed ones through
`subscribers.pause` and `subscribers.unsubscribe` (which cancels their unsent
rows). History rows are enqueued by the real `outbox.enqueue_articles` over
stored articles, then marked sent, as `claim` + `mark_sent` leave them, by
parameterised bulk SQL (one batch per subscriber and channel per day).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import sqlite_utils
import tomlkit

from aggregator import endpoints, outbox, store, subscribers
from aggregator.db import unit_of_work
from aggregator.models import (
    Article,
    Cadence,
    ConsentSource,
    Filters,
    Member,
    Schedule,
    StoredEntry,
    SubscriberKind,
)
from aggregator.runtime import Runtime
from aggregator.timefmt import to_db
from bench.feeds import _SUBJECTS as SUBJECTS
from bench.poll import member_id
from bench.publish import TAGS

PREFECTURES = (
    "北海道",
    "青森県",
    "岩手県",
    "宮城県",
    "秋田県",
    "山形県",
    "福島県",
    "茨城県",
    "栃木県",
    "群馬県",
    "埼玉県",
    "千葉県",
    "東京都",
    "神奈川県",
    "新潟県",
    "富山県",
    "石川県",
    "福井県",
    "山梨県",
    "長野県",
    "岐阜県",
    "静岡県",
    "愛知県",
    "三重県",
    "滋賀県",
    "京都府",
    "大阪府",
    "兵庫県",
    "奈良県",
    "和歌山県",
    "鳥取県",
    "島根県",
    "岡山県",
    "広島県",
    "山口県",
    "徳島県",
    "香川県",
    "愛媛県",
    "高知県",
    "福岡県",
    "佐賀県",
    "長崎県",
    "熊本県",
    "大分県",
    "宮崎県",
    "鹿児島県",
    "沖縄県",
)
Weights = tuple[tuple[str, int], ...]
ZONES: Weights = (("Asia/Tokyo", 85), ("UTC", 5), ("America/Los_Angeles", 5))
ZONES += (("Europe/Berlin", 5),)
CADENCES = ((Cadence.IMMEDIATE, 35), (Cadence.DAILY, 50), (Cadence.WEEKLY, 15))
# What an active subscriber follows: most follow their prefecture or a few members.
FILTERS: Weights = (("none", 2), ("prefecture", 48), ("topic", 5), ("members", 40))
FILTERS += (("keyword", 5),)
T = TypeVar("T")
# Shares of every subscriber, in per mille: the rest are active e-mail subscribers.
WEBHOOK_PM = 5
PENDING_PM = 100  # never confirmed the double opt-in
PAUSED_PM = 50
UNSUBSCRIBED_PM = 45
FAILED_PM = 20  # history rows that failed (the rest of the history was sent)
TRANSACTION = 10_000  # subscribers added per transaction
ARTICLES_PER_DAY = 30  # history: articles enqueued per simulated day
MAX_DAYS = 300  # bound on the history loop (the cycle is a year after the start)


def config_toml(directory: Path, members: Sequence[tuple[str, str]]) -> str:
    """Members with a prefecture (of 47) and a topic tag; mail and webhooks set."""
    return tomlkit.dumps(
        {
            "site": {
                "title": "回覧ベンチ",
                "base_url": "https://kairan.example.jp/",
                "contact": "office@example.jp",
                "timezone": "Asia/Tokyo",
            },
            # every feed is on 127.0.0.1: the per-host limit must not set the pace
            "poll": {"concurrency": 50, "per_host": 50, "timeout": 120},
            # never connected: the bench plans deliveries but sends none
            "email": {"host": "127.0.0.1", "port": 2525, "from": "kairan@example.jp"},
            "storage": {"data_dir": str(directory / "data")},
            "members": [
                {
                    "id": ident,
                    "name": f"ベンチ市{i:04d}",
                    "feed": feed,
                    "prefecture": PREFECTURES[i % len(PREFECTURES)],
                    "tags": [TAGS[i % len(TAGS)]],
                }
                for i, (ident, feed) in enumerate(members)
            ],
        }
    )


def _pick(rng: random.Random, weighted: Sequence[tuple[T, int]]) -> T:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def filters_for(rng: random.Random, members: int) -> Filters:
    kind = _pick(rng, FILTERS)
    if kind == "prefecture":
        return Filters(tags=(rng.choice(PREFECTURES),))
    if kind == "topic":
        return Filters(tags=(rng.choice(TAGS),))
    if kind == "members":
        chosen = rng.sample(range(members), rng.randint(1, 3))
        return Filters(members=tuple(member_id(i) for i in chosen))
    if kind == "keyword":
        return Filters(keywords=(rng.choice(SUBJECTS),))
    return Filters()


def new_email(
    rng: random.Random, index: int, members: int
) -> subscribers.NewSubscriber:
    zone = _pick(rng, ZONES)
    cadence = _pick(rng, CADENCES)
    return subscribers.NewSubscriber(
        kind=SubscriberKind.EMAIL,
        address=f"reader{index:06d}@example.jp",
        schedule=Schedule(cadence, rng.randint(6, 9), rng.randrange(7)),
        filters=filters_for(rng, members),
        timezone=zone,
        language="ja" if zone == "Asia/Tokyo" else "en",
        confirmed=rng.randrange(1000) >= PENDING_PM,
        consent_source=ConsentSource.IMPORT,
        consent_origin="bench",
    )


def add_subscribers(rt: Runtime, count: int, members: int) -> None:
    """``count`` subscribers: 0.5% webhooks, the others e-mail (10% pending)."""
    rng = random.Random(2026)
    now = rt.clock.now()
    for start in range(0, count, TRANSACTION):
        with unit_of_work(rt.db):
            for index in range(start, min(count, start + TRANSACTION)):
                if rng.randrange(1000) < WEBHOOK_PM:
                    url = f"https://hooks.example.jp/kairan/{index:06d}"
                    origin = "bench"
                    filters = filters_for(rng, members)
                    endpoints.add(rt.db, url, filters, rt.settings, rt.key, now, origin)
                else:
                    subscribers.add(rt.db, new_email(rng, index, members), rt.key, now)


def pause_and_unsubscribe(rt: Runtime) -> tuple[int, int]:
    """Some active e-mail subscribers pause, some leave (unsent rows cancelled)."""
    now = rt.clock.now()
    rows = rt.db.execute(
        "SELECT id FROM subscribers WHERE state = 'active' AND kind = 'email'"
    ).fetchall()
    rng = random.Random(47)
    paused = left = 0
    with unit_of_work(rt.db):
        for (ident,) in rows:
            draw = rng.randrange(1000)
            if draw < PAUSED_PM:
                subscribers.pause(rt.db, ident, now)
                paused += 1
            elif draw < PAUSED_PM + UNSUBSCRIBED_PM:
                subscribers.unsubscribe(rt.db, ident, now, "bench: left")
                left += 1
    return paused, left


# --- the outbox's history ---------------------------------------------------------


def as_article(entry: StoredEntry, published: datetime | None) -> Article:
    """A stored entry as enqueue_articles takes it (``published``: its date)."""
    return Article(
        keys=entry.keys,
        content_hash=entry.content_hash,
        title=entry.title,
        link=entry.link,
        summary_html=entry.summary_html,
        content_html=entry.content_html,
        published=published,
        updated=entry.updated,
        author=entry.author,
        author_avatar=entry.author_avatar,
        thumbnail=entry.thumbnail,
        tags=entry.tags,
    )


def new_articles(
    db: sqlite_utils.Database,
    members: dict[str, Member],
    entry_ids: Sequence[int],
    *,
    keep_dates: bool,
) -> list[outbox.NewArticle]:
    """Stored entries as new articles; without their dates, they are "published now"."""
    found = store.get_entries(db, entry_ids)
    return [
        outbox.NewArticle(
            i,
            members[found[i].member_id],
            as_article(found[i], found[i].published if keep_dates else None),
        )
        for i in entry_ids
    ]


# claim + mark_sent: one message (batch) per subscriber and channel, then `sent`.
_BATCHES_SQL = """
INSERT INTO batches (subscriber_id, channel, kind, message_id, created_at)
SELECT d.subscriber_id, d.channel,
       CASE d.channel WHEN 'webhook' THEN 'webhook' ELSE s.cadence END,
       '<' || lower(hex(randomblob(12))) || '@kairan.example.jp>', :claimed
FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
WHERE d.id > :after AND d.state = 'pending'
GROUP BY d.subscriber_id, d.channel
"""
_SENT_SQL = """
UPDATE deliveries SET state = 'sent', attempts = 1, sent_at = :sent,
    batch_id = (SELECT b.id FROM batches b
                WHERE b.subscriber_id = deliveries.subscriber_id
                  AND b.channel = deliveries.channel AND b.created_at = :claimed)
WHERE id > :after AND state = 'pending'
"""
_FAILED_SQL = """
UPDATE deliveries SET state = 'failed', sent_at = NULL,
    last_error = '550 5.1.1 mailbox unavailable (bench)'
WHERE id > :after AND state = 'sent' AND subscriber_id % 1000 < :share
"""


def mark_history(db: sqlite_utils.Database, after: int, created: datetime) -> None:
    """The rows after id ``after``, enqueued at ``created``, as a pass left them."""
    claimed = created + timedelta(minutes=1)
    params = {
        "after": after,
        "claimed": to_db(claimed),
        "sent": to_db(claimed + timedelta(seconds=5)),
        "share": FAILED_PM,
    }
    db.execute(_BATCHES_SQL, params)
    db.execute(_SENT_SQL, params)
    db.execute(_FAILED_SQL, params)


@dataclass
class History:
    """Days of past articles, each enqueued and then delivered."""

    rt: Runtime
    start: datetime  # the first day's time
    pool: list[int]  # stored entry ids to announce, in order
    day: int = 0
    articles: int = 0
    rows: int = 0

    def grow(self, target: int) -> None:
        """Add days until the outbox holds ``target`` rows (bounded by MAX_DAYS)."""
        db = self.rt.db
        members = {m.id: m for m in self.rt.settings.members}
        total = count_rows(db)
        while total < target and self.day < MAX_DAYS and self.pool:
            ids, self.pool = (
                self.pool[:ARTICLES_PER_DAY],
                self.pool[ARTICLES_PER_DAY:],
            )
            when = self.start + timedelta(days=self.day)
            with unit_of_work(db):
                after = last_id(db)
                items = new_articles(db, members, ids, keep_dates=False)
                added = outbox.enqueue_articles(db, items, when)
                mark_history(db, after, when)
            self.day += 1
            self.articles += len(ids)
            self.rows += added
            total += added

    @property
    def per_article(self) -> float:
        return self.rows / max(1, self.articles)


def last_id(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT coalesce(max(id), 0) FROM deliveries").fetchone()[0])


def count_rows(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])


class _RolledBack(Exception):
    """Raised to leave a unit_of_work by its rollback path."""


@contextmanager
def rolled_back(db: sqlite_utils.Database) -> Iterator[None]:
    """A write transaction that is always rolled back (to time a write on its own)."""
    try:
        with unit_of_work(db):
            yield
            raise _RolledBack
    except _RolledBack:
        pass
