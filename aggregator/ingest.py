"""The unit of work for one polled feed: one transaction = entries + outbox + state.

Only entries that are new or edited are sanitised (`normalize.finish`): an
unchanged entry costs a key lookup, so a poll's cost follows what changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

import sqlite_utils

from aggregator import dedup, normalize, outbox, store
from aggregator.audience import AudienceCache
from aggregator.db import unit_of_work
from aggregator.models import Candidate, EntryStatus, Member, Verdict
from aggregator.store import FetchOutcome
from aggregator.timefmt import to_db


@dataclass(frozen=True, slots=True)
class PollRecord:
    """One poll of one member as the fetch log keeps it."""

    outcome: FetchOutcome
    started_at: datetime
    kind: str  # "ok", "not_modified", "unchanged" (same body) or "error"
    status: int | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class IngestReport:
    new: tuple[int, ...] = ()  # entry ids
    edited: tuple[int, ...] = ()
    unchanged: int = 0
    tombstoned: int = 0
    baseline: tuple[int, ...] = field(default=())
    deliveries: int = 0  # outbox rows enqueued for the new entries


@dataclass(frozen=True, slots=True)
class FeedContext:
    """What ingest needs to know besides the candidates."""

    member: Member
    members: Mapping[str, Member]  # every configured member, by id (for credit)
    feed_url: str
    baseline_done: bool
    notify_backlog: bool
    default_tz: tzinfo
    audience: AudienceCache | None = None  # the poller's, kept across feeds


def record_poll(
    db: sqlite_utils.Database, record: PollRecord, report: IngestReport | None = None
) -> None:
    report = report or IngestReport()
    store.record_outcome(db, record.outcome)
    store.log_fetch(
        db,
        {
            "member_id": record.outcome.member_id,
            "started_at": to_db(record.started_at),
            "outcome": record.kind,
            "url": record.outcome.url,
            "status": record.status,
            "error_class": record.outcome.error_class,
            "error": record.outcome.error,
            "duration_ms": record.duration_ms,
            "new_count": len(report.new) + len(report.baseline),
            "edited_count": len(report.edited),
            "unchanged_count": report.unchanged,
        },
    )


def save_poll(db: sqlite_utils.Database, record: PollRecord) -> None:
    """A poll that stored no entries (304, unchanged body, failure): one transaction."""
    with unit_of_work(db):
        record_poll(db, record)


def ingest(
    db: sqlite_utils.Database,
    context: FeedContext,
    candidates: Sequence[Candidate],
    record: PollRecord,
) -> IngestReport:
    """Store a parsed feed's entries and the poll's outcome in one transaction."""
    now = record.outcome.now
    with unit_of_work(db):
        all_keys = sorted({key for c in candidates for key in c.keys})
        owners = store.lookup_keys(db, all_keys)
        dead = store.tombstoned(db, all_keys)
        new: list[int] = []
        edited: list[int] = []
        baseline: list[int] = []
        announce: list[outbox.NewArticle] = []
        unchanged = tombstoned = 0
        status = dedup.initial_status(context.baseline_done, context.notify_backlog)
        for candidate in candidates:
            entry_id = next((owners[k] for k in candidate.keys if k in owners), None)
            known = (
                store.known(db, entry_id, context.member.id)
                if entry_id is not None
                else None
            )
            verdict = dedup.classify(
                candidate, known, any(k in dead for k in candidate.keys)
            )
            if verdict is Verdict.TOMBSTONED:
                tombstoned += 1
                continue
            if verdict is Verdict.NEW or known is None:
                article = normalize.finish(candidate, context.default_tz, now)
                entry_id = store.insert_entry(
                    db, article, context.member.id, status, now
                )
                owners.update(dict.fromkeys(candidate.keys, entry_id))
                if status is EntryStatus.BASELINE:
                    baseline.append(entry_id)
                else:
                    new.append(entry_id)
                    announce.append(
                        outbox.NewArticle(entry_id, context.member, article)
                    )
            elif verdict is Verdict.EDITED:
                entry_id = known.entry_id
                article = normalize.finish(candidate, context.default_tz, now)
                store.update_entry(db, entry_id, article, now)
                edited.append(entry_id)
            else:
                entry_id = known.entry_id
                store.add_keys(db, entry_id, candidate.keys)
                recredit(db, context, known, candidate)
                unchanged += 1
            store.record_sighting(
                db,
                entry_id,
                context.member.id,
                context.feed_url,
                candidate.content_hash,
                now,
            )
        report = IngestReport(
            deliveries=outbox.enqueue_articles(db, announce, now, context.audience),
            new=tuple(new),
            edited=tuple(edited),
            unchanged=unchanged,
            tombstoned=tombstoned,
            baseline=tuple(baseline),
        )
        record_poll(db, record, report)
        if not context.baseline_done:
            store.mark_baseline_done(db, context.member.id)
    return report


def recredit(
    db: sqlite_utils.Database,
    context: FeedContext,
    known: dedup.Known,
    candidate: Candidate,
) -> None:
    """Credit the article to its publisher, not the magazine that repeats it."""
    if known.member_id == context.member.id:
        return
    current = context.members.get(known.member_id)
    chosen = (
        context.member
        if current is None
        else dedup.credit(current, context.member, candidate.entry.link)
    )
    if chosen.id != known.member_id:
        store.set_credit(db, known.entry_id, chosen.id)
