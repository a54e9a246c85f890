"""`kairan entries …`: what has been stored, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from aggregator import store
from aggregator.cli.context import open_runtime, print_json, print_table
from aggregator.db import unit_of_work
from aggregator.errors import UsageError
from aggregator.models import StoredEntry
from aggregator.timefmt import to_db

app = typer.Typer(no_args_is_help=True, help="List, show and remove stored articles.")


def parse_since(value: str | None, tz: Any) -> datetime | None:
    """A date or date-time; without a zone it is the site's local time."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        # from None: the message says it all; datetime's wording would repeat it
        raise UsageError(f"--since: not a date: {value!r} (use YYYY-MM-DD)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def entry_json(entry: StoredEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "member": entry.member_id,
        "title": entry.title,
        "link": entry.link,
        "published": to_db(entry.published),
        "updated": to_db(entry.updated),
        "first_seen": to_db(entry.first_seen),
        "author": entry.author,
        "thumbnail": entry.thumbnail,
        "status": entry.status.value,
        "tags": list(entry.tags),
    }


@app.command("list")
def list_entries(
    ctx: typer.Context,
    member: Annotated[
        str | None, typer.Option("--member", help="Only this member.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Published on or after (YYYY-MM-DD).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Stored articles, newest first."""
    with open_runtime(ctx) as rt:
        # a member removed from config.toml keeps its state row and its articles
        if member is not None and member not in store.feed_states(rt.db):
            raise UsageError(f'no member with id "{member}"')
        entries = store.list_entries(
            rt.db,
            member_id=member,
            since=parse_since(since, rt.settings.site.tz),
            limit=limit,
        )
        tz = rt.settings.site.tz
    if as_json:
        print_json([entry_json(e) for e in entries])
        return
    print_table(
        ["id", "member", "published", "status", "title"],
        [
            (
                e.id,
                e.member_id,
                (e.published or e.first_seen).astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                e.status.value,
                e.title,
            )
            for e in entries
        ],
    )


@app.command("show")
def show(
    ctx: typer.Context,
    entry_id: Annotated[int, typer.Argument(metavar="ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One stored article, with its identity keys and every feed that carried it."""
    with open_runtime(ctx) as rt:
        entry = store.get_entry(rt.db, entry_id)
        sightings = store.sightings_of(rt.db, entry_id)
    doc = entry_json(entry) | {
        "keys": list(entry.keys),
        "author_avatar": entry.author_avatar,
        "summary_html": entry.summary_html,
        "content_html": entry.content_html,
        "sightings": sightings,
    }
    if as_json:
        print_json(doc)
        return
    for key in (
        "id",
        "title",
        "member",
        "link",
        "published",
        "updated",
        "first_seen",
        "status",
        "author",
        "thumbnail",
    ):
        typer.echo(f"{key}: {doc[key] if doc[key] is not None else ''}")
    typer.echo("keys: " + ", ".join(entry.keys))
    for s in sightings:
        typer.echo(
            f"seen in: {s['member_id']} {s['feed_url']} "
            f"({s['first_seen']} .. {s['last_seen']})"
        )
    typer.echo("")
    typer.echo(entry.summary_html)


@app.command("remove")
def remove(
    ctx: typer.Context, entry_id: Annotated[int, typer.Argument(metavar="ID")]
) -> None:
    """Delete an article and leave a tombstone: it never comes back."""
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        entry = store.remove_entry(rt.db, entry_id, rt.clock.now())
    typer.echo(f"removed entry {entry_id} ({entry.title}); it will not be stored again")
