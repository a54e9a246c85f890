"""SQL for the outbox: enqueue with the article, claim with a lease, record outcomes.

A delivery row is written in the same transaction that stores its article, so a
new article is never without its deliveries. Sending happens in *batches*: one
batch is one message (an e-mail with all of a subscriber's due articles, or one
webhook POST). A batch's articles, Message-ID and Date are fixed when it is first
claimed, so a resend after a crash is the same message (ARCHITECTURE.md, "The only
possible duplicate is the in-flight send").

Delivery states::

    pending ──claim──► sending ──► sent
       ▲                  │ ├────► retry ──(due again)──► sending
       │                  │ └────► failed ──(deliveries retry)──► pending
       └─(lease expired: claimable again)
    pending/retry/sending ──(unsubscribe)──► cancelled
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import sqlite_utils

from aggregator import subscribers
from aggregator.audience import Audience, AudienceCache
from aggregator.digest_schedule import next_due
from aggregator.matching import subject_for
from aggregator.models import (
    Article,
    Member,
    Schedule,
    Subscriber,
    SubscriberKind,
)
from aggregator.store import chunks, dict_rows
from aggregator.timefmt import from_db_required, to_db

# A row is due when its time has come and nobody holds it, or its holder died.
# One condition, not an OR of two: SQLite can then use deliveries_by_subscriber
# for a chunk's subscribers instead of scanning every due row per chunk.
_DUE = """(d.state IN ('pending', 'retry', 'sending')
           AND CASE d.state WHEN 'sending' THEN d.lease_until ELSE d.due_at END
               <= :now)"""
# For a chunk of subscribers, their own rows: without this the planner may pick
# deliveries_by_state (state, channel) and read every pending row of the
# channel per chunk (bench/scale.py: 330 ms a claim instead of 23).
_BY_SUBSCRIBER = "INDEXED BY deliveries_by_subscriber"
# Article rows go to active subscribers; a confirmation mail to a pending one.
_SENDABLE = """(s.state = 'active' OR (d.entry_id IS NULL AND s.state = 'pending'))"""


def channel_of(subscriber: Subscriber) -> str:
    return "email" if subscriber.kind is SubscriberKind.EMAIL else "webhook"


# --- enqueue (inside ingest's transaction) ------------------------------------


@dataclass(frozen=True, slots=True)
class NewArticle:
    entry_id: int
    member: Member
    article: Article


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def due_time(schedule: Schedule, timezone: str, now: datetime) -> datetime:
    return next_due(schedule, _zone(timezone), now)


def enqueue_articles(
    db: sqlite_utils.Database,
    articles: Sequence[NewArticle],
    now: datetime,
    cache: AudienceCache | None = None,
) -> int:
    """One delivery per matching active subscriber and new article; returns rows added.

    Never-notify rules: only NEW articles reach here (not the baseline backlog,
    not edits), and an article published before a subscriber's `notify_since`
    is skipped for that subscriber. Idempotent: UNIQUE(entry, subscriber, channel).
    A poller passes its `cache`, so the audience is not read again per feed.
    """
    if not articles:
        return 0
    listeners = (cache or AudienceCache()).get(db)
    before = db.conn.total_changes
    db.conn.executemany(
        """INSERT OR IGNORE INTO deliveries
               (subscriber_id, entry_id, channel, due_at, created_at)
           VALUES (?, ?, ?, ?, ?)""",
        _rows(listeners, articles, now),
    )
    return db.conn.total_changes - before


def _rows(
    listeners: Audience, articles: Sequence[NewArticle], now: datetime
) -> Iterator[tuple[int, int, str, str, str]]:
    """The delivery rows, made as executemany takes them (never all in a list)."""
    stamp = to_db(now)
    dues: dict[tuple[Schedule, str], str] = {}
    for item in articles:
        subject = subject_for(
            item.member.id,
            item.member.tags,
            item.member.prefecture,
            item.article.tags,
            item.article.title,
            item.article.summary_html,
        )
        published = item.article.published or now
        for group in listeners.groups:
            if not group.matcher.matches(subject):
                continue
            for r in group.recipients:
                if published < r.notify_since:
                    continue
                when = (r.schedule, r.timezone)
                due = dues.get(when)
                if due is None:
                    due = dues[when] = to_db(due_time(*when, now))
                yield (r.subscriber_id, item.entry_id, r.channel, due, stamp)


def reschedule_unsent(
    db: sqlite_utils.Database, subscriber: Subscriber, now: datetime
) -> int:
    """After a schedule or timezone change, queued articles follow the new one.

    Rows already in a batch keep it: that message's identity is fixed.
    """
    cursor = db.execute(
        """UPDATE deliveries SET due_at = ?
           WHERE subscriber_id = ? AND state = 'pending' AND batch_id IS NULL
             AND entry_id IS NOT NULL""",
        [to_db(due_time(subscriber.schedule, subscriber.timezone, now)), subscriber.id],
    )
    return cursor.rowcount


def enqueue_confirmation(
    db: sqlite_utils.Database, subscriber_id: int, now: datetime
) -> None:
    """The double opt-in mail goes through the outbox too, so it is never lost."""
    stamp = to_db(now)
    db.execute(
        """INSERT INTO deliveries (subscriber_id, entry_id, channel, due_at, created_at)
           VALUES (?, NULL, 'email', ?, ?)""",
        [subscriber_id, stamp, stamp],
    )


# --- claim --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    """One message to send: its deliveries, articles and fixed identity."""

    batch_id: int
    subscriber: Subscriber
    channel: str  # "email" or "webhook"
    kind: str  # "immediate", "daily", "weekly", "confirm" or "webhook"
    message_id: str
    created_at: datetime  # the message's Date
    delivery_ids: tuple[int, ...]
    entry_ids: tuple[int, ...]  # empty for a confirmation
    attempts: int  # this attempt included
    payload: bytes | None = None  # a webhook's body once fixed (`fix_payload`)


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """What a claim would take, before anything is written (also for --dry-run)."""

    subscriber_id: int
    channel: str
    batch_id: int | None  # set when re-sending a batch claimed before
    delivery_ids: tuple[int, ...]
    entry_ids: tuple[int | None, ...]
    attempts: int  # the highest so far


def due_subscribers(
    db: sqlite_utils.Database,
    now: datetime,
    channel: str | None = None,
    subscriber_id: int | None = None,
) -> list[int]:
    """Subscribers with something due now, oldest due first."""
    sql = f"""SELECT d.subscriber_id FROM deliveries d
              JOIN subscribers s ON s.id = d.subscriber_id
              WHERE {_DUE} AND {_SENDABLE}"""  # noqa: S608 (constant fragments)
    params: dict[str, Any] = {"now": to_db(now)}
    if channel is not None:
        sql += " AND d.channel = :channel"
        params["channel"] = channel
    if subscriber_id is not None:
        sql += " AND d.subscriber_id = :subscriber"
        params["subscriber"] = subscriber_id
    sql += " GROUP BY d.subscriber_id ORDER BY MIN(d.due_at), d.subscriber_id"
    return [row[0] for row in db.execute(sql, params).fetchall()]


def _due_rows_of(ids: Sequence[int], now: datetime) -> tuple[str, dict[str, Any]]:
    """FROM … WHERE of the rows of these subscribers that are due now, and its
    parameters (one placeholder per id; the caller adds its own conditions)."""
    params: dict[str, Any] = {f"s{n}": i for n, i in enumerate(ids)}
    marks = ", ".join(":" + p for p in params)
    params["now"] = to_db(now)
    rows = f"""FROM deliveries d {_BY_SUBSCRIBER}
               JOIN subscribers s ON s.id = d.subscriber_id
               WHERE d.subscriber_id IN ({marks}) AND {_DUE} AND {_SENDABLE}"""
    return rows, params


def due_count(
    db: sqlite_utils.Database,
    now: datetime,
    channel: str,
    subscriber_ids: Sequence[int],
) -> int:
    """How many rows of these subscribers are due now on this channel."""
    total = 0
    for ids in chunks(subscriber_ids):
        rows, params = _due_rows_of(ids, now)
        sql = f"SELECT count(*) {rows} AND d.channel = :channel"
        params["channel"] = channel
        total += int(db.execute(sql, params).fetchone()[0])
    return total


def plan(
    db: sqlite_utils.Database,
    subscriber_ids: Sequence[int],
    now: datetime,
    channel: str | None = None,
    limit: int | None = None,
) -> list[PlannedBatch]:
    """Group the due rows of these subscribers into messages; writes nothing.

    A row already in a batch goes out with that batch again. New e-mail rows of
    one subscriber form one message; a confirmation and each webhook delivery
    are messages of their own. ``limit`` (webhooks only, where a row is a
    message, so a limit never splits one) takes the oldest due rows first.
    """
    if limit is not None and channel != "webhook":
        raise ValueError("a limit splits e-mail messages; only webhooks take one")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for ids in chunks(subscriber_ids):
        rows, params = _due_rows_of(ids, now)
        sql = f"""SELECT d.id, d.subscriber_id, d.entry_id, d.channel, d.batch_id,
                         d.attempts {rows}"""
        if channel is not None:
            sql += " AND d.channel = :channel"
            params["channel"] = channel
        sql += " ORDER BY d.id"
        if limit is not None:
            left = limit - sum(len(g) for g in groups.values())
            if left <= 0:  # (a negative LIMIT would mean none in SQLite)
                break
            sql += " LIMIT :limit"
            params["limit"] = left
        for row in dict_rows(db.execute(sql, params)):
            groups.setdefault(_group_key(row), []).append(row)
    return [
        PlannedBatch(
            subscriber_id=rows[0]["subscriber_id"],
            channel=rows[0]["channel"],
            batch_id=rows[0]["batch_id"],
            delivery_ids=tuple(r["id"] for r in rows),
            entry_ids=tuple(r["entry_id"] for r in rows),
            attempts=max(r["attempts"] for r in rows),
        )
        for rows in groups.values()
    ]


def _group_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    if row["batch_id"] is not None:
        return ("batch", row["batch_id"])
    if row["entry_id"] is None or row["channel"] == "webhook":
        return ("single", row["id"])
    return ("new", row["subscriber_id"], row["channel"])


def claim(
    db: sqlite_utils.Database,
    subscriber_ids: Sequence[int],
    now: datetime,
    lease: timedelta,
    message_host: str,
    channel: str | None = None,
    limit: int | None = None,
) -> list[Claim]:
    """Take the due messages of these subscribers for `lease`; the caller commits."""
    claims: list[Claim] = []
    lease_until = to_db(now + lease)
    people = {i: subscribers.get(db, i) for i in set(subscriber_ids)}
    for batch in plan(db, subscriber_ids, now, channel, limit):
        subscriber = people[batch.subscriber_id]
        batch_id, message_id, created_at, kind, payload = _batch_for(
            db, batch, subscriber, now, message_host
        )
        db.conn.executemany(
            """UPDATE deliveries SET state = 'sending', lease_until = ?,
                   attempts = attempts + 1, batch_id = ?
               WHERE id = ?""",
            [(lease_until, batch_id, i) for i in batch.delivery_ids],
        )
        claims.append(
            Claim(
                batch_id=batch_id,
                subscriber=subscriber,
                channel=batch.channel,
                kind=kind,
                message_id=message_id,
                created_at=created_at,
                delivery_ids=batch.delivery_ids,
                entry_ids=tuple(e for e in batch.entry_ids if e is not None),
                attempts=batch.attempts + 1,
                payload=payload,
            )
        )
    return claims


def batch_kind(batch: PlannedBatch, subscriber: Subscriber) -> str:
    if batch.channel == "webhook":
        return "webhook"
    if batch.entry_ids == (None,):
        return "confirm"
    return str(subscriber.schedule.cadence)


def _batch_for(
    db: sqlite_utils.Database,
    batch: PlannedBatch,
    subscriber: Subscriber,
    now: datetime,
    message_host: str,
) -> tuple[int, str, datetime, str, bytes | None]:
    if batch.batch_id is not None:
        row = db.execute(
            "SELECT message_id, created_at, kind, payload FROM batches WHERE id = ?",
            [batch.batch_id],
        ).fetchone()
        return batch.batch_id, row[0], from_db_required(row[1]), row[2], row[3]
    kind = batch_kind(batch, subscriber)
    message_id = new_message_id(batch.channel, message_host)
    stamp = now.replace(microsecond=0)
    row = db.execute(
        """INSERT INTO batches (subscriber_id, channel, kind, message_id, created_at)
           VALUES (?, ?, ?, ?, ?) RETURNING id""",
        [subscriber.id, batch.channel, kind, message_id, to_db(stamp)],
    ).fetchone()
    return int(row[0]), message_id, stamp, kind, None


def new_message_id(channel: str, message_host: str) -> str:
    """Random, so it reveals nothing about the list or the order of deliveries."""
    if channel == "webhook":
        # Standard Webhooks' webhook-id: receivers dedupe on it, across retries.
        return f"msg_{secrets.token_hex(16)}"
    # RFC 5322 3.6.4: a Message-ID is globally unique.
    return f"<{secrets.token_hex(12)}@{message_host}>"


def fix_payload(db: sqlite_utils.Database, claim: Claim, payload: bytes) -> Claim:
    """Store a webhook's body with its batch, so every retry sends the same bytes.

    Call in the claim's transaction: a crash before the commit loses the claim
    and the body together, and the next claim builds both again.
    """
    db.execute(
        "UPDATE batches SET payload = ? WHERE id = ? AND payload IS NULL",
        [payload, claim.batch_id],
    )
    return replace(claim, payload=payload)


# --- outcomes -----------------------------------------------------------------


def mark_all_sent(
    db: sqlite_utils.Database, claims: Sequence[Claim], now: datetime
) -> None:
    """These messages went out: one statement for a chunk's worth."""
    stamp = to_db(now)
    # Only rows still held by the batch: an unsubscribe may have cancelled them.
    db.conn.executemany(
        """UPDATE deliveries SET state = 'sent', last_error = NULL,
               lease_until = NULL, sent_at = ?
           WHERE batch_id = ? AND state = 'sending'""",
        [(stamp, c.batch_id) for c in claims],
    )


def mark_retry(
    db: sqlite_utils.Database, claim: Claim, error: str, retry_at: datetime
) -> None:
    _finish(db, claim, "retry", error, due_at=retry_at)


def mark_failed(db: sqlite_utils.Database, claim: Claim, error: str) -> None:
    _finish(db, claim, "failed", error)


def _finish(
    db: sqlite_utils.Database,
    claim: Claim,
    state: str,
    error: str,
    *,
    due_at: datetime | None = None,
) -> None:
    """A failed attempt's outcome (a sent one: `mark_all_sent`)."""
    # Only rows still held by this batch: an unsubscribe may have cancelled them.
    db.execute(
        """UPDATE deliveries SET state = :state, last_error = :error,
               lease_until = NULL, due_at = coalesce(:due_at, due_at)
           WHERE batch_id = :batch AND state = 'sending'""",
        {
            "state": state,
            "error": error,
            "due_at": to_db(due_at),
            "batch": claim.batch_id,
        },
    )


def release(db: sqlite_utils.Database, claims: Sequence[Claim], now: datetime) -> None:
    """Give claimed messages back, due now (their batch and identity stay)."""
    db.conn.executemany(
        """UPDATE deliveries SET state = 'retry', lease_until = NULL, due_at = ?
           WHERE batch_id = ? AND state = 'sending'""",
        [(to_db(now), c.batch_id) for c in claims],
    )


def fail_unsent(db: sqlite_utils.Database, subscriber_id: int, reason: str) -> int:
    """A subscriber that can no longer be reached: its unsent rows fail, visibly."""
    cursor = db.execute(
        """UPDATE deliveries SET state = 'failed', last_error = ?, lease_until = NULL
           WHERE subscriber_id = ? AND state IN ('pending', 'retry')""",
        [reason, subscriber_id],
    )
    return cursor.rowcount
