"""SQL for subscribers: create, read, change state, tokens, consent, suppression.

Tokens are never stored, only their hashes (`tokens.token_hash`); they are derived
from the site key when a mail needs them, so every mail carries the same link.
Callers run the writes inside `db.unit_of_work`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from aggregator import addresses, tokens, urls
from aggregator.errors import UsageError
from aggregator.models import (
    Cadence,
    ConsentSource,
    Filters,
    Schedule,
    Subscriber,
    SubscriberKind,
    SubscriberState,
)
from aggregator.store import dict_rows
from aggregator.timefmt import from_db, from_db_required, to_db


@dataclass(frozen=True, slots=True)
class NewSubscriber:
    kind: SubscriberKind
    address: str  # already normalised (addresses.normalize_email) or a checked URL
    schedule: Schedule
    filters: Filters
    timezone: str
    language: str
    confirmed: bool  # False: pending until the double opt-in link is followed
    consent_source: ConsentSource
    consent_origin: str | None


def row_to_subscriber(row: dict[str, Any]) -> Subscriber:
    return Subscriber(
        id=row["id"],
        kind=SubscriberKind(row["kind"]),
        address=row["address"],
        state=SubscriberState(row["state"]),
        schedule=Schedule(Cadence(row["cadence"]), row["hour"], row["weekday"]),
        filters=Filters(
            members=tuple(json.loads(row["filter_members"])),
            tags=tuple(json.loads(row["filter_tags"])),
            keywords=tuple(json.loads(row["filter_keywords"])),
        ),
        timezone=row["timezone"],
        language=row["language"],
        created_at=from_db_required(row["created_at"]),
        confirmed_at=from_db(row["confirmed_at"]),
        notify_since=from_db(row["notify_since"]),
        consent_at=from_db_required(row["consent_at"]),
        consent_source=ConsentSource(row["consent_source"]),
        consent_origin=row["consent_origin"],
        hard_bounces=row["hard_bounces"],
        state_reason=row["state_reason"],
        token_generation=row["token_generation"],
        failing_since=from_db(row["failing_since"]),
    )


def _filters_columns(filters: Filters) -> dict[str, str]:
    return {
        "filter_members": json.dumps(list(filters.members), ensure_ascii=False),
        "filter_tags": json.dumps(list(filters.tags), ensure_ascii=False),
        "filter_keywords": json.dumps(list(filters.keywords), ensure_ascii=False),
    }


def _schedule_columns(schedule: Schedule) -> dict[str, Any]:
    return {
        "cadence": str(schedule.cadence),
        "hour": schedule.hour,
        "weekday": schedule.weekday,
    }


def address_key(kind: SubscriberKind, address: str) -> str:
    if kind is SubscriberKind.EMAIL:
        return addresses.address_key(address)
    return urls.endpoint_key(address)


def is_suppressed(db: sqlite_utils.Database, address: str) -> datetime | None:
    row = db.execute(
        "SELECT created_at FROM suppressions WHERE address_hash = ?",
        [addresses.suppression_hash(address)],
    ).fetchone()
    return None if row is None else from_db_required(row[0])


def add(
    db: sqlite_utils.Database, new: NewSubscriber, key: bytes, now: datetime
) -> Subscriber:
    """Insert a subscriber; an existing or forgotten address is a UsageError.

    A forgotten address may sign up again itself through the web form: it stays
    suppressed while pending, until `confirm` proves the person asked (double
    opt-in). No operator command or import can bring it back.
    """
    existing = find_by_address(db, new.kind, new.address)
    if existing is not None:
        raise UsageError(
            f"{new.address} is already subscriber {existing.id} ({existing.state})"
        )
    signing_up = new.consent_source is ConsentSource.WEB and not new.confirmed
    if new.kind is SubscriberKind.EMAIL and not signing_up:
        forgotten = is_suppressed(db, new.address)
        if forgotten is not None:
            raise UsageError(
                f"{new.address} asked to be forgotten on {forgotten:%Y-%m-%d}; "
                "they can sign up again themselves through the web form"
            )
    state = SubscriberState.ACTIVE if new.confirmed else SubscriberState.PENDING
    stamp = to_db(now)
    row = db.execute(
        """INSERT INTO subscribers (kind, address, address_key, state,
               state_changed_at, cadence, hour, weekday, timezone, language,
               filter_members, filter_tags, filter_keywords, created_at,
               confirmed_at, notify_since, consent_at, consent_source, consent_origin)
           VALUES (:kind, :address, :address_key, :state, :now, :cadence, :hour,
               :weekday, :timezone, :language, :filter_members, :filter_tags,
               :filter_keywords, :now, :confirmed, :confirmed, :now, :source,
               :origin)
           RETURNING id""",
        {
            "kind": str(new.kind),
            "address": new.address,
            "address_key": address_key(new.kind, new.address),
            "state": str(state),
            "now": stamp,
            "timezone": new.timezone,
            "language": new.language,
            "confirmed": stamp if new.confirmed else None,
            "source": str(new.consent_source),
            "origin": new.consent_origin,
            **_schedule_columns(new.schedule),
            **_filters_columns(new.filters),
        },
    ).fetchone()
    subscriber_id = int(row[0])
    _store_unsubscribe_hash(db, key, subscriber_id, 1)
    return get(db, subscriber_id)


def _store_unsubscribe_hash(
    db: sqlite_utils.Database, key: bytes, subscriber_id: int, generation: int
) -> None:
    token = tokens.unsubscribe_token(key, subscriber_id, generation)
    db.execute(
        """UPDATE subscribers SET unsubscribe_token_hash = ?, token_generation = ?
           WHERE id = ?""",
        [tokens.token_hash(token), generation, subscriber_id],
    )


def get(db: sqlite_utils.Database, subscriber_id: int) -> Subscriber:
    rows = dict_rows(
        db.execute("SELECT * FROM subscribers WHERE id = ?", [subscriber_id])
    )
    if not rows:
        raise UsageError(f"no subscriber {subscriber_id}")
    return row_to_subscriber(rows[0])


def find_by_address(
    db: sqlite_utils.Database, kind: SubscriberKind, address: str
) -> Subscriber | None:
    rows = dict_rows(
        db.execute(
            "SELECT * FROM subscribers WHERE address_key = ?",
            [address_key(kind, address)],
        )
    )
    return row_to_subscriber(rows[0]) if rows else None


def find(db: sqlite_utils.Database, id_or_address: str) -> Subscriber:
    """A subscriber by id, e-mail address or webhook URL, as an operator types it."""
    if id_or_address.isdigit():
        return get(db, int(id_or_address))
    text = id_or_address.strip()
    kind = SubscriberKind.EMAIL if "@" in text else SubscriberKind.WEBHOOK
    if kind is SubscriberKind.EMAIL:
        try:  # as stored: "taro@例え.jp" is found as "taro@xn--r8jz45g.jp"
            text = addresses.normalize_email(text)
        except UsageError:
            raise UsageError(f"no subscriber {id_or_address}") from None
    found = find_by_address(db, kind, text)
    if found is None:
        raise UsageError(f"no subscriber {id_or_address}")
    return found


def list_subscribers(
    db: sqlite_utils.Database,
    states: Sequence[SubscriberState] = (),
    kind: SubscriberKind | None = None,
) -> list[Subscriber]:
    sql = "SELECT * FROM subscribers WHERE 1 = 1"
    params: list[str] = []
    if states:
        sql += f" AND state IN ({', '.join('?' * len(states))})"
        params += [str(s) for s in states]
    if kind is not None:
        sql += " AND kind = ?"
        params.append(str(kind))
    rows = dict_rows(db.execute(sql + " ORDER BY id", params))
    return [row_to_subscriber(row) for row in rows]


def count_by_state(db: sqlite_utils.Database) -> dict[str, int]:
    rows = db.execute(
        "SELECT state, count(*) FROM subscribers GROUP BY state ORDER BY state"
    ).fetchall()
    return dict(rows)


def by_unsubscribe_token(db: sqlite_utils.Database, token: str) -> Subscriber | None:
    rows = dict_rows(
        db.execute(
            "SELECT * FROM subscribers WHERE unsubscribe_token_hash = ?",
            [tokens.token_hash(token)],
        )
    )
    return row_to_subscriber(rows[0]) if rows else None


def unsubscribe_url_token(key: bytes, subscriber: Subscriber) -> str:
    return tokens.unsubscribe_token(key, subscriber.id, subscriber.token_generation)


# --- changes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Changes:
    """What `subscribers update` may change; None leaves a field as it is."""

    schedule: Schedule | None = None
    filters: Filters | None = None
    timezone: str | None = None
    language: str | None = None


def update(
    db: sqlite_utils.Database, subscriber_id: int, changes: Changes
) -> Subscriber:
    current = get(db, subscriber_id)
    columns: dict[str, Any] = {}
    if changes.schedule is not None:
        columns |= _schedule_columns(changes.schedule)
    if changes.filters is not None:
        columns |= _filters_columns(changes.filters)
    if changes.timezone is not None:
        columns["timezone"] = changes.timezone
    if changes.language is not None:
        columns["language"] = changes.language
    if columns:
        db.table("subscribers").update(current.id, columns)
    return get(db, subscriber_id)


def set_state(
    db: sqlite_utils.Database,
    subscriber_id: int,
    state: SubscriberState,
    now: datetime,
    reason: str | None = None,
) -> None:
    db.execute(
        """UPDATE subscribers SET state = ?, state_reason = ?, state_changed_at = ?
           WHERE id = ?""",
        [str(state), reason, to_db(now), subscriber_id],
    )


def pause(db: sqlite_utils.Database, subscriber_id: int, now: datetime) -> Subscriber:
    subscriber = get(db, subscriber_id)
    if subscriber.state is not SubscriberState.ACTIVE:
        raise UsageError(
            f"subscriber {subscriber_id} is {subscriber.state}, not active"
        )
    set_state(db, subscriber_id, SubscriberState.PAUSED, now, "paused by operator")
    return get(db, subscriber_id)


def resume(db: sqlite_utils.Database, subscriber_id: int, now: datetime) -> Subscriber:
    """Make a paused, bouncing or disabled subscriber active again."""
    subscriber = get(db, subscriber_id)
    resumable = (
        SubscriberState.PAUSED,
        SubscriberState.BOUNCING,
        SubscriberState.DISABLED,
    )
    if subscriber.state not in resumable:
        raise UsageError(
            f"subscriber {subscriber_id} is {subscriber.state}; "
            "only paused, bouncing or disabled subscribers can be resumed"
        )
    db.execute(
        "UPDATE subscribers SET hard_bounces = 0, failing_since = NULL WHERE id = ?",
        [subscriber_id],
    )
    set_state(db, subscriber_id, SubscriberState.ACTIVE, now)
    return get(db, subscriber_id)


def unsubscribe(
    db: sqlite_utils.Database, subscriber_id: int, now: datetime, reason: str
) -> None:
    """Stop at once: the state changes and every unsent delivery is cancelled."""
    set_state(db, subscriber_id, SubscriberState.UNSUBSCRIBED, now, reason)
    db.execute(
        """UPDATE deliveries SET state = 'cancelled', lease_until = NULL,
               last_error = ?
           WHERE subscriber_id = ? AND state IN ('pending', 'retry', 'sending')""",
        [reason, subscriber_id],
    )


def resubscribe(
    db: sqlite_utils.Database,
    subscriber_id: int,
    key: bytes,
    now: datetime,
    source: ConsentSource,
    origin: str | None,
) -> Subscriber:
    """An unsubscribed subscriber asks again: pending under a new consent.

    The old consent was withdrawn, so nothing of it carries over: not being
    confirmed (and so mailed articles only from a new `notify_since`), nor a
    confirmation link issued before, nor the unsubscribe link of old mails
    (a new token generation), which would otherwise stop the new subscription.
    """
    subscriber = get(db, subscriber_id)
    if subscriber.state is not SubscriberState.UNSUBSCRIBED:
        raise UsageError(
            f"subscriber {subscriber_id} is {subscriber.state}, not unsubscribed"
        )
    stamp = to_db(now)
    db.execute(
        """UPDATE subscribers SET state = 'pending', state_reason = 'subscribed again',
               state_changed_at = ?, confirmed_at = NULL, notify_since = NULL,
               confirm_expires_at = NULL, consent_at = ?, consent_source = ?,
               consent_origin = ?
           WHERE id = ?""",
        [stamp, stamp, str(source), origin, subscriber_id],
    )
    _store_unsubscribe_hash(db, key, subscriber_id, subscriber.token_generation + 1)
    return get(db, subscriber_id)


def forget(db: sqlite_utils.Database, subscriber_id: int, now: datetime) -> Subscriber:
    """Erase a subscriber and their deliveries, keeping only a suppression hash."""
    subscriber = get(db, subscriber_id)
    if subscriber.kind is SubscriberKind.EMAIL:
        db.execute(
            """INSERT OR REPLACE INTO suppressions (address_hash, reason, created_at)
               VALUES (?, 'forgotten', ?)""",
            [addresses.suppression_hash(subscriber.address), to_db(now)],
        )
    db.execute("DELETE FROM subscribers WHERE id = ?", [subscriber_id])
    return subscriber


# --- bounces -------------------------------------------------------------------


def record_bounce(
    db: sqlite_utils.Database,
    subscriber_id: int,
    now: datetime,
    limit: int,
    error: str,
) -> bool:
    """Count a hard bounce; True when the subscriber has now become bouncing."""
    db.execute(
        "UPDATE subscribers SET hard_bounces = hard_bounces + 1 WHERE id = ?",
        [subscriber_id],
    )
    subscriber = get(db, subscriber_id)
    if (
        subscriber.hard_bounces < limit
        or subscriber.state is not SubscriberState.ACTIVE
    ):
        return False
    set_state(db, subscriber_id, SubscriberState.BOUNCING, now, error)
    return True


def mark_reachable(db: sqlite_utils.Database, subscriber_id: int) -> None:
    """A message got through: forget past bounces and failures."""
    db.execute(
        """UPDATE subscribers SET hard_bounces = 0, failing_since = NULL
           WHERE id = ? AND (hard_bounces > 0 OR failing_since IS NOT NULL)""",
        [subscriber_id],
    )
