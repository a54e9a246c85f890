"""`kairan poll` and `kairan status`."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

import typer

from aggregator import attention, outbox_view, store, subscribers
from aggregator.cli.context import open_runtime, print_json, print_table, quiet_logs
from aggregator.poller import CycleReport, MemberReport, select_due
from aggregator.runtime import Runtime
from aggregator.timefmt import from_db, to_db
from notifiers.operator_report import AttentionItem, headline, item_line


def register(app: typer.Typer) -> None:
    app.command("poll")(poll)
    app.command("status")(status)


def poll(
    ctx: typer.Context,
    members: Annotated[
        list[str] | None, typer.Argument(metavar="[MEMBER]...", show_default=False)
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Poll every active member now.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Poll the members that are due (named members, or all with --force, now).

    Requests stay conditional (ETag / Last-Modified). Exits 0 when the cycle ran,
    even if some members failed: their errors are in the summary and `status`.
    """
    quiet_logs(ctx)
    with open_runtime(ctx) as rt:
        report = asyncio.run(run_poll(rt, members or [], force, show_bar=not as_json))
    if as_json:
        print_json([member_json(m) for m in report.members])
        return
    print_cycle(report)


async def run_poll(
    rt: Runtime, names: list[str], force: bool, *, show_bar: bool
) -> CycleReport:
    async with rt.poller() as poller:
        if not (show_bar and sys.stderr.isatty()):
            return await poller.run_cycle(names, force=force)
        due = select_due(
            rt.settings.members,
            store.feed_states(rt.db),
            rt.clock.now(),
            names=names,
            force=force,
        )
        with typer.progressbar(
            length=len(due), label="polling", file=sys.stderr
        ) as bar:
            return await poller.run_cycle(
                names, force=force, on_member=lambda _: bar.update(1)
            )


def member_json(m: MemberReport) -> dict[str, Any]:
    return {
        "member": m.member_id,
        "status": m.kind,
        "new": m.new,
        "edited": m.edited,
        "unchanged": m.unchanged,
        "baseline": m.baseline,
        "seconds": round(m.duration, 3),
        "error": m.error,
        "error_class": m.error_class,
        "moved_to": m.moved_to,
    }


def print_cycle(report: CycleReport) -> None:
    if not report.members:
        typer.echo("no member is due; use --force or name members to poll now")
        return
    rows = [
        (
            m.member_id,
            m.kind,
            m.new + m.baseline,
            m.edited,
            m.unchanged,
            f"{m.duration:.2f}s",
            m.error or (f"moved to {m.moved_to}" if m.moved_to else ""),
        )
        for m in sorted(report.members, key=lambda m: m.member_id)
    ]
    print_table(
        ["member", "status", "new", "edited", "unchanged", "time", "note"], rows
    )
    typer.echo(
        f"{len(report.members)} polled, {len(report.failed)} failed, "
        f"{sum(m.new + m.baseline for m in report.members)} new, "
        f"{sum(m.edited for m in report.members)} edited in {report.duration:.2f}s"
    )


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Members' health, articles, subscribers, the outbox and the database."""
    with open_runtime(ctx) as rt:
        items = attention.gather(rt.db, rt.settings, rt.clock.now())
        doc = status_doc(rt, items)
        tz = rt.settings.site.tz
    if as_json:
        print_json(doc)  # times in UTC, as stored
        return

    def local(value: str | None, missing: str) -> str:
        when = from_db(value)
        return when.astimezone(tz).strftime("%Y-%m-%d %H:%M") if when else missing

    rows = [
        (
            m["id"],
            m["state"],
            local(m["last_success"], "never"),
            local(m["next_poll"], "-"),
            m["articles"],
            m["per_week"],
            m["last_error"]
            or (f"moved from {m['moved_from']}" if m["moved_from"] else ""),
        )
        for m in doc["members"]
    ]
    print_table(
        ["member", "state", "last success", "next poll", "articles", "/week", "note"],
        rows,
    )
    typer.echo(f"times in {tz.key}")
    followers = ", ".join(f"{n} {state}" for state, n in doc["subscribers"].items())
    typer.echo(f"subscribers: {followers or 'none'}")
    for row in doc["outbox"]:
        typer.echo(
            f"outbox {row['channel']} {row['state']}: {row['count']}"
            f" (oldest due {local(row['oldest_due'], '-')})"
        )
    typer.echo(
        f"database {doc['database']['path']} ({doc['database']['bytes']} bytes), "
        f"SQLite {doc['database']['sqlite_version']}, {doc['entries']} articles"
    )
    typer.echo(f"attention: {headline(len(items)) if items else 'none'}")
    for item in items:
        typer.echo(f"  {item_line(item, tz)}")


def status_doc(
    rt: Runtime, items: Sequence[AttentionItem] | None = None
) -> dict[str, Any]:
    """What `status --json` prints; `items`: what needs attention, if gathered."""
    now = rt.clock.now()
    if items is None:
        items = attention.gather(rt.db, rt.settings, now)
    weeks = 4
    states = store.feed_states(rt.db)
    counts = store.member_counts(rt.db, now - timedelta(weeks=weeks))
    members = []
    for member in rt.settings.members:
        state = states[member.id]
        count = counts.get(member.id, store.MemberCounts(0, None, 0))
        members.append(
            {
                "id": member.id,
                "name": member.name,
                "state": "paused" if member.paused else state.state.value,
                "url": state.url,
                "last_success": to_db(state.last_success_at),
                "last_polled": to_db(state.last_polled_at),
                "next_poll": to_db(state.next_poll_at),
                "failures": state.failures,
                "last_error": state.last_error,
                "last_error_class": state.last_error_class,
                "moved_from": state.moved_from,
                "moved_at": to_db(state.moved_at),
                "articles": count.articles,
                "last_article": to_db(count.last_article),
                "per_week": round(count.recent / weeks, 2),
            }
        )
    path = rt.settings.database_path
    size = sum(
        p.stat().st_size
        for p in (path, path.with_name(path.name + "-wal"))
        if p.exists()
    )
    total = rt.db.execute("SELECT count(*) FROM entries").fetchone()[0]
    return {
        "members": members,
        "entries": total,
        "subscribers": subscribers.count_by_state(rt.db),
        "outbox": [
            {
                "channel": d.channel,
                "state": d.state,
                "count": d.count,
                "oldest_due": to_db(d.oldest_due),
            }
            for d in outbox_view.depth(rt.db)
        ],
        "database": {
            "path": str(path),
            "bytes": size,
            "sqlite_version": sqlite3.sqlite_version,
        },
        "attention": [attention_json(item) for item in items],
    }


def attention_json(item: AttentionItem) -> dict[str, Any]:
    return {
        "kind": str(item.kind),
        "subject": item.subject,
        "detail": item.detail,
        "advice": item.advice,
        "since": to_db(item.since),
    }
