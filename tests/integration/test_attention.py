"""aggregator.attention on a real database; the report through a real SMTP sink."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import sqlite_utils
from typer.testing import CliRunner

from aggregator import operator_mail, store, subscribers
from aggregator.attention import gather
from aggregator.cli import app
from aggregator.clock import SystemClock
from aggregator.db import open_database, unit_of_work
from aggregator.models import (
    ConsentSource,
    Schedule,
    Subscriber,
    SubscriberKind,
    SubscriberState,
)
from aggregator.runtime import Runtime
from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.settings import OperatorSettings, Settings
from aggregator.timefmt import to_db
from notifiers.email import SmtpTransport
from notifiers.operator_report import AttentionKind, OperatorReport, report_message
from tests.integration.smtp_fixtures import SENDER, email_settings
from tests.support.builders import member, settings
from tests.support.clock import FixedClock
from tests.support.followers import EVERYTHING, KEY, add_subscriber

NOW = datetime(2025, 3, 5, 0, 0, tzinfo=UTC)
HOOK = "https://hooks.example.jp/kairan"
OPERATOR = "operator@example.jp"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    database = open_database(tmp_path / "kairan.sqlite3")
    try:
        yield database
    finally:
        database.close()


def configured(tmp_path: Path, db: sqlite_utils.Database, *ids: str) -> Settings:
    """Settings with members `ids` (feeds on example.jp), synced into `db`."""
    members = tuple(member(i, f"https://{i}.example.jp/feed") for i in ids)
    result = settings(tmp_path, members)
    with unit_of_work(db):
        store.sync_members(db, members)
    return result


def poll(
    db: sqlite_utils.Database,
    member_id: str,
    at: datetime,
    *,
    error: str | None = None,
    gone: bool = False,
    moved_from: str | None = None,
) -> None:
    """Record one poll's outcome the way the poller does."""
    url = f"https://{member_id}.example.jp/feed"
    outcome = store.FetchOutcome(
        member_id=member_id,
        now=at,
        next_poll_at=at + timedelta(minutes=30),
        url=f"https://new.example.jp/{member_id}" if moved_from else url,
        moved_from=moved_from,
        error=error,
        error_class="http" if error else None,
        gone=gone,
    )
    with unit_of_work(db):
        store.record_outcome(db, outcome)


def add_webhook(db: sqlite_utils.Database, now: datetime) -> Subscriber:
    new = subscribers.NewSubscriber(
        kind=SubscriberKind.WEBHOOK,
        address=HOOK,
        schedule=Schedule(),
        filters=EVERYTHING,
        timezone="Asia/Tokyo",
        language="ja",
        confirmed=True,
        consent_source=ConsentSource.CLI,
        consent_origin="cli:test",
    )
    with unit_of_work(db):
        return subscribers.add(db, new, KEY, now)


def add_delivery(
    db: sqlite_utils.Database,
    subscriber_id: int,
    due: datetime,
    *,
    state: str = "failed",
    error: str | None = "550 mailbox unavailable",
    channel: str = "email",
) -> None:
    with unit_of_work(db):
        db.execute(
            """INSERT INTO deliveries (subscriber_id, entry_id, channel, state,
                   due_at, attempts, last_error, created_at)
               VALUES (?, NULL, ?, ?, ?, 7, ?, ?)""",
            [subscriber_id, channel, state, to_db(due), error, to_db(due)],
        )


def bounce(db: sqlite_utils.Database, subscriber_id: int, times: int) -> None:
    with unit_of_work(db):
        for _ in range(times):
            subscribers.record_bounce(db, subscriber_id, NOW, 3, "550 5.1.1 no user")


# --- gather ------------------------------------------------------------------------


def test_nothing_needs_attention(tmp_path: Path, db: sqlite_utils.Database) -> None:
    s = configured(tmp_path, db, "a")
    poll(db, "a", NOW - timedelta(hours=1))
    follower = add_subscriber(db, "taro@example.jp", NOW - timedelta(days=1))
    add_delivery(db, follower.id, NOW - timedelta(hours=2), state="sent", error=None)
    add_webhook(db, NOW)
    assert gather(db, s, NOW) == []


def test_a_member_failing_three_times_in_a_row(
    tmp_path: Path, db: sqlite_utils.Database
) -> None:
    s = configured(tmp_path, db, "a", "b")
    success = NOW - timedelta(hours=5)
    poll(db, "a", success)
    for hours in (3, 2, 1):
        poll(db, "a", NOW - timedelta(hours=hours), error="HTTP 500")
        poll(db, "b", NOW - timedelta(hours=hours), error="connection refused")
    poll(db, "b", NOW, error="接続がタイムアウトしました")  # b: 4 failures, never ok
    a, b = gather(db, s, NOW)
    assert (a.kind, a.subject, a.since) == (
        AttentionKind.MEMBER_FAILING,
        "a (A)",
        success,
    )
    assert a.detail == (
        "https://a.example.jp/feed: 3 failed polls in a row, last error: HTTP 500"
    )
    assert "`kairan poll a`" in a.advice
    assert "`kairan members pause a`" in a.advice
    assert (b.subject, b.since) == ("b (B)", None)
    assert b.detail.endswith(
        "4 failed polls in a row, last error: 接続がタイムアウトしました; "
        "never fetched successfully"
    )


def test_one_or_two_failures_are_not_news(
    tmp_path: Path, db: sqlite_utils.Database
) -> None:
    s = configured(tmp_path, db, "a")
    for hours in (2, 1):
        poll(db, "a", NOW - timedelta(hours=hours), error="HTTP 503")
    assert gather(db, s, NOW) == []


def test_a_gone_member(tmp_path: Path, db: sqlite_utils.Database) -> None:
    s = configured(tmp_path, db, "a")
    when = NOW - timedelta(days=2)
    poll(db, "a", when, error="HTTP 410", gone=True)
    [item] = gather(db, s, NOW)
    assert (item.kind, item.subject, item.since) == (
        AttentionKind.MEMBER_GONE,
        "a (A)",
        when,
    )
    assert item.detail.startswith("https://a.example.jp/feed: HTTP 410 (gone)")
    assert "`kairan members resume a`" in item.advice
    assert "`kairan members remove a`" in item.advice


def test_a_member_moved_this_week(tmp_path: Path, db: sqlite_utils.Database) -> None:
    s = configured(tmp_path, db, "a", "old")
    when = NOW - timedelta(days=6)
    poll(db, "a", when, moved_from="https://a.example.jp/feed")
    poll(db, "old", NOW - timedelta(days=8), moved_from="https://old.example.jp/feed")
    [item] = gather(db, s, NOW)  # "old" moved more than 7 days ago: history
    assert (item.kind, item.subject, item.since) == (
        AttentionKind.MEMBER_MOVED,
        "a (A)",
        when,
    )
    assert item.detail == (
        "https://a.example.jp/feed moved permanently to https://new.example.jp/a"
    )
    assert 'set feed = "https://new.example.jp/a" for member a' in item.advice


def test_paused_and_removed_members_are_left_out(
    tmp_path: Path, db: sqlite_utils.Database
) -> None:
    configured(tmp_path, db, "a", "b")
    for hours in (3, 2, 1):
        poll(db, "a", NOW - timedelta(hours=hours), error="HTTP 500")
    poll(db, "b", NOW, error="HTTP 410", gone=True)
    paused_a = settings(
        tmp_path, (member("a", "https://a.example.jp/feed", paused=True),)
    )
    assert gather(db, paused_a, NOW) == []  # b is no member any more


def test_a_disabled_webhook(db: sqlite_utils.Database, tmp_path: Path) -> None:
    hook = add_webhook(db, NOW - timedelta(days=10))
    when = NOW - timedelta(days=1)
    with unit_of_work(db):
        subscribers.set_state(
            db, hook.id, SubscriberState.DISABLED, when, "failed for 5 days: HTTP 502"
        )
    [item] = gather(db, settings(tmp_path), NOW)
    assert (item.kind, item.subject, item.since) == (
        AttentionKind.WEBHOOK_DISABLED,
        f"{hook.id} ({HOOK})",
        when,
    )
    assert item.detail == "endpoint disabled: failed for 5 days: HTTP 502"
    assert f"`kairan subscribers enable {hook.id}`" in item.advice


def test_a_bouncing_subscriber(db: sqlite_utils.Database, tmp_path: Path) -> None:
    follower = add_subscriber(db, "hanako@example.jp", NOW - timedelta(days=30))
    bounce(db, follower.id, 3)
    [item] = gather(db, settings(tmp_path), NOW)
    assert (item.kind, item.subject, item.since) == (
        AttentionKind.SUBSCRIBER_BOUNCING,
        f"{follower.id} (hanako@example.jp)",
        NOW,
    )
    assert item.detail == ("3 hard bounces, no longer mailed; last: 550 5.1.1 no user")
    assert f"`kairan subscribers resume {follower.id}`" in item.advice
    assert f"`kairan subscribers remove {follower.id}`" in item.advice


def test_failed_deliveries_by_channel(
    db: sqlite_utils.Database, tmp_path: Path
) -> None:
    taro = add_subscriber(db, "taro@example.jp", NOW - timedelta(days=30))
    hook = add_webhook(db, NOW - timedelta(days=30))
    first, newest = NOW - timedelta(days=3), NOW - timedelta(hours=1)
    add_delivery(db, taro.id, first, error="451 try later")
    add_delivery(db, taro.id, newest, error="SMTP 接続エラー")
    add_delivery(db, taro.id, NOW - timedelta(days=8))  # older than a week
    add_delivery(db, taro.id, NOW, state="retry")  # not failed yet
    add_delivery(db, hook.id, newest, error="HTTP 500", channel="webhook")
    # a bouncing subscriber's failures are its own item, not the channel's
    hanako = add_subscriber(db, "hanako@example.jp", NOW - timedelta(days=30))
    add_delivery(db, hanako.id, newest, error="550 no user")
    bounce(db, hanako.id, 3)

    email, webhook, bouncing = gather(db, settings(tmp_path), NOW)
    assert (email.kind, email.subject, email.since) == (
        AttentionKind.DELIVERIES_FAILING,
        "email",
        first,
    )
    assert email.detail == (
        "2 deliveries failed in the last 7 days; newest error: SMTP 接続エラー"
    )
    assert "`kairan deliveries retry --failed`" in email.advice
    assert (webhook.subject, webhook.detail) == (
        "webhook",
        "1 delivery failed in the last 7 days; newest error: HTTP 500",
    )
    assert bouncing.kind is AttentionKind.SUBSCRIBER_BOUNCING


def test_kinds_come_most_severe_first(
    tmp_path: Path, db: sqlite_utils.Database
) -> None:
    s = configured(tmp_path, db, "failing", "gone", "moved")
    for hours in (3, 2, 1):
        poll(db, "failing", NOW - timedelta(hours=hours), error="HTTP 500")
    poll(db, "gone", NOW, error="HTTP 410", gone=True)
    poll(db, "moved", NOW, moved_from="https://moved.example.jp/feed")
    follower = add_subscriber(db, "hanako@example.jp", NOW - timedelta(days=30))
    bounce(db, follower.id, 3)
    hook = add_webhook(db, NOW)
    with unit_of_work(db):
        subscribers.set_state(db, hook.id, SubscriberState.DISABLED, NOW, "HTTP 410")
    add_delivery(db, follower.id, NOW)  # left out: the subscriber bounces
    add_delivery(db, hook.id, NOW, channel="webhook")  # left out: disabled
    assert [item.kind for item in gather(db, s, NOW)] == [
        AttentionKind.MEMBER_GONE,
        AttentionKind.MEMBER_FAILING,
        AttentionKind.WEBHOOK_DISABLED,
        AttentionKind.SUBSCRIBER_BOUNCING,
        AttentionKind.MEMBER_MOVED,
    ]


# --- kairan status -----------------------------------------------------------------


def test_status_lists_what_needs_attention(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[storage]\ndata_dir = "state"\n\n[[members]]\nid = "a"\nname = "甲市"\n'
        'feed = "https://a.example.jp/feed"\n',
        encoding="utf-8",
    )
    now = SystemClock().now()  # the CLI runs on the system clock
    database = open_database(tmp_path / "state" / "kairan.sqlite3")
    try:
        with unit_of_work(database):
            store.sync_members(database, [member("a", "https://a.example.jp/feed")])
        for minutes in (3, 2, 1):
            poll(database, "a", now - timedelta(minutes=minutes), error="HTTP 500")
    finally:
        database.close()

    def run(*args: str) -> str:
        result = CliRunner().invoke(app, ["--config", str(config), "status", *args])
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result.stdout

    [item] = json.loads(run("--json"))["attention"]
    assert item["kind"] == "member_failing"
    assert item["subject"] == "a (甲市)"
    assert item["detail"].endswith("last error: HTTP 500; never fetched successfully")
    assert item["since"] is None
    lines = run().splitlines()
    at = lines.index("attention: 1 thing needs attention")
    assert lines[at + 1].startswith("  member failing a (甲市): https://a.example.jp/")
    assert "→ check the feed URL" in lines[at + 1]


# --- the report through a real SMTP server -------------------------------------


async def test_the_report_arrives_intact(
    tmp_path: Path, db: sqlite_utils.Database
) -> None:
    s = configured(tmp_path, db, "a")
    poll(db, "a", NOW, error="HTTP 410 — フィードは削除されました", gone=True)
    report = OperatorReport(
        site_title="自治体AI回覧板",
        generated_at=NOW,
        timezone=s.site.tz,
        items=tuple(gather(db, s, NOW)),
    )
    message = report_message(report, SENDER, OPERATOR, "<report.1@example.jp>")
    with SmtpSink() as sink:
        async with SmtpTransport(email_settings(sink)) as transport:
            await transport.send(SENDER, OPERATOR, message)
        [received] = sink.wait_for(1)
    assert received.rcpt_tos == (OPERATOR,)
    parsed = BytesParser(policy=policy.default).parsebytes(received.data)
    assert parsed["Subject"] == "[自治体AI回覧板] 1 thing needs attention"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    body = parsed.get_content()
    assert "自治体AI回覧板 health report, 2025-03-05 09:00 (Asia/Tokyo)" in body
    assert "HTTP 410 — フィードは削除されました (gone)" in body
    assert "`kairan members resume a`" in body


async def test_the_daily_report_goes_out_only_when_something_needs_attention(
    tmp_path: Path, db: sqlite_utils.Database
) -> None:
    """operator_mail.send_report, as the daemon's housekeeping calls it."""
    with SmtpSink() as sink:
        base = configured(tmp_path, db, "a")
        quiet = dataclasses.replace(base, email=email_settings(sink))
        wanted = dataclasses.replace(quiet, operator=OperatorSettings(OPERATOR))
        clock = FixedClock(NOW)
        unaddressed = Runtime(quiet, db, clock)
        addressed = Runtime(wanted, db, clock)
        assert await operator_mail.send_report(addressed, NOW) == 0  # all is well
        poll(db, "a", NOW, error="HTTP 410", gone=True)
        assert await operator_mail.send_report(unaddressed, NOW) == 0  # no address
        assert sink.messages == []
        assert await operator_mail.send_report(addressed, NOW) == 1
        [received] = sink.wait_for(1)
    assert received.rcpt_tos == (OPERATOR,)
    parsed = BytesParser(policy=policy.default).parsebytes(received.data)
    assert parsed["Subject"].endswith("1 thing needs attention")
    assert parsed["Message-ID"] == "<health-20250305@localhost>"
