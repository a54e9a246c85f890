"""The `kairan` command line: global options, error handling, sub-commands.

The CLI is one of the isolation boundaries: a `KairanError` becomes one line on
stderr and a non-zero exit (2 for config and usage errors); any other exception
becomes one line and exit 1. Lines that the operator may not be able to act on
alone ask for ``--debug``, which prints the traceback before the same line and
exit code.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from aggregator import __version__
from aggregator.cli import (
    db,
    deliveries,
    demo,
    digest,
    entries,
    init,
    members,
    poll,
    publish,
    run,
    serve,
    subscriber_csv,
    subscribers,
    webhooks,
)
from aggregator.cli.context import CliState
from aggregator.errors import KairanError

DEBUG_HINT = "(rerun with --debug for the traceback)"


class KairanGroup(TyperGroup):
    # typer vendors click and keeps its Context class private: hence Any.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except BrokenPipeError:
            # `kairan … | head`: the reader left. Stop quietly, as cat does; point
            # stdout at /dev/null so the interpreter's final flush cannot fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except KairanError as e:
            # A config or usage error (exit 2) is fixed by the operator from the
            # message alone; anything else (the database, the disk) may need more.
            fail(ctx, e, f"error: {e}", e.exit_code, hint=e.exit_code != 2)
        except Exception as e:
            fail(ctx, e, f"internal error: {type(e).__name__}: {e}", 1, hint=True)


def fail(
    ctx: Any, error: Exception, message: str, code: int, *, hint: bool
) -> NoReturn:
    """One line on stderr and the exit code; --debug puts the traceback first
    (the exit code stays the same, so scripts behave alike with and without it)."""
    debug = debug_requested(ctx)
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    suffix = f" {DEBUG_HINT}" if hint and not debug else ""
    typer.echo(f"kairan: {message}{suffix}", err=True)
    raise typer.Exit(code) from None


def debug_requested(ctx: Any) -> bool:
    state = ctx.obj
    return isinstance(state, CliState) and state.debug


app = typer.Typer(
    cls=KairanGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Kairan: poll the members' feeds, store every article once, tell followers.",
)


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"kairan {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="config.toml to use (default: $KAIRAN_CONFIG, else ./config.toml).",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=version_callback,
            is_eager=True,
            help="Show the version.",
        ),
    ] = False,
) -> None:
    ctx.obj = CliState(config_path=config, debug=debug)


init.register(app)
poll.register(app)
app.add_typer(members.app, name="members")
app.add_typer(entries.app, name="entries")
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(db.app, name="db")
subscriber_csv.register(subscribers.app)
webhooks.register(subscribers.app)
app.add_typer(deliveries.app, name="deliveries")
deliveries.register(app)
app.add_typer(digest.app, name="digest")
demo.register(app)
serve.register(app)
run.register(app)
publish.register(app)


def main() -> None:
    app(prog_name="kairan")
    sys.exit(0)
