"""`kairan publish`: write the combined feeds, the portal and the OPML."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from aggregator.cli.context import JSON, open_runtime, plural, print_json, quiet_logs
from aggregator.publish import ping_hub
from aggregator.publish import publish as publish_all


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)


def publish(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Write here (default: data/public)."),
    ] = None,
    as_json: JSON = False,
) -> None:
    """Write feed.atom, feed.json, members.opml and the portal pages.

    Only files whose bytes changed are rewritten (atomically), so unchanged feeds
    keep their ETag and Last-Modified; files of an earlier publish that are no
    longer produced (a removed member's page) are deleted.
    """
    quiet_logs(ctx)
    with open_runtime(ctx) as rt:
        report = publish_all(rt.db, rt.settings, rt.clock.now(), out)
        hub_error = asyncio.run(ping_hub(rt.settings, report))
    if as_json:
        print_json(
            {
                "out": str(report.out_dir),
                "written": list(report.written),
                "unchanged": report.unchanged,
                "removed": list(report.removed),
                "ids_assigned": report.ids_assigned,
                "websub_error": hub_error,
            }
        )
        return
    typer.echo(
        f"published to {report.out_dir}: {plural(len(report.written), 'file')} "
        f"written, {report.unchanged} unchanged, {len(report.removed)} removed"
    )
    typer.echo(f"portal: {report.out_dir / 'index.html'}")
    if hub_error:
        typer.echo(f"warning: the WebSub hub was not told: {hub_error}", err=True)
