"""What needs the operator's attention, read from the database with advice for each.

Read-only SQL. The operator's daily report and `kairan status` show the result;
nothing here changes a state. Only members configured and not paused count: a
removed or paused member's stale state is not news.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from aggregator.models import Member
from aggregator.settings import Settings
from aggregator.store import dict_rows
from aggregator.timefmt import from_db, to_db
from notifiers.operator_report import AttentionItem, AttentionKind

# A recent move or failed delivery is news for a week; older ones are history.
WINDOW = timedelta(days=7)
# One failed poll is often a blip the next poll clears; three in a row is not.
FAILING_AFTER = 3


def gather(
    db: sqlite_utils.Database, settings: Settings, now: datetime
) -> list[AttentionItem]:
    """Everything that needs attention now, most severe kind first.

    Within a kind the order is the subject's: members by id, subscribers by id,
    channels by name.
    """
    members = {m.id: m for m in settings.members if not m.paused}
    cutoff = to_db(now - WINDOW)
    items = [
        *member_items(db, members, cutoff),
        *subscriber_items(db),
        *delivery_items(db, cutoff),
    ]
    return sorted(items, key=lambda item: item.kind.severity)


# --- members ---------------------------------------------------------------------


def member_items(
    db: sqlite_utils.Database, members: dict[str, Member], cutoff: str | None
) -> list[AttentionItem]:
    rows = dict_rows(
        db.execute(
            """SELECT * FROM (
                   SELECT id, url, state, failures, last_error, last_success_at,
                       last_polled_at, moved_from, moved_at,
                       state = 'failing' AND failures >= :failing_after AS failing,
                       state = 'gone' AS gone,
                       moved_from IS NOT NULL AND moved_at >= :cutoff AS moved
                   FROM members)
               WHERE failing OR gone OR moved ORDER BY id""",
            {"failing_after": FAILING_AFTER, "cutoff": cutoff},
        )
    )
    items: list[AttentionItem] = []
    for row in rows:
        member = members.get(row["id"])
        if member is None:
            continue
        items += [
            build(member, row)
            for flag, build in (("gone", gone), ("failing", failing), ("moved", moved))
            if row[flag]
        ]
    return items


def member_subject(member: Member) -> str:
    return f"{member.id} ({member.name})" if member.name != member.id else member.id


def failing(member: Member, row: dict[str, Any]) -> AttentionItem:
    last_success = "" if row["last_success_at"] else "; never fetched successfully"
    return AttentionItem(
        kind=AttentionKind.MEMBER_FAILING,
        subject=member_subject(member),
        detail=f"{row['url']}: {row['failures']} failed polls in a row, "
        f"last error: {row['last_error'] or 'unknown'}{last_success}",
        advice=f"check the feed URL in a browser; `kairan poll {member.id}` "
        f"retries now; `kairan members pause {member.id}` stops polling it",
        since=from_db(row["last_success_at"]),
    )


def gone(member: Member, row: dict[str, Any]) -> AttentionItem:
    return AttentionItem(
        kind=AttentionKind.MEMBER_GONE,
        subject=member_subject(member),
        detail=f"{row['url']}: {row['last_error'] or 'HTTP 410'} (gone); "
        "it is not polled any more",
        advice=f"ask the member about their feed; `kairan members resume "
        f"{member.id}` once it is back, or `kairan members remove {member.id}`",
        since=from_db(row["last_polled_at"]),
    )


def moved(member: Member, row: dict[str, Any]) -> AttentionItem:
    return AttentionItem(
        kind=AttentionKind.MEMBER_MOVED,
        subject=member_subject(member),
        detail=f"{row['moved_from']} moved permanently to {row['url']}",
        # there is no `members update`: the feed URL is edited in config.toml
        advice=f'set feed = "{row["url"]}" for member {member.id} in config.toml; '
        "polls follow the move meanwhile",
        since=from_db(row["moved_at"]),
    )


# --- subscribers -----------------------------------------------------------------


def subscriber_items(db: sqlite_utils.Database) -> list[AttentionItem]:
    rows = dict_rows(
        db.execute(
            """SELECT id, kind, address, state, state_reason, state_changed_at,
                      hard_bounces FROM subscribers
               WHERE (kind = 'webhook' AND state = 'disabled')
                  OR (kind = 'email' AND state = 'bouncing')
               ORDER BY id"""
        )
    )
    return [
        disabled(row) if row["kind"] == "webhook" else bouncing(row) for row in rows
    ]


def disabled(row: dict[str, Any]) -> AttentionItem:
    sid = row["id"]
    return AttentionItem(
        kind=AttentionKind.WEBHOOK_DISABLED,
        subject=f"{sid} ({row['address']})",
        detail=f"endpoint disabled: {row['state_reason'] or 'no reason recorded'}",
        advice=f"check the endpoint with its owner (`kairan subscribers test {sid}`); "
        f"`kairan subscribers enable {sid}` once it works, or `kairan subscribers "
        f"remove {sid}`",
        since=from_db(row["state_changed_at"]),
    )


def bouncing(row: dict[str, Any]) -> AttentionItem:
    sid = row["id"]
    return AttentionItem(
        kind=AttentionKind.SUBSCRIBER_BOUNCING,
        subject=f"{sid} ({row['address']})",
        detail=f"{row['hard_bounces']} hard bounces, no longer mailed; last: "
        f"{row['state_reason'] or 'no reason recorded'}",
        advice=f"check the address; `kairan subscribers resume {sid}` once it "
        f"accepts mail, or `kairan subscribers remove {sid}`",
        since=from_db(row["state_changed_at"]),
    )


# --- deliveries ------------------------------------------------------------------


def delivery_items(
    db: sqlite_utils.Database, cutoff: str | None
) -> list[AttentionItem]:
    """Failed deliveries per channel since `cutoff`: count, first, newest error.

    A failed row keeps the due time of its last attempt, so due_at is when it
    failed, give or take one send. Rows of bouncing or disabled subscribers are
    left out (their own item covers them), and of unsubscribed ones (no longer
    wanted): retrying those cannot help.
    """
    rows = db.execute(
        """SELECT channel, n, first_due, last_error FROM (
               SELECT d.channel, d.last_error,
                   count(*) OVER (PARTITION BY d.channel) AS n,
                   min(d.due_at) OVER (PARTITION BY d.channel) AS first_due,
                   row_number() OVER (PARTITION BY d.channel
                       ORDER BY d.due_at DESC, d.id DESC) AS newest
               FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
               WHERE d.state = 'failed' AND d.due_at >= ?
                 AND s.state NOT IN ('bouncing', 'disabled', 'unsubscribed'))
           WHERE newest = 1 ORDER BY channel""",
        [cutoff],
    ).fetchall()
    return [
        AttentionItem(
            kind=AttentionKind.DELIVERIES_FAILING,
            subject=channel,
            detail=f"{count} {'delivery' if count == 1 else 'deliveries'} failed "
            f"in the last {WINDOW.days} days; newest error: {error or 'unknown'}",
            advice="`kairan deliveries list --state failed` shows them; fix the "
            "cause, then `kairan deliveries retry --failed`",
            since=from_db(first),
        )
        for channel, count, first, error in rows
    ]
