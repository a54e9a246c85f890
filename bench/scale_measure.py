"""The scale benchmark's measured steps: each timed on its own, its SQL recorded.

Every step runs in the bench's own process against the real functions. The
statements a step runs are recorded with sqlite3's trace callback (bound
values expanded), so a slow step can show its EXPLAIN QUERY PLAN.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import sqlite_utils

from aggregator import audience, metrics, outbox, outbox_view
from aggregator.cli.poll import status_doc
from aggregator.poller import CycleReport
from aggregator.runtime import Runtime
from aggregator.store import placeholders
from bench.child import own_peak_rss_kb
from bench.scale_setup import new_articles, rolled_back

T = TypeVar("T")
PLAN_STATEMENTS = 4  # distinct statements shown per slow step
ONE_ARTICLE_SAMPLES = 2  # single-article enqueues timed (as ingest calls it)


@dataclass
class Step:
    """One measured step: its time, the target it must meet, its SQL."""

    name: str
    seconds: float
    target: float | None = None  # seconds; None: reported only
    note: str = ""
    rss_kb: int = 0  # this process's peak RSS after the step
    statements: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.seconds <= self.target

    def row(self) -> dict[str, object]:
        return {
            "step": self.name,
            "seconds": round(self.seconds, 4),
            "target_s": self.target,
            "met": self.met,
            "note": self.note,
            "peak_rss_mb": round(self.rss_kb / 1024, 1),
            "statements": len(self.statements),
        }


def measure(
    db: sqlite_utils.Database,
    name: str,
    work: Callable[[], T],
    target: float | None = None,
) -> tuple[T, Step]:
    """Run ``work`` once, timed (perf_counter), with its statements recorded."""
    statements: list[str] = []
    db.conn.set_trace_callback(statements.append)
    try:
        started = time.perf_counter()
        value = work()
        seconds = time.perf_counter() - started
    finally:
        db.conn.set_trace_callback(None)
    distinct = list(dict.fromkeys(s for s in statements if _is_query(s)))
    return value, Step(
        name, seconds, target, rss_kb=own_peak_rss_kb(), statements=distinct
    )


def _is_query(sql: str) -> bool:
    head = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
    return head in ("SELECT", "UPDATE", "INSERT", "DELETE", "WITH")


def query_plan(db: sqlite_utils.Database, sql: str) -> list[str]:
    """EXPLAIN QUERY PLAN of one recorded statement (its values inlined)."""
    rows = db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
    return [str(row[3]) for row in rows]


def plans(db: sqlite_utils.Database, step: Step) -> dict[str, list[str]]:
    return {sql[:300]: query_plan(db, sql) for sql in step.statements[:PLAN_STATEMENTS]}


# --- enqueueing ---------------------------------------------------------------------


def _drop_rows(db: sqlite_utils.Database, entry_ids: Sequence[int]) -> None:
    db.execute(
        f"DELETE FROM deliveries WHERE entry_id IN ({placeholders(len(entry_ids))})",  # noqa: S608 - placeholders only
        list(entry_ids),
    )


def enqueue_steps(rt: Runtime, cycle: CycleReport) -> tuple[list[Step], int]:
    """The cycle's articles enqueued again, each time in a rolled-back transaction.

    Their rows are deleted first (inside the transaction), so the INSERTs are
    real, not ignored duplicates. Returns the steps and the rows one enqueue of
    all of them added (it must equal what the cycle enqueued).
    """
    db, now = rt.db, rt.clock.now()
    members = {m.id: m for m in rt.settings.members}
    new_ids = sorted(i for m in cycle.members for i in m.new_ids)
    steps = []
    _, audience_step = measure(
        db,
        "audience.load (once per poller, again when subscribers change)",
        lambda: audience.load(db),
    )
    steps.append(audience_step)
    with rolled_back(db):
        items = new_articles(db, members, new_ids, keep_dates=True)
        _drop_rows(db, new_ids)
        added, step = measure(
            db,
            f"enqueue_articles, {len(items)} articles in one call",
            lambda: outbox.enqueue_articles(db, items, now),
        )
        step.note = f"{added} rows"
        steps.append(step)
    with rolled_back(db):
        sample = new_ids[:ONE_ARTICLE_SAMPLES]
        items = new_articles(db, members, sample, keep_dates=True)
        _drop_rows(db, sample)
        singles = [
            measure(db, "one", partial(outbox.enqueue_articles, db, [item], now))
            for item in items
        ]
    if singles:
        mean = sum(s.seconds for _, s in singles) / len(singles)
        rows = sum(n for n, _ in singles) // len(singles)
        step = singles[0][1]
        step.name = "enqueue_articles, 1 article (as ingest calls it per feed)"
        step.seconds = mean
        step.note = f"mean of {len(singles)}, {rows} rows each"
        steps.append(step)
    return steps, added


# --- the outbox at size ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Targets:
    """Upper bounds in seconds for the steps the brief only asks to be "fast"."""

    due: float = 1.0  # once per delivery pass and channel
    claim: float = 0.1  # per chunk: well under the time to send the chunk
    plan: float = 10.0  # a dry run of everything due, on an operator's terminal
    status: float = 0.5  # /metrics scrapes answer within QUICK_BUSY_MS-ish


async def outbox_steps(rt: Runtime, chunk: int, targets: Targets) -> list[Step]:
    """due_subscribers, one chunk's claim (rolled back), plan, the dry run, status."""
    db, now = rt.db, rt.clock.now()
    steps: list[Step] = []
    async with rt.delivery_pass() as delivery:
        due, step = measure(
            db,
            "due_subscribers (email)",
            lambda: outbox.due_subscribers(db, now, "email"),
            targets.due,
        )
        step.note = f"{len(due)} subscribers due"
        steps.append(step)
        with rolled_back(db):
            claims, step = measure(
                db,
                f"claim one chunk ({chunk} subscribers, email)",
                lambda: outbox.claim(
                    db,
                    due[:chunk],
                    now,
                    delivery.lease(),
                    delivery.message_host(),
                    "email",
                ),
                targets.claim,
            )
        step.note = (
            f"{len(claims)} messages, {sum(len(c.delivery_ids) for c in claims)} rows"
        )
        steps.append(step)
        batches, step = measure(
            db,
            "plan, every due subscriber (email)",
            lambda: outbox.plan(db, due, now, "email"),
            targets.plan,
        )
        step.note = f"{len(batches)} messages"
        steps.append(step)
        started = time.perf_counter()
        report = await delivery.run(dry_run=True)
        dry = Step(
            "DeliveryPass.run(dry_run=True), all channels",
            time.perf_counter() - started,
            targets.plan,
            note=f"{len(report.results)} messages due",
            rss_kb=own_peak_rss_kb(),
        )
        steps.append(dry)
    collector = metrics.DatabaseCollector(db, rt.clock)
    for name, work in (
        ("outbox_view.depth", lambda: outbox_view.depth(db)),
        ("metrics DatabaseCollector.collect", lambda: list(collector.collect())),
        ("kairan status (status_doc, with attention)", lambda: status_doc(rt)),
    ):
        _, step = measure(db, name, work, targets.status)
        steps.append(step)
    return steps
