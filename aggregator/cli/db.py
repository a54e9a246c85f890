"""`kairan db backup PATH` and `kairan db check`: the database's care while it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aggregator import backup as backups
from aggregator.cli.context import quiet_logs, state
from aggregator.db import open_database
from aggregator.errors import UsageError

app = typer.Typer(no_args_is_help=True, help="Back up and check the database.")


@app.command("backup")
def backup(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Where to write the copy.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace PATH if it exists.")
    ] = False,
) -> None:
    """Write a consistent copy of the database to PATH, safe while `kairan run` runs.

    The copy is made with SQLite's online backup API, passes PRAGMA integrity_check
    before it gets its name, and is one file. To restore it, stop kairan, delete
    the database's -wal and -shm files and copy the backup over the database.
    """
    if path.exists() and not force:
        raise UsageError(f"{path}: already exists; add --force to replace it")
    quiet_logs(ctx)
    # create=False: backing up a database that does not exist yet is a mistake.
    db = open_database(state(ctx).settings().database_path, create=False)
    try:
        result = backups.backup(db, path)
    finally:
        db.close()
    typer.echo(f"{result.path}: {result.bytes:,} bytes in {result.seconds:.2f} s")


@app.command("check")
def check(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(help="Check this file (a backup) instead of the database."),
    ] = None,
) -> None:
    """PRAGMA integrity_check, foreign_key_check and Kairan's application_id.

    Prints "ok", or one line per problem and exits 1. The file is opened
    read-only and is not migrated, so a check changes nothing.
    """
    target = path if path is not None else state(ctx).settings().database_path
    problems = backups.check(target)
    if not problems:
        typer.echo("ok")
        return
    for problem in problems:
        typer.echo(problem)
    raise typer.Exit(1)
