"""`kairan members …`: config.toml's [[members]], edited in place, plus their state."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from aggregator import config_edit, opml, store
from aggregator.cli.context import (
    open_runtime,
    plural,
    print_json,
    print_table,
    state,
)
from aggregator.clock import SystemClock
from aggregator.db import unit_of_work
from aggregator.errors import FeedError, UsageError
from aggregator.models import Member
from aggregator.probe import probe_feed
from aggregator.settings import Settings

app = typer.Typer(no_args_is_help=True, help="List and manage members (config.toml).")
JSON = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def config_path(ctx: typer.Context) -> Path:
    return state(ctx).settings().path


def member_json(member: Member) -> dict[str, Any]:
    return {
        "id": member.id,
        "name": member.name,
        "feed": member.feed,
        "site": member.site,
        "prefecture": member.prefecture,
        "tags": list(member.tags),
        "paused": member.paused,
    }


@app.command("list")
def list_members(ctx: typer.Context, as_json: JSON = False) -> None:
    """The configured members with their fetch state."""
    with open_runtime(ctx) as rt:
        states = store.feed_states(rt.db)
        members = rt.settings.members
    docs = [
        member_json(m)
        | {
            "state": "paused" if m.paused else states[m.id].state.value,
            "url": states[m.id].url,
        }
        for m in members
    ]
    if as_json:
        print_json(docs)
        return
    print_table(
        ["id", "name", "prefecture", "state", "feed"],
        [(d["id"], d["name"], d["prefecture"], d["state"], d["url"]) for d in docs],
    )


@app.command("add")
def add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="The member's feed URL.")],
    member_id: Annotated[str, typer.Option("--id", help="A slug: a-z, 0-9, -.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")],
    prefecture: Annotated[str | None, typer.Option("--prefecture")] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="The member's home page.")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="A tag (repeatable).")
    ] = None,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Do not fetch the feed first.")
    ] = False,
) -> None:
    """Add a member to config.toml (after fetching and parsing its feed once)."""
    settings = state(ctx).settings()
    member = Member(
        id=member_id,
        name=name,
        feed=url,
        site=site,
        prefecture=prefecture,
        tags=tuple(tags or ()),
    )
    # before any request: a taken id or feed, or a bad value, is refused unfetched
    config_edit.add_member(settings.path, member, dry_run=True)
    if not no_check:
        check_feed(settings, member)
    config_edit.add_member(settings.path, member)
    typer.echo(f"added member {member_id} to {settings.path}")


def check_feed(settings: Settings, member: Member) -> None:
    """Fetch and parse the feed once; what is not a feed is refused with the reason."""
    try:
        feed = asyncio.run(probe_feed(settings, member.id, member.feed, SystemClock()))
    except FeedError as e:
        raise UsageError(
            f"{member.feed}: not added: {e.problem} ({e.error_class})"
        ) from None
    typer.echo(
        f"{member.feed}: {feed.format} feed, {plural(len(feed.entries), 'item')}"
    )


@app.command("remove")
def remove(
    ctx: typer.Context, member_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Remove a member from config.toml (its stored articles are kept)."""
    path = config_path(ctx)
    config_edit.remove_member(path, member_id)
    typer.echo(f"removed member {member_id} from {path}")


@app.command("pause")
def pause(
    ctx: typer.Context, member_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Stop polling a member (paused = true in config.toml)."""
    path = config_path(ctx)
    config_edit.set_paused(path, member_id, True)
    typer.echo(f"paused member {member_id}")


@app.command("resume")
def resume(
    ctx: typer.Context, member_id: Annotated[str, typer.Argument(metavar="ID")]
) -> None:
    """Poll a paused or gone (410) member again, from the next cycle."""
    settings = state(ctx).settings()
    member = settings.member(member_id)
    if member is None:
        raise UsageError(f'no member with id "{member_id}"')
    if member.paused:
        config_edit.set_paused(settings.path, member_id, False)
    with open_runtime(ctx) as rt, unit_of_work(rt.db):
        store.resume_member(rt.db, member_id)
    typer.echo(f"resumed member {member_id}")


@app.command("import-opml")
def import_opml(
    ctx: typer.Context, file: Annotated[Path, typer.Argument(metavar="FILE")]
) -> None:
    """Add every feed of an OPML file that is not a member yet."""
    settings = state(ctx).settings()
    try:
        data = file.read_bytes()
    except OSError as e:
        raise UsageError(f"{file}: cannot read: {e.strerror}") from None
    taken = {m.id for m in settings.members}
    members = opml.parse_opml(data, str(file), taken)
    # import_members skips the feeds that are members already
    added = config_edit.import_members(settings.path, members)
    typer.echo(
        f"imported {plural(len(added), 'member')}: {', '.join(added) or 'none new'}"
    )


@app.command("export-opml")
def export_opml(ctx: typer.Context) -> None:
    """Print the members as OPML 2.0."""
    settings = state(ctx).settings()
    typer.echo(
        opml.build_opml(settings.site.title, settings.members).decode(), nl=False
    )
