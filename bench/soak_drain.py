"""The soak's looks into the daemon's database: members polled, deliveries still owed.

The count must compare like with like: when the last burst's minute is over,
some of its articles may not be polled yet and some mail not sent. So the
driver keeps the daemon running until it owes nothing the run should have sent
(`owed`), bounded, and only then stops it and counts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime
from pathlib import Path

from aggregator.timefmt import to_db


def _read(database: Path, sql: str, *params: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def polled_members(database: Path) -> int:
    try:
        rows = _read(
            database, "SELECT count(*) FROM members WHERE last_success_at IS NOT NULL"
        )
    except sqlite3.Error:
        return 0
    return int(str(rows[0][0]))


def owed(database: Path, urls: Collection[str], end: datetime) -> dict[str, int]:
    """What the daemon still owes the run: articles not stored yet (their rows
    are enqueued in the same transaction), immediate rows not sent, and digest
    rows due by the run's ``end`` not sent. Empty when nothing is."""
    stored = {str(link) for (link,) in _read(database, "SELECT link FROM entries")}
    unsent = _read(
        database,
        """SELECT s.cadence, count(*) FROM deliveries d
           JOIN subscribers s ON s.id = d.subscriber_id
           WHERE d.state != 'sent' AND (s.cadence = 'immediate' OR d.due_at <= ?)
           GROUP BY s.cadence""",
        to_db(end),
    )
    found = {f"{cadence} unsent": int(str(n)) for cadence, n in unsent}
    unstored = sum(1 for url in urls if url not in stored)
    if unstored:
        found["articles not stored"] = unstored
    return found
