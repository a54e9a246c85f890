"""`kairan demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aggregator import logs
from aggregator.cli.context import state
from aggregator.demo import run_demo


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Keep the data here (default: a temp dir)."),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Exit after the story instead of serving until Ctrl+C."
        ),
    ] = False,
) -> None:
    """The daemon offline: sample feeds, an SMTP sink, a webhook receiver, the portal.

    Tells the story of one new article (e-mail, webhook, portal), then keeps
    serving the portal and the mail's links until Ctrl+C (or, with --once, exits).
    """
    # Warnings about the sandbox itself (an old SQLite) would only distract.
    logs.setup("debug" if state(ctx).debug else "error")
    run_demo(typer.echo, data_dir, once=once)
