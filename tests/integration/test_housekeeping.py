"""Daily housekeeping on a real database: what prune deletes and keeps, the backups.

Delivery rows come from real polls of the sandbox feed server; a test then puts
each row into the state and age it needs.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from aggregator import backup, endpoints, housekeeping
from aggregator.db import unit_of_work
from aggregator.models import Filters, Member
from aggregator.runtime import Runtime, open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.settings import RetentionSettings, Settings
from aggregator.timefmt import to_db
from tests.support.builders import member, settings
from tests.support.clock import FixedClock
from tests.support.feeds import Item, note_feed, note_key
from tests.support.followers import add_subscriber

DAY = 86400
RETENTION = RetentionSettings(deliveries=90 * DAY, fetch_log=30 * DAY, backups=2)
START = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
STATES = ("pending", "sending", "retry", "sent", "failed", "cancelled")


@pytest.fixture
def config(tmp_path: Path, feed_server: FeedServer) -> Settings:
    members: tuple[Member, ...] = (member("city", feed_server.url("/city.xml")),)
    return dataclasses.replace(settings(tmp_path, members), retention=RETENTION)


@pytest.fixture
def rt(config: Settings, feed_server: FeedServer) -> Iterator[Runtime]:
    clock = FixedClock(START)
    feed_server.route("/city.xml", static_route(note_feed([])))
    with open_runtime(config, clock=clock, rng=random.Random(7)) as runtime:
        yield runtime


async def poll(rt: Runtime, feeds: FeedServer, *items: Item) -> None:
    feeds.route("/city.xml", static_route(note_feed(items)))
    async with rt.poller() as poller:
        await poller.run_cycle((), force=True)


async def deliveries(rt: Runtime, feeds: FeedServer, count: int) -> list[int]:
    """`count` pending deliveries of new articles to one subscriber; their ids."""
    await poll(rt, feeds)  # the baseline
    add_subscriber(rt.db, "a@example.jp", rt.clock.now(), key=rt.key)
    items = [
        Item(note_key(n), f"記事{n}", published=rt.clock.now()) for n in range(count)
    ]
    await poll(rt, feeds, *items)
    ids = [int(row[0]) for row in rt.db.execute("SELECT id FROM deliveries")]
    assert len(ids) == count
    return ids


def age(db: sqlite_utils.Database, delivery_id: int, state: str, at: datetime) -> None:
    """Put a delivery into `state`, due (and, if sent, sent) at `at`."""
    sent = to_db(at) if state == "sent" else None
    with unit_of_work(db):
        db.execute(
            "UPDATE deliveries SET state = ?, due_at = ?, sent_at = ? WHERE id = ?",
            [state, to_db(at), sent, delivery_id],
        )


def remaining(db: sqlite_utils.Database) -> list[int]:
    return [int(row[0]) for row in db.execute("SELECT id FROM deliveries ORDER BY id")]


def batch(db: sqlite_utils.Database, created: datetime, name: str) -> int:
    subscriber = db.execute("SELECT min(id) FROM subscribers").fetchone()[0]
    with unit_of_work(db):
        cursor = db.execute(
            """INSERT INTO batches
                   (subscriber_id, channel, kind, message_id, created_at)
               VALUES (?, 'email', 'immediate', ?, ?)""",
            [subscriber, f"<{name}@example.jp>", to_db(created)],
        )
    return int(cursor.lastrowid or 0)


def prune(rt: Runtime, now: datetime) -> housekeeping.Pruned:
    with unit_of_work(rt.db):
        return housekeeping.prune(rt.db, rt.settings, now)


async def test_only_finished_deliveries_past_retention_are_pruned(
    rt: Runtime, feed_server: FeedServer
) -> None:
    ids = await deliveries(rt, feed_server, 2 * len(STATES))
    now = START + timedelta(days=200)
    old, recent = now - timedelta(days=91), now - timedelta(days=89)
    kept: list[int] = []
    for n, state in enumerate(STATES):
        age(rt.db, ids[2 * n], state, old)
        age(rt.db, ids[2 * n + 1], state, recent)
        kept.append(ids[2 * n + 1])
        if state in ("pending", "sending", "retry"):
            kept.append(ids[2 * n])  # still to be sent, however old

    pruned = prune(rt, now)
    assert pruned.deliveries == 3  # the old sent, failed and cancelled ones
    assert remaining(rt.db) == sorted(kept)
    assert prune(rt, now).deliveries == 0


async def test_orphan_batches_go_and_batches_in_use_stay(
    rt: Runtime, feed_server: FeedServer
) -> None:
    pending, sent = await deliveries(rt, feed_server, 2)
    now = START + timedelta(days=200)
    old = now - timedelta(days=100)
    in_use = batch(rt.db, old, "in-use")
    of_pruned = batch(rt.db, old, "of-pruned")
    batch(rt.db, old, "orphan")
    young = batch(rt.db, now - timedelta(days=1), "young")
    with unit_of_work(rt.db):
        rt.db.execute(
            "UPDATE deliveries SET batch_id = ? WHERE id = ?", [in_use, pending]
        )
        rt.db.execute(
            "UPDATE deliveries SET batch_id = ? WHERE id = ?", [of_pruned, sent]
        )
    age(rt.db, pending, "retry", old)
    age(rt.db, sent, "sent", old)

    pruned = prune(rt, now)
    assert (pruned.deliveries, pruned.batches) == (1, 2)  # orphan + of_pruned
    left = [int(row[0]) for row in rt.db.execute("SELECT id FROM batches ORDER BY id")]
    assert left == [in_use, young]


async def test_poll_history_past_retention_is_pruned(
    rt: Runtime, feed_server: FeedServer
) -> None:
    await poll(rt, feed_server)
    await poll(rt, feed_server)
    assert isinstance(rt.clock, FixedClock)
    rt.clock.advance(40 * DAY)
    await poll(rt, feed_server)
    pruned = prune(rt, rt.clock.now())
    assert pruned.fetch_log == 2
    [(started,)] = rt.db.execute("SELECT started_at FROM fetch_log").fetchall()
    assert started == to_db(rt.clock.now())


def test_expired_webhook_secrets_are_pruned(rt: Runtime) -> None:
    now = rt.clock.now()
    hooks = dataclasses.replace(rt.settings.webhooks, allow_private_addresses=True)
    rt.settings = dataclasses.replace(rt.settings, webhooks=hooks)
    with unit_of_work(rt.db):
        added = endpoints.add(
            rt.db,
            endpoints.checked_url("http://127.0.0.1:9/hook", rt.settings),
            Filters(),
            rt.settings,
            rt.key,
            now,
            "cli:test",
        )
        hook = added.subscriber.id
        rotation = endpoints.rotate_secret(rt.db, hook, now, timedelta(days=1))
    assert endpoints.live_secrets(rt.db, hook, now) == (rotation.secret, added.secret)

    assert prune(rt, now + timedelta(hours=23)).secrets == 0
    later = now + timedelta(days=1)
    assert prune(rt, later).secrets == 1
    assert endpoints.live_secrets(rt.db, hook, later) == (rotation.secret,)
    count = rt.db.execute("SELECT count(*) FROM webhook_secrets").fetchone()[0]
    assert count == 1


def test_run_keeps_the_newest_backups(rt: Runtime) -> None:
    backups = backup.default_backup_dir(rt.settings)
    backups.mkdir(parents=True)
    mine = backups / "before-upgrade.db"  # not a rotated name: never touched
    mine.write_bytes(b"operator's own copy")
    reports = [
        housekeeping.run(rt.settings, START + timedelta(days=n)) for n in range(3)
    ]
    paths = [r.backup for r in reports]
    assert all(p is not None for p in paths)
    rotated = sorted(p for p in backups.iterdir() if p != mine)
    assert rotated == paths[1:]
    assert rotated[-1].name == "kairan-20260603T030000Z.db"
    assert backup.check(rotated[-1]) == []
    assert mine.read_bytes() == b"operator's own copy"


def test_run_without_backups_prunes_only(rt: Runtime) -> None:
    none_kept = dataclasses.replace(RETENTION, backups=0)
    report = housekeeping.run(
        dataclasses.replace(rt.settings, retention=none_kept), START
    )
    assert report.backup is None
    assert not backup.default_backup_dir(rt.settings).exists()
