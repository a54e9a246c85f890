"""The outbox: enqueued with the article, claimed with a lease, never lost.

Real polls against the sandbox feed server put articles into a real database;
these tests read the delivery rows back.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import outbox, outbox_view, subscribers
from aggregator.audience import AudienceCache
from aggregator.db import unit_of_work
from aggregator.models import (
    Article,
    Cadence,
    Filters,
    Member,
    Schedule,
    SubscriberState,
)
from aggregator.runtime import Runtime, open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from tests.support.builders import member, settings
from tests.support.clock import FixedClock
from tests.support.feeds import JST, Item, note_feed, note_key
from tests.support.followers import add_subscriber, states

OLD = Item(note_key(1), "議事録要約の試行")
NEW = Item(note_key(2), "庁内ガイドラインを改定しました")
OTHER = Item(note_key(3), "チャットボットの振り返り")
LEASE = timedelta(minutes=5)
HOUR = 3600


class World:
    """One runtime over a real database, members fed by the sandbox server."""

    def __init__(self, rt: Runtime, server: FeedServer, clock: FixedClock) -> None:
        self.rt = rt
        self.server = server
        self.clock = clock

    def serve(self, path: str, *items: Item) -> None:
        self.server.route(path, static_route(note_feed(items)))

    async def poll(self) -> None:
        async with self.rt.poller() as poller:
            await poller.run_cycle((), force=True)

    def claim(self, subscriber_ids: list[int] | None = None) -> list[outbox.Claim]:
        now = self.clock.now()
        due = subscriber_ids or outbox.due_subscribers(self.rt.db, now)
        with unit_of_work(self.rt.db):
            return outbox.claim(self.rt.db, due, now, LEASE, "example.jp")


def fresh(hours: float = 0) -> datetime:
    """A publication time just after the test clock's start (2026-12-01 03:00 UTC)."""
    return datetime(2026, 12, 1, 3, 0, tzinfo=UTC) + timedelta(hours=hours)


@pytest.fixture
def world(
    tmp_path: Path, feed_server: FeedServer, clock: FixedClock
) -> Iterator[World]:
    members: tuple[Member, ...] = (
        member("city", feed_server.url("/city.xml"), tags=("municipality",)),
        member("town", feed_server.url("/town.xml"), prefecture="神奈川県"),
    )
    feed_server.route("/town.xml", static_route(note_feed([])))
    with open_runtime(
        settings(tmp_path, members), clock=clock, rng=random.Random(3)
    ) as rt:
        yield World(rt, feed_server, clock)


async def test_baseline_is_never_enqueued_and_a_new_article_is(world: World) -> None:
    world.serve("/city.xml", OLD)
    add_subscriber(world.rt.db, "a@example.jp", world.clock.now())
    await world.poll()  # the first poll stores the backlog silently
    assert states(world.rt.db) == []

    world.clock.advance(HOUR)
    world.serve("/city.xml", Item(NEW.key, NEW.title, published=fresh(0.5)), OLD)
    await world.poll()
    [(address, entry_id, state)] = states(world.rt.db)
    assert (address, state) == ("a@example.jp", "pending")
    assert entry_id is not None


async def test_edits_pending_paused_and_older_articles_are_not_sent(
    world: World,
) -> None:
    world.serve("/city.xml", OLD)
    await world.poll()
    now = world.clock.now()
    add_subscriber(world.rt.db, "active@example.jp", now)
    add_subscriber(world.rt.db, "pending@example.jp", now, confirmed=False)
    paused = add_subscriber(world.rt.db, "paused@example.jp", now)
    with unit_of_work(world.rt.db):
        subscribers.pause(world.rt.db, paused.id, now)

    world.clock.advance(HOUR)
    # An edit of the baseline article, and a new one published before anyone
    # subscribed (first seen now: still older than their subscription).
    edited = Item(OLD.key, OLD.title + "（更新）", published=OLD.published)
    backdated = Item(OTHER.key, OTHER.title, published=fresh(-2))
    world.serve("/city.xml", edited, backdated)
    await world.poll()
    assert states(world.rt.db) == []

    world.clock.advance(HOUR)
    world.serve("/city.xml", Item(NEW.key, NEW.title, published=fresh(1.5)), edited)
    await world.poll()
    assert [(a, s) for a, _, s in states(world.rt.db)] == [
        ("active@example.jp", "pending")
    ]


async def test_filters_choose_who_is_told(world: World) -> None:
    world.serve("/city.xml")
    await world.poll()
    now = world.clock.now()
    db = world.rt.db
    add_subscriber(db, "all@example.jp", now)
    add_subscriber(db, "town@example.jp", now, filters=Filters(members=("town",)))
    add_subscriber(db, "muni@example.jp", now, filters=Filters(tags=("Municipality",)))
    add_subscriber(
        db, "kw@example.jp", now, filters=Filters(keywords=("ガイドライン",))
    )
    add_subscriber(db, "fw@example.jp", now, filters=Filters(keywords=("ＡＩ",)))
    add_subscriber(
        db, "both@example.jp", now, filters=Filters(members=("city",), keywords=("x",))
    )
    world.clock.advance(HOUR)
    world.serve(
        "/city.xml",
        Item(NEW.key, NEW.title, body="生成AIの指針", published=fresh(0.5)),
    )
    await world.poll()
    told = sorted(a for a, _, _ in states(db))
    assert told == [
        "all@example.jp",
        "fw@example.jp",
        "kw@example.jp",
        "muni@example.jp",
    ]


async def test_enqueueing_is_idempotent_per_article_subscriber_channel(
    world: World,
) -> None:
    world.serve("/city.xml")
    await world.poll()
    add_subscriber(world.rt.db, "a@example.jp", world.clock.now())
    world.clock.advance(HOUR)
    item = Item(NEW.key, NEW.title, published=fresh(0.5))
    world.serve("/city.xml", item)
    await world.poll()
    [(_, entry_id, _)] = states(world.rt.db)
    assert entry_id is not None
    entry = world.rt.db.execute(
        "SELECT title FROM entries WHERE id = ?", [entry_id]
    ).fetchone()
    article = outbox.NewArticle(
        entry_id,
        world.rt.settings.members[0],
        _article(item.title),
    )
    with unit_of_work(world.rt.db):
        again = outbox.enqueue_articles(world.rt.db, [article], world.clock.now())
    assert again == 0
    assert entry[0] == item.title
    assert len(states(world.rt.db)) == 1


def _article(title: str) -> Article:
    return Article(
        keys=(),
        content_hash="x",
        title=title,
        link=None,
        summary_html="",
        content_html=None,
        published=fresh(0.5),
        updated=None,
        author=None,
        author_avatar=None,
        thumbnail=None,
    )


async def test_a_digest_is_due_at_the_next_local_hour(world: World) -> None:
    world.serve("/city.xml")
    await world.poll()
    now = world.clock.now()  # 2026-12-01 03:00 UTC = 12:00 JST
    add_subscriber(world.rt.db, "d@example.jp", now, cadence=Cadence.DAILY, hour=8)
    add_subscriber(
        world.rt.db,
        "ny@example.jp",
        now,
        cadence=Cadence.WEEKLY,
        hour=7,
        weekday=4,
        timezone="America/New_York",
    )
    world.clock.advance(HOUR / 2)
    world.serve("/city.xml", Item(NEW.key, NEW.title, published=fresh(0.25)))
    await world.poll()
    due = {
        row.address: row.due_at.astimezone(JST)
        for row in outbox_view.list_deliveries(world.rt.db)
    }
    assert due["d@example.jp"] == datetime(2026, 12, 2, 8, 0, tzinfo=JST)
    # Friday 2026-12-04 07:00 in New York (EST, UTC-5) = 12:00 UTC.
    assert due["ny@example.jp"] == datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert world.claim() == []  # nothing is due yet

    world.clock.set(datetime(2026, 12, 1, 23, 0, tzinfo=UTC))  # 08:00 JST
    [claim] = world.claim()
    assert (claim.subscriber.address, claim.kind) == ("d@example.jp", "daily")


async def test_one_claim_holds_all_new_articles_of_a_subscriber(
    world: World,
) -> None:
    world.serve("/city.xml")
    await world.poll()
    add_subscriber(world.rt.db, "a@example.jp", world.clock.now())
    add_subscriber(world.rt.db, "b@example.jp", world.clock.now())
    world.clock.advance(HOUR)
    world.serve(
        "/city.xml",
        Item(NEW.key, NEW.title, published=fresh(0.5)),
        Item(OTHER.key, OTHER.title, published=fresh(0.6)),
    )
    world.server.route(
        "/town.xml",
        static_route(note_feed([Item(note_key(9), "町の記事", published=fresh(0.7))])),
    )
    await world.poll()
    claims = world.claim()
    assert sorted((c.subscriber.address, len(c.entry_ids)) for c in claims) == [
        ("a@example.jp", 3),
        ("b@example.jp", 3),
    ]
    assert len({c.message_id for c in claims}) == 2
    assert {s for _, _, s in states(world.rt.db)} == {"sending"}


async def test_an_expired_lease_gives_back_the_same_message(world: World) -> None:
    world.serve("/city.xml")
    await world.poll()
    add_subscriber(world.rt.db, "a@example.jp", world.clock.now())
    world.clock.advance(HOUR)
    world.serve("/city.xml", Item(NEW.key, NEW.title, published=fresh(0.5)))
    await world.poll()
    [first] = world.claim()
    # A crash: nobody records the outcome. Within the lease nothing is due…
    world.clock.advance(LEASE.total_seconds() - 1)
    assert world.claim() == []
    # …a new article arriving meanwhile waits for its own message…
    world.serve(
        "/city.xml",
        Item(OTHER.key, OTHER.title, published=fresh(1.2)),
        Item(NEW.key, NEW.title, published=fresh(0.5)),
    )
    await world.poll()
    # …and after the lease the same batch comes back, identical.
    world.clock.advance(2)
    claims = world.claim()
    again = next(c for c in claims if c.batch_id == first.batch_id)
    assert (again.message_id, again.created_at, again.entry_ids) == (
        first.message_id,
        first.created_at,
        first.entry_ids,
    )
    assert again.attempts == 2
    assert len(claims) == 2  # the new article is a second message


async def test_outcomes_sent_retry_failed_and_retry_now(world: World) -> None:
    world.serve("/city.xml")
    await world.poll()
    for n in range(3):
        add_subscriber(world.rt.db, f"s{n}@example.jp", world.clock.now())
    world.clock.advance(HOUR)
    world.serve("/city.xml", Item(NEW.key, NEW.title, published=fresh(0.5)))
    await world.poll()
    sent, later, dead = sorted(world.claim(), key=lambda c: c.subscriber.address)
    db, now = world.rt.db, world.clock.now()
    with unit_of_work(db):
        outbox.mark_all_sent(db, [sent], now)
        outbox.mark_retry(db, later, "451 try later", now + timedelta(minutes=5))
        outbox.mark_failed(db, dead, "550 no such user")
    assert [s for _, _, s in states(db)] == ["sent", "retry", "failed"]
    assert world.claim() == []
    world.clock.advance(LEASE.total_seconds())
    [retried] = world.claim()
    assert retried.batch_id == later.batch_id

    with unit_of_work(db):
        assert (
            outbox_view.retry_now(db, outbox_view.failed_ids(db), world.clock.now())
            == 1
        )
    [fresh_claim] = world.claim()
    assert fresh_claim.subscriber.id == dead.subscriber.id
    assert fresh_claim.batch_id != dead.batch_id  # a failed row starts a new message


async def test_unsubscribe_cancels_everything_unsent(world: World) -> None:
    world.serve("/city.xml")
    await world.poll()
    sub = add_subscriber(
        world.rt.db, "a@example.jp", world.clock.now(), cadence=Cadence.DAILY
    )
    world.clock.advance(HOUR)
    world.serve("/city.xml", Item(NEW.key, NEW.title, published=fresh(0.5)))
    await world.poll()
    with unit_of_work(world.rt.db):
        subscribers.unsubscribe(world.rt.db, sub.id, world.clock.now(), "test")
    assert [s for _, _, s in states(world.rt.db)] == ["cancelled"]
    assert subscribers.get(world.rt.db, sub.id).state is SubscriberState.UNSUBSCRIBED
    world.clock.advance(48 * HOUR)
    assert world.claim() == []


async def test_a_schedule_change_moves_queued_articles(world: World) -> None:
    world.serve("/city.xml")
    await world.poll()
    sub = add_subscriber(
        world.rt.db, "w@example.jp", world.clock.now(), cadence=Cadence.WEEKLY
    )
    world.clock.advance(HOUR)
    world.serve("/city.xml", Item(NEW.key, NEW.title, published=fresh(0.5)))
    await world.poll()
    assert world.claim() == []  # due next Monday
    with unit_of_work(world.rt.db):
        changed = subscribers.update(
            world.rt.db, sub.id, subscribers.Changes(schedule=Schedule())
        )
        assert outbox.reschedule_unsent(world.rt.db, changed, world.clock.now()) == 1
    [claim] = world.claim()
    assert claim.kind == "immediate"


def test_ids_and_tokens_are_never_reused_after_forget(world: World) -> None:
    db, now = world.rt.db, world.clock.now()
    first = add_subscriber(db, "old@example.jp", now)
    old_hash = db.execute(
        "SELECT unsubscribe_token_hash FROM subscribers WHERE id = ?", [first.id]
    ).fetchone()[0]
    with unit_of_work(db):
        subscribers.forget(db, first.id, now)
    second = add_subscriber(db, "new@example.jp", now)
    assert second.id != first.id
    assert old_hash not in {
        row[0] for row in db.execute("SELECT unsubscribe_token_hash FROM subscribers")
    }


def test_find_takes_an_address_as_the_operator_types_it(world: World) -> None:
    db = world.rt.db
    stored = add_subscriber(db, "taro@xn--r8jz45g.jp", world.clock.now())
    assert subscribers.find(db, " taro@例え.JP ").id == stored.id
    assert subscribers.find(db, str(stored.id)).id == stored.id


# --- the audience cache (aggregator/audience.py) ------------------------------------


def test_the_audience_is_read_again_only_when_subscribers_change(
    world: World,
) -> None:
    db, now = world.rt.db, world.clock.now()
    cache = AudienceCache()
    first = cache.get(db)
    assert len(first) == 0
    taro = add_subscriber(db, "taro@example.jp", now)
    hanako = add_subscriber(db, "hanako@example.jp", now, filters=Filters(tags=("x",)))
    second = cache.get(db)
    assert second is not first
    assert len(second) == 2 and len(second.groups) == 2  # noqa: PT018
    assert cache.get(db) is second  # nothing changed: not read again
    # A delivery's bookkeeping does not touch who is told …
    with unit_of_work(db):
        subscribers.record_bounce(db, taro.id, now, 5, "550 no such user")
        subscribers.mark_reachable(db, taro.id)
    assert cache.get(db) is second
    # … a pause does, and so does a filter change.
    with unit_of_work(db):
        subscribers.pause(db, hanako.id, now)
    assert [r.subscriber_id for g in cache.get(db).groups for r in g.recipients] == [
        taro.id
    ]
    with unit_of_work(db):
        subscribers.update(db, taro.id, subscribers.Changes(filters=Filters(("a",))))
    assert cache.get(db).groups[0].matcher is not second.groups[0].matcher


async def test_one_poller_tells_a_subscriber_added_between_two_feeds(
    world: World,
) -> None:
    """The poller keeps its audience across feeds; one added meanwhile is not
    missed (the version is read in the ingest transaction)."""
    world.serve("/city.xml", OLD)
    world.serve("/town.xml", OTHER)
    await world.poll()  # the baseline
    db = world.rt.db
    async with world.rt.poller() as poller:
        early = add_subscriber(db, "early@example.jp", fresh())
        world.clock.advance(HOUR)
        first = Item(note_key(5), "議会答弁の下書き支援", published=fresh(1))
        world.serve("/city.xml", first, OLD)
        await poller.run_cycle(("city",), force=True)
        late = add_subscriber(db, "late@example.jp", world.clock.now())
        world.clock.advance(HOUR)
        second = Item(note_key(4), "窓口のAI案内", published=fresh(2))
        world.serve("/town.xml", second, OTHER)
        await poller.run_cycle(("town",), force=True)
    told = {(d.subscriber_id, d.title) for d in outbox_view.list_deliveries(db)}
    assert told == {
        (early.id, first.title),
        (early.id, second.title),
        (late.id, second.title),
    }
