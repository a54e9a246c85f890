"""Daily housekeeping: prune old rows, rotate backups, PRAGMA optimize, checkpoint."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlite_utils

from aggregator import backup, logs
from aggregator.db import open_database, unit_of_work
from aggregator.settings import Settings
from aggregator.timefmt import to_db

log = logs.get("housekeeping")


@dataclass(frozen=True, slots=True)
class Pruned:
    deliveries: int
    batches: int
    fetch_log: int
    secrets: int


@dataclass(frozen=True, slots=True)
class HousekeepingReport:
    pruned: Pruned
    backup: Path | None


def prune(db: sqlite_utils.Database, settings: Settings, now: datetime) -> Pruned:
    """Delete finished deliveries and poll history older than `[retention]`.

    Only finished rows go (sent, failed, cancelled): nothing that may still be
    sent. An article is enqueued once, when it is first stored, so a pruned
    row never brings its delivery back.
    """
    done_before = to_db(now - timedelta(seconds=settings.retention.deliveries))
    polled_before = to_db(now - timedelta(seconds=settings.retention.fetch_log))
    deliveries = db.execute(
        """DELETE FROM deliveries
           WHERE state IN ('sent', 'failed', 'cancelled')
             AND coalesce(sent_at, due_at) < ?""",
        [done_before],
    ).rowcount
    batches = db.execute(
        """DELETE FROM batches WHERE created_at < ? AND NOT EXISTS
               (SELECT 1 FROM deliveries d WHERE d.batch_id = batches.id)""",
        [done_before],
    ).rowcount
    fetch_log = db.execute(
        "DELETE FROM fetch_log WHERE started_at < ?", [polled_before]
    ).rowcount
    secrets = db.execute(
        "DELETE FROM webhook_secrets WHERE expires_at <= ?", [to_db(now)]
    ).rowcount
    return Pruned(deliveries, batches, fetch_log, secrets)


def run(settings: Settings, now: datetime) -> HousekeepingReport:
    """The whole job, on a connection of its own (the daemon runs it in a thread)."""
    with closing(open_database(settings.database_path, create=False)) as db:
        with unit_of_work(db):
            pruned = prune(db, settings, now)
        copy = None
        if settings.retention.backups > 0:
            result = backup.rotate(
                backup.default_backup_dir(settings),
                db,
                now,
                settings.retention.backups,
            )
            copy = result.path
        db.execute("PRAGMA optimize")
        # The daily TRUNCATE: the WAL file shrinks back instead of staying at its
        # high-water mark (automatic checkpoints only reuse it).
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    log.info(
        "housekeeping.done",
        extra=logs.fields(
            deliveries=pruned.deliveries,
            batches=pruned.batches,
            fetch_log=pruned.fetch_log,
            secrets=pruned.secrets,
            backup=str(copy or ""),
        ),
    )
    return HousekeepingReport(pruned, copy)
