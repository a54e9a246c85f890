"""The `kairan` command line: global options, error handling, sub-commands.

The CLI is one of the isolation boundaries: a `KairanError` becomes one line on
stderr and a non-zero exit (2 for config and usage errors); any other exception
prints one line asking for ``--debug``, which shows the traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from aggregator import __version__
from aggregator.cli import demo, entries, init, members, poll
from aggregator.cli.context import CliState
from aggregator.errors import KairanError


class KairanGroup(TyperGroup):
    # typer vendors click and keeps its Context class private: hence Any.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KairanError as e:
            if debug_requested(ctx):
                raise
            typer.echo(f"kairan: error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as e:
            if debug_requested(ctx):
                raise
            typer.echo(
                f"kairan: internal error: {type(e).__name__}: {e} "
                "(rerun with --debug for the traceback)",
                err=True,
            )
            raise typer.Exit(1) from None


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
demo.register(app)


def main() -> None:
    app(prog_name="kairan")
    sys.exit(0)
