"""`kairan demo`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from aggregator import logs
from aggregator.cli.context import state
from aggregator.cli.serve import serve_until_signalled
from aggregator.demo import run_demo
from aggregator.runtime import Runtime
from aggregator.server import Server, build_app


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Keep the data here (default: a temp dir)."),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Then serve the portal and the mail's links until Ctrl+C."
        ),
    ] = False,
) -> None:
    """Run the pipeline offline against local sample feeds and an SMTP sink."""
    logs.setup("debug" if state(ctx).debug else "warning")
    run_demo(typer.echo, data_dir, serve_portal if serve else None)


def serve_portal(rt: Runtime) -> None:
    port = urlsplit(rt.settings.site.base_url).port or 80
    asyncio.run(serve_until_signalled(Server(build_app(rt), "127.0.0.1", port)))
