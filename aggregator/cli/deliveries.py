"""`kairan deliveries …` (the outbox) and `kairan deliver` (one delivery pass now)."""

from __future__ import annotations

import asyncio
from datetime import tzinfo
from typing import Annotated, Any

import typer

from aggregator import outbox_view, subscribers
from aggregator.cli.context import (
    JSON,
    local_time,
    open_runtime,
    plural,
    print_json,
    print_table,
    quiet_logs,
)
from aggregator.db import unit_of_work
from aggregator.deliver import DeliveryReport, SendResult
from aggregator.errors import UsageError
from aggregator.runtime import Runtime
from aggregator.timefmt import to_db

app = typer.Typer(
    no_args_is_help=True, help="The outbox: what is due, sent, failed; retry."
)
SubscriberOption = Annotated[
    str | None,
    typer.Option("--subscriber", metavar="ID|EMAIL", help="Only this subscriber."),
]
DELIVERIES = ("delivery", "deliveries")


def register(root: typer.Typer) -> None:
    root.command("deliver")(deliver)


def subscriber_id(rt: Runtime, who: str | None) -> int | None:
    return None if who is None else subscribers.find(rt.db, who).id


# --- deliveries list ---------------------------------------------------------------


def delivery_doc(d: outbox_view.DeliveryRow) -> dict[str, Any]:
    return {
        "id": d.id,
        "subscriber_id": d.subscriber_id,
        "address": d.address,
        "channel": d.channel,
        "kind": "article" if d.entry_id is not None else "confirmation",
        "entry_id": d.entry_id,
        "title": d.title,
        "state": d.state,
        "due_at": to_db(d.due_at),
        "attempts": d.attempts,
        "last_error": d.last_error,
        "message_id": d.message_id,
        "sent_at": to_db(d.sent_at),
    }


def state_name(text: str) -> str:
    name = text.strip().lower()
    if name not in outbox_view.DELIVERY_STATES:
        known = ", ".join(outbox_view.DELIVERY_STATES)
        raise UsageError(f"--state: must be one of {known}, got {text!r}")
    return name


@app.command("list")
def list_deliveries(
    ctx: typer.Context,
    states: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            metavar="S",
            help="Only this state (repeatable): pending, sending, retry, sent, "
            "failed, cancelled.",
        ),
    ] = None,
    subscriber: SubscriberOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N.")] = 50,
    as_json: JSON = False,
) -> None:
    """Deliveries, newest first: one per article (or confirmation) and subscriber."""
    wanted = [state_name(s) for s in states or ()]
    with open_runtime(ctx) as rt:
        rows = outbox_view.list_deliveries(
            rt.db, wanted, subscriber_id(rt, subscriber), limit
        )
        tz = rt.settings.site.tz
    if as_json:
        print_json([delivery_doc(d) for d in rows])
        return
    if not rows:
        typer.echo("no deliveries")
        return
    print_table(
        ["id", "state", "due", "tries", "to", "article", "note"],
        [
            (
                d.id,
                d.state,
                local_time(d.due_at, tz),
                d.attempts,
                d.address,
                "(confirmation)" if d.entry_id is None else d.title,
                d.last_error
                or (f"sent {local_time(d.sent_at, tz)}" if d.sent_at else ""),
            )
            for d in rows
        ],
    )
    typer.echo(f"times in {tz.key}")


# --- deliveries retry --------------------------------------------------------------


@app.command("retry")
def retry(
    ctx: typer.Context,
    ids: Annotated[
        list[int] | None, typer.Argument(metavar="[ID]...", show_default=False)
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed delivery.")
    ] = False,
    who: SubscriberOption = None,
) -> None:
    """Make deliveries due now: failed ones, or ones waiting to be retried."""
    if not ids and not failed:
        raise UsageError("give delivery ids or --failed")
    if ids and failed:
        raise UsageError("give delivery ids or --failed, not both")
    if who is not None and not failed:
        raise UsageError("--subscriber goes with --failed")
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        chosen = (
            outbox_view.failed_ids(rt.db, subscriber_id(rt, who))
            if failed
            else ids or []
        )
        changed = outbox_view.retry_now(rt.db, chosen, rt.clock.now())
    if not changed:
        typer.echo("no failed deliveries")
        return
    typer.echo(
        f"{plural(changed, *DELIVERIES)} due again now; the next `kairan deliver` "
        "(or the daemon) sends them"
    )


# --- deliver -----------------------------------------------------------------------


def deliver(
    ctx: typer.Context,
    channel: Annotated[
        str | None,
        typer.Option(
            "--channel",
            metavar="email|webhook",
            help="Only this channel (default: all).",
        ),
    ] = None,
    subscriber: SubscriberOption = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what is due; send and change nothing."),
    ] = False,
    as_json: JSON = False,
) -> None:
    """Run one delivery pass now over everything that is due.

    Prints each message with its outcome: sent, retry (when), failed (why).
    Exits 0 when the pass ran, even if some messages failed: their outcomes
    are recorded in the outbox (`kairan deliveries list --state failed`).
    """
    quiet_logs(ctx)
    with open_runtime(ctx) as rt:
        report = asyncio.run(
            run_pass(rt, channel, subscriber_id(rt, subscriber), dry_run)
        )
        tz = rt.settings.site.tz
    if as_json:
        print_json([result_doc(r) for r in report.results])
        return
    for result in report.results:
        typer.echo(result_line(result, tz))
    typer.echo(summary(report, dry_run, tz))


async def run_pass(
    rt: Runtime, channel: str | None, who: int | None, dry_run: bool
) -> DeliveryReport:
    async with rt.delivery_pass() as delivery:  # connects only when sending
        return await delivery.run(channel=channel, subscriber_id=who, dry_run=dry_run)


def result_doc(r: SendResult) -> dict[str, Any]:
    return {
        "batch_id": r.batch_id,
        "subscriber_id": r.subscriber_id,
        "address": r.address,
        "channel": r.channel,
        "kind": r.kind,
        "articles": r.articles,
        "outcome": r.outcome,
        "error": r.error,
        "retry_at": to_db(r.retry_at),
    }


def what(r: SendResult) -> str:
    if r.kind == "confirm":
        return "confirmation"
    label = {"daily": "daily digest", "weekly": "weekly digest"}.get(r.kind, r.kind)
    return f"{label}, {plural(r.articles, 'article')}"


def result_line(r: SendResult, tz: tzinfo) -> str:
    if r.outcome == "retry":
        outcome = f"retry at {local_time(r.retry_at, tz)}: {r.error}"
    elif r.outcome == "failed":
        outcome = f"failed: {r.error}"
    elif r.outcome == "due":
        outcome = "due (dry run)"
    else:
        outcome = r.outcome
    return f"subscriber {r.subscriber_id} {r.address}: {what(r)}: {outcome}"


def summary(report: DeliveryReport, dry_run: bool, tz: tzinfo) -> str:
    total = plural(len(report.results), "message")
    if not report.results:
        return "nothing is due"
    if dry_run:
        return f"dry run: {total} due; nothing was sent"
    line = (
        f"{total}: {report.count('sent')} sent, {report.count('retry')} to retry, "
        f"{report.count('failed')} failed"
    )
    return line + (f" (times in {tz})" if report.count("retry") else "")
