"""The outbox as operators see it: listing, depth, retrying, what is unsent.

SQL only; the delivery pass itself lives in `outbox.py` and `deliver.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from aggregator.errors import UsageError
from aggregator.store import dict_rows, placeholders
from aggregator.timefmt import from_db, from_db_required, to_db

UNSENT_STATES = ("pending", "sending", "retry")
DELIVERY_STATES = ("pending", "sending", "retry", "sent", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: int
    subscriber_id: int
    address: str
    channel: str
    entry_id: int | None  # None: a confirmation mail
    title: str | None
    state: str
    due_at: datetime
    attempts: int
    last_error: str | None
    message_id: str | None
    sent_at: datetime | None


def list_deliveries(
    db: sqlite_utils.Database,
    states: Iterable[str] = (),
    subscriber_id: int | None = None,
    limit: int | None = None,
) -> list[DeliveryRow]:
    sql = """SELECT d.id, d.subscriber_id, s.address, d.channel, d.entry_id,
                    e.title, d.state, d.due_at, d.attempts, d.last_error,
                    b.message_id, d.sent_at
             FROM deliveries d
             JOIN subscribers s ON s.id = d.subscriber_id
             LEFT JOIN entries e ON e.id = d.entry_id
             LEFT JOIN batches b ON b.id = d.batch_id
             WHERE 1 = 1"""
    params: list[Any] = []
    wanted = list(states)
    if wanted:
        sql += f" AND d.state IN ({placeholders(len(wanted))})"
        params += wanted
    if subscriber_id is not None:
        sql += " AND d.subscriber_id = ?"
        params.append(subscriber_id)
    sql += " ORDER BY d.id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [
        DeliveryRow(
            id=row["id"],
            subscriber_id=row["subscriber_id"],
            address=row["address"],
            channel=row["channel"],
            entry_id=row["entry_id"],
            title=row["title"],
            state=row["state"],
            due_at=from_db_required(row["due_at"]),
            attempts=row["attempts"],
            last_error=row["last_error"],
            message_id=row["message_id"],
            sent_at=from_db(row["sent_at"]),
        )
        for row in dict_rows(db.execute(sql, params))
    ]


def retry_now(
    db: sqlite_utils.Database, delivery_ids: Sequence[int], now: datetime
) -> int:
    """Make failed or waiting deliveries due now; returns how many changed.

    A failed e-mail row leaves its old batch, so the rows retried together go
    out as one new message; a row waiting in `retry` keeps its batch (same
    message), and so does a webhook delivery, whose webhook-id and body stay
    the same so that its receiver can tell a resend from a new article.
    """
    changed = 0
    for delivery_id in delivery_ids:
        row = db.execute(
            "SELECT state, channel FROM deliveries WHERE id = ?", [delivery_id]
        ).fetchone()
        if row is None:
            raise UsageError(f"no delivery {delivery_id}")
        if row[0] not in ("failed", "retry", "pending"):
            raise UsageError(
                f"delivery {delivery_id} is {row[0]}; it cannot be retried"
            )
        detach = row[0] == "failed" and row[1] == "email"
        db.execute(
            """UPDATE deliveries SET state = CASE state WHEN 'failed' THEN 'pending'
                   ELSE state END, due_at = ?,
                   batch_id = CASE WHEN ? THEN NULL ELSE batch_id END
               WHERE id = ?""",
            [to_db(now), detach, delivery_id],
        )
        changed += 1
    return changed


def failed_ids(
    db: sqlite_utils.Database, subscriber_id: int | None = None
) -> list[int]:
    rows = db.execute(
        """SELECT id FROM deliveries WHERE state = 'failed'
             AND (:subscriber IS NULL OR subscriber_id = :subscriber)
           ORDER BY id""",
        {"subscriber": subscriber_id},
    )
    return [row[0] for row in rows.fetchall()]


def unsent_entries(db: sqlite_utils.Database, subscriber_id: int) -> list[int]:
    """Every article still to be sent to a subscriber, whenever it is due."""
    rows = db.execute(
        """SELECT entry_id FROM deliveries
           WHERE subscriber_id = ? AND entry_id IS NOT NULL
             AND state IN ('pending', 'sending', 'retry')
           ORDER BY id""",
        [subscriber_id],
    )
    return [row[0] for row in rows.fetchall()]


@dataclass(frozen=True, slots=True)
class OutboxDepth:
    channel: str
    state: str
    count: int
    oldest_due: datetime | None


def has_unsent(db: sqlite_utils.Database, channel: str) -> bool:
    row = db.execute(
        """SELECT 1 FROM deliveries
           WHERE state IN ('pending', 'sending', 'retry') AND channel = ? LIMIT 1""",
        [channel],
    ).fetchone()
    return row is not None


def depth(db: sqlite_utils.Database) -> list[OutboxDepth]:
    rows = db.execute(
        """SELECT channel, state, count(*), min(due_at) FROM deliveries
           WHERE state IN ('pending', 'sending', 'retry', 'failed')
           GROUP BY channel, state ORDER BY channel, state"""
    ).fetchall()
    return [OutboxDepth(r[0], r[1], r[2], from_db(r[3])) for r in rows]
