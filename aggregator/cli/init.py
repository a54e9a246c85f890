"""`kairan init`: config.toml, data/ and the database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aggregator import config
from aggregator.cli.context import state
from aggregator.db import open_database
from aggregator.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(metavar="[DIR]", help="Where to create it (default: .).")
    ] = Path("."),
) -> None:
    """Create config.toml (unless it exists), data/ and the database."""
    cli_path = state(ctx).config_path
    path = Path(cli_path) if cli_path else directory / "config.toml"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            typer.echo(f"{path} exists; keeping it")
        else:
            path.write_text(config.INIT_TEMPLATE, encoding="utf-8")
            typer.echo(f"wrote {path}")
    except OSError as e:
        raise UsageError(f"{path}: cannot write: {e.strerror}") from None
    settings = config.load_settings(path)
    open_database(settings.database_path).close()
    typer.echo(f"database ready at {settings.database_path}")
    typer.echo(f"next: add members with `kairan --config {path} members add URL ...`")
