"""SQL for webhook endpoints: add one, its signing secrets, its health.

A webhook subscriber is a `subscribers` row of kind ``webhook`` whose address is
the endpoint URL. It is active at once (the operator adds it; there is no
opt-in mail) and its filters work as an e-mail subscriber's. Callers run the
writes inside `db.unit_of_work`.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlite_utils

from aggregator import subscribers
from aggregator.errors import UsageError
from aggregator.models import (
    ConsentSource,
    Filters,
    Schedule,
    Subscriber,
    SubscriberKind,
    SubscriberState,
)
from aggregator.settings import Settings
from aggregator.timefmt import from_db, from_db_required, to_db
from notifiers.netguard import UnsafeDestination, check_url

# Standard Webhooks: the secret's form, base64 after it.
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a password)
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes
MAX_URL_LENGTH = 2048


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def checked_url(text: str, settings: Settings) -> str:
    """The URL as stored, or UsageError with the SSRF guard's reason."""
    url = text.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UsageError(f"--webhook: longer than {MAX_URL_LENGTH} characters")
    if "#" in url:
        raise UsageError("--webhook: a fragment (#…) is never sent; leave it out")
    try:
        check_url(url, allow_private=settings.webhooks.allow_private_addresses)
    except UnsafeDestination as e:
        hint = (
            ""
            if settings.webhooks.allow_private_addresses
            else " ([webhooks] allow_private_addresses = true lifts the guard)"
        )
        raise UsageError(f"--webhook {e.destination}: {e.reason}{hint}") from None
    return url


@dataclass(frozen=True, slots=True)
class NewEndpoint:
    subscriber: Subscriber
    secret: str  # shown to the operator once


def add(
    db: sqlite_utils.Database,
    url: str,
    filters: Filters,
    settings: Settings,
    key: bytes,
    now: datetime,
    origin: str,
) -> NewEndpoint:
    """An active webhook subscriber for ``url`` (already `checked_url`) + its secret.

    Like every subscriber it hears only of articles that appear from now on
    (`notify_since` is now): never the backlog.
    """
    new = subscribers.NewSubscriber(
        kind=SubscriberKind.WEBHOOK,
        address=url,
        schedule=Schedule(),  # immediate: one POST per new article
        filters=filters,
        timezone=settings.site.timezone,
        language=settings.site.language,
        confirmed=True,
        consent_source=ConsentSource.CLI,
        consent_origin=origin,
    )
    subscriber = subscribers.add(db, new, key, now)
    secret = new_secret()
    _insert_secret(db, subscriber.id, secret, now)
    return NewEndpoint(subscriber, secret)


def _insert_secret(
    db: sqlite_utils.Database, subscriber_id: int, secret: str, now: datetime
) -> None:
    db.execute(
        """INSERT INTO webhook_secrets (subscriber_id, secret, created_at)
           VALUES (?, ?, ?)""",
        [subscriber_id, secret, to_db(now)],
    )


def require_webhook(db: sqlite_utils.Database, subscriber_id: int) -> Subscriber:
    subscriber = subscribers.get(db, subscriber_id)
    if subscriber.kind is not SubscriberKind.WEBHOOK:
        raise UsageError(f"subscriber {subscriber_id} is an e-mail subscriber")
    return subscriber


def live_secrets(
    db: sqlite_utils.Database, subscriber_id: int, now: datetime
) -> tuple[str, ...]:
    """The secrets that sign now, newest first (two during a rotation's overlap)."""
    return tuple(secret for secret, _ in _live(db, subscriber_id, now))


def _live(
    db: sqlite_utils.Database, subscriber_id: int, now: datetime
) -> list[tuple[str, str | None]]:
    """(secret, expires_at) of the secrets that sign now, newest first."""
    rows = db.execute(
        """SELECT secret, expires_at FROM webhook_secrets
           WHERE subscriber_id = ? AND (expires_at IS NULL OR expires_at > ?)
           ORDER BY id DESC""",
        [subscriber_id, to_db(now)],
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


@dataclass(frozen=True, slots=True)
class Rotation:
    secret: str  # the new one, shown once
    old_until: datetime  # when the previous secrets stop signing


def rotate_secret(
    db: sqlite_utils.Database, subscriber_id: int, now: datetime, overlap: timedelta
) -> Rotation:
    """Add a new secret; the live ones keep signing beside it for ``overlap``.

    Receivers verify any one of the signatures (Standard Webhooks), so they can
    switch to the new secret at any time within the overlap without missing a
    delivery. Secrets that expired before are deleted.
    """
    require_webhook(db, subscriber_id)
    until = now + overlap
    db.execute(
        """UPDATE webhook_secrets SET expires_at = ?
           WHERE subscriber_id = ? AND (expires_at IS NULL OR expires_at > ?)""",
        [to_db(until), subscriber_id, to_db(until)],
    )
    db.execute(
        "DELETE FROM webhook_secrets WHERE subscriber_id = ? AND expires_at <= ?",
        [subscriber_id, to_db(now)],
    )
    secret = new_secret()
    _insert_secret(db, subscriber_id, secret, now)
    return Rotation(secret, until)


def secret_expiries(
    db: sqlite_utils.Database, subscriber_id: int, now: datetime
) -> list[datetime | None]:
    """When each live secret stops signing (None: never), newest first."""
    return [from_db(expires) for _, expires in _live(db, subscriber_id, now)]


# --- health ---------------------------------------------------------------------


def disable(
    db: sqlite_utils.Database,
    subscriber_id: int,
    now: datetime,
    reason: str,
    *,
    cancel_unsent: bool,
) -> int:
    """Stop sending to an endpoint; returns how many unsent deliveries it dropped.

    Gone (410): its unsent deliveries are cancelled, since the receiver said it
    wants none. Failing for days: they fail instead, visibly, so that an
    operator who fixes the endpoint can `kairan deliveries retry --failed`.
    """
    subscribers.set_state(db, subscriber_id, SubscriberState.DISABLED, now, reason)
    state = "cancelled" if cancel_unsent else "failed"
    cursor = db.execute(
        """UPDATE deliveries SET state = ?, last_error = ?, lease_until = NULL
           WHERE subscriber_id = ? AND state IN ('pending', 'retry')""",
        [state, f"endpoint disabled: {reason}", subscriber_id],
    )
    return cursor.rowcount


def record_failure(
    db: sqlite_utils.Database, subscriber_id: int, now: datetime
) -> datetime:
    """Note a failed POST; returns since when the endpoint has only failed."""
    row = db.execute(
        """UPDATE subscribers SET failing_since = coalesce(failing_since, ?)
           WHERE id = ? RETURNING failing_since""",
        [to_db(now), subscriber_id],
    ).fetchone()
    return from_db_required(row[0])


def failing_too_long(
    subscriber: Subscriber, since: datetime, now: datetime, disable_after: timedelta
) -> bool:
    return subscriber.state is SubscriberState.ACTIVE and now - since >= disable_after


def enable(db: sqlite_utils.Database, subscriber_id: int, now: datetime) -> Subscriber:
    """Turn a disabled endpoint back on, with a clean failure record."""
    subscriber = require_webhook(db, subscriber_id)
    if subscriber.state is not SubscriberState.DISABLED:
        raise UsageError(
            f"subscriber {subscriber_id} is {subscriber.state}, not disabled"
        )
    return subscribers.resume(db, subscriber_id, now)
