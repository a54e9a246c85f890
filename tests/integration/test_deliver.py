"""poll → outbox → delivery pass → a real SMTP server: what followers receive.

The sandbox feed server supplies articles, aiosmtpd (the sandbox SMTP sink)
receives the mail, and the assertions read the parsed messages.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlite_utils

from aggregator import optin, outbox, outbox_view, subscribers
from aggregator.cli.poll import status_doc
from aggregator.db import unit_of_work
from aggregator.deliver import DeliveryReport
from aggregator.models import Cadence, Filters, Member, Subscriber, SubscriberState
from aggregator.runtime import Runtime, open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.settings import Settings
from tests.support.builders import member, settings
from tests.support.clock import FixedClock
from tests.support.feeds import Item, note_feed, note_key
from tests.support.followers import add_subscriber, states, with_email

HOUR = 3600.0
START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)  # the `clock` fixture's start


def published(hours: float) -> datetime:
    return START + timedelta(hours=hours)


def item(n: int, title: str, hours: float = 0.5, **kw: object) -> Item:
    return Item(note_key(n), title, published=published(hours), **kw)  # type: ignore[arg-type]


class World:
    """A runtime whose members are served by the feed server and mail goes to a sink."""

    def __init__(
        self, rt: Runtime, feeds: FeedServer, sink: SmtpSink, clock: FixedClock
    ) -> None:
        self.rt = rt
        self.feeds = feeds
        self.sink = sink
        self.clock = clock

    @property
    def db(self) -> sqlite_utils.Database:
        return self.rt.db

    def serve(self, *items: Item) -> None:
        self.feeds.route("/city.xml", static_route(note_feed(items)))

    async def poll(self) -> None:
        async with self.rt.poller() as poller:
            await poller.run_cycle((), force=True)

    async def deliver(self) -> DeliveryReport:
        async with self.rt.delivery_pass() as delivery:
            return await delivery.run()

    def add(self, address: str, **kw: object) -> Subscriber:
        """A subscriber whose tokens come from this runtime's site key."""
        return add_subscriber(self.db, address, self.clock.now(), key=self.rt.key, **kw)  # type: ignore[arg-type]

    def mail(self) -> list[EmailMessage]:
        return [r.message for r in self.sink.messages]


def world_settings(tmp_path: Path, feeds: FeedServer, port: int) -> Settings:
    members: tuple[Member, ...] = (
        member("city", feeds.url("/city.xml"), prefecture="東京都"),
    )
    return with_email(settings(tmp_path, members), port, bounce_limit=2)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def world(
    tmp_path: Path, feed_server: FeedServer, sink: SmtpSink, clock: FixedClock
) -> Iterator[World]:
    config = world_settings(tmp_path, feed_server, sink.port)
    with open_runtime(config, clock=clock, rng=random.Random(5)) as rt:
        w = World(rt, feed_server, sink, clock)
        w.serve()
        yield w


async def started(world: World, *addresses: str, **kw: object) -> None:
    """Baseline done, subscribers added, the clock moved on an hour."""
    await world.poll()
    for address in addresses:
        world.add(address, **kw)
    world.clock.advance(HOUR)


def text_part(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_part(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


async def test_immediate_one_mail_per_cycle_with_all_new_articles(
    world: World,
) -> None:
    await started(world, "a@example.jp")
    world.serve(item(2, "議事録要約の試行"), item(3, "ガイドライン改定"))
    await world.poll()
    report = await world.deliver()
    assert report.count("sent") == 1
    [mail] = world.mail()
    body = text_part(mail)
    assert "議事録要約の試行" in body
    assert "ガイドライン改定" in body
    assert f"https://note.com/city/n/{note_key(2)}" in body
    assert mail["To"] == "a@example.jp"
    assert (await world.deliver()).results == ()  # nothing twice
    assert len(world.sink.messages) == 1


async def test_rfc8058_headers_and_a_working_unsubscribe_token(world: World) -> None:
    await started(world, "a@example.jp")
    world.serve(item(2, "議事録要約の試行"))
    await world.poll()
    await world.deliver()
    [mail] = world.mail()
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = re.search(r"<(http[^>]+/unsubscribe/([^>]+))>", mail["List-Unsubscribe"])
    assert match is not None
    assert match[1] in text_part(mail)  # the text part alone can unsubscribe
    found = subscribers.by_unsubscribe_token(world.db, match[2])
    assert found is not None
    assert found.address == "a@example.jp"
    assert "mailto:" in mail["List-Unsubscribe"]
    assert mail["Message-ID"].endswith("@localhost>")


async def test_daily_digest_at_the_local_hour_and_empty_digest_not_sent(
    world: World,
) -> None:
    await started(world, "d@example.jp", cadence=Cadence.DAILY, hour=8)
    world.add(
        "empty@example.jp",
        cadence=Cadence.DAILY,
        hour=8,
        filters=Filters(members=("nobody",)),
    )
    world.serve(item(2, "一件目", hours=1.2))
    await world.poll()
    world.clock.advance(HOUR)
    world.serve(item(3, "二件目", hours=2.2), item(2, "一件目", hours=1.2))
    await world.poll()
    assert (await world.deliver()).results == ()  # 13:00 JST: not yet
    world.clock.set(datetime(2026, 12, 1, 23, 0, 5, tzinfo=UTC))  # 08:00 JST
    report = await world.deliver()
    assert report.count("sent") == 1
    [digest] = world.mail()
    assert digest["To"] == "d@example.jp"
    assert "一件目" in text_part(digest)
    assert "二件目" in text_part(digest)


async def test_smtp_down_then_up_loses_nothing(world: World) -> None:
    await started(world, "a@example.jp")
    world.serve(item(2, "議事録要約の試行"))
    await world.poll()
    world.sink.stop()
    report = await world.deliver()
    [result] = report.results
    assert result.outcome == "retry"
    assert result.error is not None
    assert "127.0.0.1" in result.error
    assert [s for _, _, s in states(world.db)] == ["retry"]
    doc = status_doc(world.rt)  # what `kairan status` shows the operator
    assert doc["subscribers"] == {"active": 1}
    [waiting] = doc["outbox"]
    assert (waiting["channel"], waiting["state"], waiting["count"]) == (
        "email",
        "retry",
        1,
    )

    world.sink.start()
    assert (await world.deliver()).results == ()  # not due before its retry time
    world.clock.advance(2 * 60)
    assert (await world.deliver()).count("sent") == 1
    assert len(world.mail()) == 1
    assert [s for _, _, s in states(world.db)] == ["sent"]


async def test_4xx_then_250_is_one_message_with_the_same_message_id(
    world: World,
) -> None:
    await started(world, "a@example.jp")
    world.serve(item(2, "議事録要約の試行"))
    await world.poll()
    world.sink.fail_next(1, 451, "data")
    assert (await world.deliver()).count("retry") == 1
    first_id = outbox_view.list_deliveries(world.db)[0].message_id
    world.clock.advance(2 * 60)
    assert (await world.deliver()).count("sent") == 1
    [mail] = world.mail()
    assert mail["Message-ID"] == first_id


async def test_5xx_fails_and_repeated_hard_bounces_make_a_subscriber_bouncing(
    world: World,
) -> None:
    await started(world, "gone@example.jp", "ok@example.jp")
    world.sink.reject("gone@example.jp", 550)
    world.serve(item(2, "一件目"))
    await world.poll()
    report = await world.deliver()
    assert sorted(r.outcome for r in report.results) == ["failed", "sent"]
    gone = subscribers.find(world.db, "gone@example.jp")
    assert (gone.state, gone.hard_bounces) == (SubscriberState.ACTIVE, 1)

    world.clock.advance(HOUR)
    world.serve(item(3, "二件目", hours=1.7), item(2, "一件目"))
    await world.poll()
    await world.deliver()
    gone = subscribers.find(world.db, "gone@example.jp")
    assert gone.state is SubscriberState.BOUNCING  # bounce_limit = 2
    assert gone.state_reason is not None
    assert "550" in gone.state_reason

    world.clock.advance(HOUR)
    world.serve(item(4, "三件目", hours=2.7))
    await world.poll()
    await world.deliver()
    to = [m["To"] for m in world.mail()]
    assert to.count("gone@example.jp") == 0
    assert to.count("ok@example.jp") == 3


async def test_a_hostile_feed_title_cannot_add_a_header(world: World) -> None:
    await started(world, "a@example.jp")
    hostile = "速報&#13;&#10;Bcc: evil@example.com&#10;X-Injected: 1 =?utf-8?q?=0D=0A?="
    world.serve(
        item(2, hostile, link="javascript:alert(1)"),
        item(3, "<script>alert(1)</script>普通の記事"),
    )
    await world.poll()
    await world.deliver()
    [received] = world.sink.messages
    mail = received.message
    assert mail["Bcc"] is None
    assert mail["X-Injected"] is None
    assert received.rcpt_tos == ("a@example.jp",)
    assert "\n" not in str(mail["Subject"])
    html = html_part(mail)
    assert "javascript:" not in html
    assert "<script" not in html


async def test_the_confirmation_mail_goes_through_the_outbox(world: World) -> None:
    await world.poll()
    pending = world.add("new@example.jp", confirmed=False)
    with unit_of_work(world.db):
        optin.issue_confirmation(
            world.db, pending.id, world.rt.key, world.clock.now(), timedelta(days=7)
        )
        outbox.enqueue_confirmation(world.db, pending.id, world.clock.now())
    assert (await world.deliver()).count("sent") == 1
    [mail] = world.mail()
    assert mail["List-Unsubscribe"] is None  # not list mail
    match = re.search(r"/confirm/([A-Za-z0-9_-]+)", text_part(mail))
    assert match is not None
    with unit_of_work(world.db):
        result = optin.confirm(world.db, match[1], world.clock.now())
    assert result.outcome == "confirmed"
    assert subscribers.get(world.db, pending.id).state is SubscriberState.ACTIVE
