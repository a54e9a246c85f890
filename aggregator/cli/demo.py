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
) -> None:
    """Run the pipeline offline against local sample feeds."""
    logs.setup("debug" if state(ctx).debug else "warning")
    run_demo(typer.echo, data_dir)
