"""`kairan run`: the daemon (scheduler, delivery, publishing, HTTP) until SIGTERM."""

from __future__ import annotations

import typer

from aggregator.cli.context import state
from aggregator.daemon import Daemon


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(ctx: typer.Context) -> None:
    """Run the daemon: poll, deliver, publish, serve HTTP; SIGHUP reloads config.toml.

    SIGTERM or Ctrl+C stops it within 10 s (exit 0). One daemon per database:
    a second `kairan run` exits at once with the holder's pid.
    """
    settings = state(ctx).settings()
    Daemon(settings.path, settings).run()
