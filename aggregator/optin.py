"""Double opt-in: the confirmation window, following its link, activation.

The confirmation token is derived from the site key and the window's expiry
(`tokens.confirm_token`), so the mail built later recomputes it and only its
hash is stored. Callers run the writes inside `db.unit_of_work`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlite_utils

from aggregator import addresses, tokens
from aggregator.models import Subscriber, SubscriberState
from aggregator.store import dict_rows
from aggregator.subscribers import get, row_to_subscriber
from aggregator.timefmt import from_db, from_db_required, to_db


def issue_confirmation(
    db: sqlite_utils.Database,
    subscriber_id: int,
    key: bytes,
    now: datetime,
    ttl: timedelta,
) -> datetime:
    """Start (or restart) the confirmation window; returns when it expires.

    The token is derived from the expiry time, so the mail built later can
    recompute it and a re-issued confirmation invalidates the previous link.
    """
    expires = (now + ttl).replace(microsecond=0)
    token = tokens.confirm_token(key, subscriber_id, expires)
    db.execute(
        """UPDATE subscribers SET confirm_token_hash = ?, confirm_expires_at = ?
           WHERE id = ?""",
        [tokens.token_hash(token), to_db(expires), subscriber_id],
    )
    return expires


def confirmation_link_token(
    db: sqlite_utils.Database, subscriber_id: int, key: bytes
) -> tuple[str, datetime] | None:
    """The live confirmation token and its expiry, or None once confirmed."""
    row = db.execute(
        "SELECT confirm_expires_at FROM subscribers WHERE id = ?", [subscriber_id]
    ).fetchone()
    if row is None or row[0] is None:
        return None
    expires = from_db_required(row[0])
    return tokens.confirm_token(key, subscriber_id, expires), expires


@dataclass(frozen=True, slots=True)
class Confirmation:
    outcome: str  # "confirmed", "already", "expired" or "unknown"
    subscriber: Subscriber | None = None


def confirm(db: sqlite_utils.Database, token: str, now: datetime) -> Confirmation:
    """Follow a confirmation link: single use, and only before it expires."""
    rows = dict_rows(
        db.execute(
            "SELECT * FROM subscribers WHERE confirm_token_hash = ?",
            [tokens.token_hash(token)],
        )
    )
    if not rows:
        return Confirmation("unknown")
    subscriber = row_to_subscriber(rows[0])
    expires = from_db(rows[0]["confirm_expires_at"])
    if subscriber.state is not SubscriberState.PENDING:
        return Confirmation("already", subscriber)
    if expires is None or expires <= now:
        return Confirmation("expired", subscriber)
    activate(db, subscriber.id, now)
    lift_suppression(db, subscriber.address)
    return Confirmation("confirmed", get(db, subscriber.id))


def activate(db: sqlite_utils.Database, subscriber_id: int, now: datetime) -> None:
    """Confirmed: active from now on; nothing older than now is ever sent to them.

    The confirmation's hash stays, so a second click can be told "already
    confirmed"; without an expiry the link can never confirm again.
    """
    stamp = to_db(now)
    db.execute(
        """UPDATE subscribers SET state = 'active', state_reason = NULL,
               state_changed_at = ?, confirmed_at = ?, notify_since = ?,
               confirm_expires_at = NULL
           WHERE id = ?""",
        [stamp, stamp, stamp, subscriber_id],
    )


def lift_suppression(db: sqlite_utils.Database, address: str) -> None:
    """The person signed up again themselves (double opt-in): they may be mailed."""
    db.execute(
        "DELETE FROM suppressions WHERE address_hash = ?",
        [addresses.suppression_hash(address)],
    )
