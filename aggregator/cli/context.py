"""What every command shares: the global options, settings, runtime, output."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Annotated, Any

import typer

from aggregator import logs, runtime
from aggregator.runtime import Runtime
from aggregator.settings import Settings


@dataclass
class CliState:
    config_path: str | None = None
    debug: bool = False
    cached: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self.cached is None:
            self.cached = runtime.load(self.config_path)
            logs.setup(
                "debug" if self.debug else self.cached.log.level,
                self.cached.log.format,
            )
        return self.cached


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):  # invoked without the root callback
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


@contextmanager
def open_runtime(ctx: typer.Context, *, create: bool = True) -> Iterator[Runtime]:
    with runtime.open_runtime(state(ctx).settings(), create=create) as rt:
        yield rt


def quiet_logs(ctx: typer.Context) -> None:
    """Commands that print their own summary keep routine log lines off the terminal
    (unless --debug asked for them).

    Loading the settings sets the configured log level, so they are loaded first:
    the level set here must come after, or it would be overwritten.
    """
    cli = state(ctx)
    cli.settings()
    logger = logging.getLogger(logs.LOGGER_NAME)
    if not cli.debug and logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)


def plural(n: int, noun: str, many: str | None = None) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {many or noun + 's'}"


JSON = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned table (East Asian wide characters count double)."""
    cells = [[str(h) for h in headers]] + [
        ["" if v is None else str(v) for v in row] for row in rows
    ]
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        typer.echo(
            "  ".join(
                cell + " " * (widths[i] - display_width(cell))
                for i, cell in enumerate(row)
            ).rstrip()
        )


def display_width(text: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def local_time(value: datetime | None, tz: tzinfo, missing: str = "-") -> str:
    """A stored UTC time as the operator reads it: minutes, in the site's zone."""
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M") if value else missing
