"""`kairan serve`: the HTTP server alone (unsubscribe, confirm, subscribe, health)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from aggregator.cli.context import open_runtime, state
from aggregator.server import Server, build_app


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option(
            "--host", metavar="H", help="Address to listen on (default: server.host)."
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            metavar="P",
            min=0,
            max=65535,
            help="Port to listen on, 0 for any free one (default: server.port).",
        ),
    ] = None,
) -> None:
    """Run the HTTP server alone (unsubscribe, confirm, subscribe, health),
    without polling or delivering, until Ctrl+C or SIGTERM."""
    configured = state(ctx).settings().server
    with open_runtime(ctx) as rt:
        server = Server(
            build_app(rt),
            configured.host if host is None else host,
            configured.port if port is None else port,
        )
        typer.echo(f"serving {server.url} (Ctrl+C stops)", err=True)
        asyncio.run(serve_until_signalled(server))


async def serve_until_signalled(server: Server) -> None:
    """SIGINT and SIGTERM stop the server cleanly; the command then exits 0."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, server.stop)
    try:
        await server.serve()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
