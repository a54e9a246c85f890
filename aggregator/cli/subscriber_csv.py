"""`kairan subscribers import|export`: subscribers as CSV, all-or-nothing on import.

The file is UTF-8 (a BOM, as Excel writes, is allowed) with a header row naming
its columns in any order: `email` (required), `schedule`, `hour`, `weekday`,
`timezone`, `language`, and the list columns `members`, `tags`, `keywords`
whose values are separated by ";". An empty cell takes the default, as in
`subscribers add`. `export` writes the same columns followed by the subscriber's
record (id, state, times, consent), which `import` reads back: of the record it
only heeds `state`, so that an export never turns into consent that was not
given (an unsubscribed row is skipped, a pending one stays pending).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from aggregator import subscribers
from aggregator.addresses import address_key, normalize_email
from aggregator.cli.context import JSON, open_runtime, plural, print_json
from aggregator.cli.subscriber_options import (
    SEPARATOR,
    Choice,
    Given,
    resolve,
    state_of,
)
from aggregator.cli.subscribers import (
    create,
    new_subscriber,
    pending_note,
    subscriber_doc,
)
from aggregator.db import unit_of_work
from aggregator.errors import UsageError
from aggregator.models import ConsentSource, SubscriberKind, SubscriberState
from aggregator.runtime import Runtime
from aggregator.settings import Settings

COLUMNS = (
    "email",
    "schedule",
    "hour",
    "weekday",
    "timezone",
    "language",
    "members",
    "tags",
    "keywords",
)
RECORD_COLUMNS = (
    "id",
    "state",
    "created_at",
    "confirmed_at",
    "consent_at",
    "consent_source",
    "consent_origin",
)
LIST_COLUMNS = ("members", "tags", "keywords")
EXISTING = "existing"  # a skip that is counted, not reported line by line


def register(app: typer.Typer) -> None:
    app.command("import")(import_subscribers)
    app.command("export")(export_subscribers)


def column_name(setting: str) -> str:
    return setting


# --- reading -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    line: int  # where the record starts in the file (the header is line 1)
    cells: dict[str, str]  # column → stripped text; a missing trailing cell is ""
    extra: int  # cells beyond the header's columns


def read_rows(data: bytes, name: str) -> list[Row]:
    """The data rows; a file that cannot be read as CSV at all is a UsageError."""
    reader = csv.reader(io.StringIO(decode(data, name), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise UsageError(f"{name}: empty; the first line must name the columns")
        columns = check_header(header, name)
        rows: list[Row] = []
        start = reader.line_num + 1
        for values in reader:
            line, start = start, reader.line_num + 1
            if any(v.strip() for v in values):  # blank lines are not rows
                rows.append(to_row(line, columns, values))
    except csv.Error as e:
        raise UsageError(f"{name}:{reader.line_num}: {e}") from None
    return rows


def decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UsageError(
            f"{name}:{line}: not UTF-8 (save the file as CSV UTF-8)"
        ) from None


def check_header(header: Sequence[str], name: str) -> tuple[str, ...]:
    columns = tuple(h.strip().lower() for h in header)
    known = COLUMNS + RECORD_COLUMNS
    unknown = next((c for c in columns if c not in known), None)
    if unknown is not None:
        raise UsageError(
            f"{name}:1: unknown column {unknown!r} (known: {', '.join(known)})"
        )
    twice = next((c for c in columns if columns.count(c) > 1), None)
    if twice is not None:
        raise UsageError(f"{name}:1: the column {twice!r} appears twice")
    if "email" not in columns:
        raise UsageError(f"{name}:1: no email column")
    return columns


def to_row(line: int, columns: Sequence[str], values: Sequence[str]) -> Row:
    padded = [*values, *[""] * (len(columns) - len(values))]
    cells = {c: v.strip() for c, v in zip(columns, padded, strict=False)}
    return Row(line, cells, max(0, len(values) - len(columns)))


# --- planning: every row validated before anything is written ---------------------


@dataclass(frozen=True, slots=True)
class Planned:
    line: int
    new: subscribers.NewSubscriber
    skip: str | None  # None: imported; EXISTING; or why it is skipped


def plan(rt: Runtime, rows: Sequence[Row], name: str, confirmed: bool) -> list[Planned]:
    """Every row checked; any bad row: each printed as FILE:LINE, then UsageError."""
    planned: list[Planned] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for row in rows:
        try:
            item = plan_row(rt, row, Path(name).name, confirmed)
            first = seen.setdefault(address_key(item.new.address), row.line)
            if first != row.line:
                raise UsageError(f"{item.new.address} is on line {first} already")
            planned.append(item)
        except UsageError as e:
            errors.append(f"{name}:{row.line}: {e}")
    if errors:
        for error in errors:
            typer.echo(error, err=True)
        raise UsageError(
            f"{name}: {plural(len(errors), 'bad row')}; nothing was imported"
        )
    return planned


def plan_row(rt: Runtime, row: Row, file_name: str, confirmed: bool) -> Planned:
    if row.extra:
        raise UsageError(f"{plural(row.extra, 'cell')} more than the header names")
    address = normalize_email(row.cells["email"])
    choice = resolve(given(row), Choice.defaults(rt.settings), rt.settings, column_name)
    recorded = cell(row, "state")
    was = None if recorded is None else state_of(recorded, column_name)
    new = new_subscriber(
        address,
        choice,
        confirmed=confirmed and was is not SubscriberState.PENDING,
        source=ConsentSource.IMPORT,
        origin=f"import:{file_name}",
    )
    return Planned(row.line, new, skip_reason(rt, address, was))


def given(row: Row) -> Given:
    lists = {
        c: None if (text := cell(row, c)) is None else text.split(SEPARATOR)
        for c in LIST_COLUMNS
    }
    return Given(
        schedule=cell(row, "schedule"),
        hour=cell(row, "hour"),
        weekday=cell(row, "weekday"),
        members=lists["members"],
        tags=lists["tags"],
        keywords=lists["keywords"],
        timezone=cell(row, "timezone"),
        language=cell(row, "language"),
    )


def cell(row: Row, column: str) -> str | None:
    return row.cells.get(column) or None


def skip_reason(rt: Runtime, address: str, was: SubscriberState | None) -> str | None:
    if subscribers.find_by_address(rt.db, SubscriberKind.EMAIL, address) is not None:
        return EXISTING
    if was is SubscriberState.UNSUBSCRIBED:
        return f"{address} is unsubscribed (state column); skipped"
    forgotten = subscribers.is_suppressed(rt.db, address)
    if forgotten is not None:
        day = forgotten.astimezone(rt.settings.site.tz)
        return f"{address} asked to be forgotten on {day:%Y-%m-%d}; skipped"
    return None


# --- commands ------------------------------------------------------------------------


def import_subscribers(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE.csv")],
    confirmed: Annotated[
        bool,
        typer.Option(
            "--confirmed",
            help="Everyone in the file has consented: active at once, no "
            "confirmation mail (a row whose state column says pending stays pending).",
        ),
    ] = False,
) -> None:
    """Add the subscribers of a CSV file: every row is valid, or nothing is added.

    Columns (header row, UTF-8): email, schedule, hour, weekday, timezone,
    language, members, tags, keywords; list values separated by ";". Addresses
    already subscribed are skipped and counted; forgotten ones are skipped.
    """
    name = str(file)
    try:
        data = file.read_bytes()
    except OSError as e:
        raise UsageError(f"{file}: cannot read: {e.strerror}") from None
    rows = read_rows(data, name)
    with open_runtime(ctx) as rt:
        planned = plan(rt, rows, name, confirmed)
        now = rt.clock.now()
        added = [p for p in planned if p.skip is None]
        with unit_of_work(rt.db):
            expiries = [create(rt, item.new, now)[1] for item in added]
    report(rt.settings, name, planned, expiries)


def report(
    settings: Settings,
    name: str,
    planned: Sequence[Planned],
    expiries: Sequence[datetime | None],
) -> None:
    """Each row skipped for a reason, then the counts."""
    for item in planned:
        if item.skip not in (None, EXISTING):
            typer.echo(f"{name}:{item.line}: {item.skip}")
    added = [p for p in planned if p.skip is None]
    existing = sum(1 for p in planned if p.skip == EXISTING)
    pending = sum(1 for p in added if not p.new.confirmed)
    typer.echo(
        f"imported {plural(len(added), 'subscriber')} from {name} "
        f"({pending} pending); skipped {existing} already subscribed, "
        f"{len(planned) - len(added) - existing} other"
    )
    expires = next((e for e in expiries if e is not None), None)
    if expires is not None:
        typer.echo(pending_note(settings, pending, expires))


def export_subscribers(
    ctx: typer.Context,
    as_json: JSON = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Print CSV (the default).")
    ] = False,
) -> None:
    """Print every e-mail subscriber as CSV (for `import`) or JSON."""
    if as_json and as_csv:
        raise UsageError("give --json or --csv, not both")
    with open_runtime(ctx) as rt:
        found = subscribers.list_subscribers(rt.db, kind=SubscriberKind.EMAIL)
    docs = [subscriber_doc(s) for s in found]
    if as_json:
        print_json(docs)
        return
    typer.echo(to_csv(docs), nl=False)


def to_csv(docs: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # RFC 4180: CRLF line ends, quotes where needed
    writer.writerow(COLUMNS + RECORD_COLUMNS)
    for doc in docs:
        writer.writerow([csv_cell(doc[c]) for c in COLUMNS + RECORD_COLUMNS])
    return buffer.getvalue()


def csv_cell(value: object) -> str:
    if isinstance(value, list):
        return SEPARATOR.join(value)
    return "" if value is None else str(value)
