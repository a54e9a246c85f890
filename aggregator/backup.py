"""Online backups of the database, integrity checks, and the daily backup rotation.

A backup is taken with SQLite's online backup API
(https://sqlite.org/backup.html) while the daemon keeps running, checked with
``PRAGMA integrity_check`` and only then renamed onto its final name, so a file
named like a backup is always a complete, verified database.
"""

from __future__ import annotations

import os
import re
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from aggregator import db as database
from aggregator.clock import Clock, SystemClock
from aggregator.errors import StoreError, UsageError
from aggregator.files import fsync_directory
from aggregator.settings import Settings

BACKUP_DIR_NAME = "backups"
# kairan-20261201T030000Z.db: UTC, so that names sort in time order.
ROTATED_NAME = re.compile(r"kairan-\d{8}T\d{6}Z\.db")
# Lines of a failed check worth showing; the rest only repeat the same damage.
MAX_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    bytes: int
    seconds: float


def backup(
    db: sqlite_utils.Database, target: Path, *, clock: Clock | None = None
) -> BackupResult:
    """Copy the live database to ``target``: verified, fsynced, renamed atomically.

    The copy is made in one backup step. In WAL mode that step is a read
    transaction, which writers never wait for; a copy made in several steps
    restarts from the first page whenever another connection writes between
    steps (https://sqlite.org/c3ref/backup_finish.html), and the daemon writes
    often, so it might never finish.
    """
    clock = clock or SystemClock()
    started = clock.monotonic()
    live = _main_file(db)
    if live is not None and _same_file(live, target):
        raise UsageError(f"{target}: is the live database; choose another path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
        os.close(fd)
    except OSError as e:
        raise StoreError(f"{target}: cannot write the backup: {e.strerror}") from None
    tmp = Path(name)
    try:
        _copy(db, tmp, target)
        _fsync(tmp)
        os.replace(tmp, target)
        fsync_directory(target.parent)
    except OSError as e:
        raise StoreError(f"{target}: cannot write the backup: {e.strerror}") from None
    finally:
        _remove(tmp)
    return BackupResult(target, target.stat().st_size, clock.monotonic() - started)


def _copy(db: sqlite_utils.Database, tmp: Path, target: Path) -> None:
    try:
        copy = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.conn.backup(copy)
            # The copied header says WAL; a backup is one self-contained file.
            copy.execute("PRAGMA journal_mode = DELETE")
            problems = _pragma_lines(copy, "integrity_check")
        finally:
            copy.close()
    except sqlite3.Error as e:
        raise StoreError(f"{target}: the backup failed") from e
    if problems:
        raise StoreError(
            f"{target}: the copy failed the integrity check ({problems[0]}), so it "
            "was not kept; the database itself is damaged: run `kairan db check`"
        )


def check(target: Path | sqlite_utils.Database) -> list[str]:
    """Integrity, foreign keys and ownership of a database file or connection.

    ``[]`` means all is well; otherwise one line per problem. A path is opened
    read-only, so checking never changes (or creates) the file.
    """
    if isinstance(target, sqlite_utils.Database):
        return _check_connection(target.conn)
    if not target.is_file():
        return [f"{target}: no such file"]
    try:
        conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        return [f"{target}: cannot open: {e}"]
    try:
        return _check_connection(conn)
    finally:
        conn.close()


def _check_connection(conn: sqlite3.Connection) -> list[str]:
    try:
        problems = _pragma_lines(conn, "integrity_check")
        problems += [
            f"foreign key: {table} row {rowid} refers to a missing {parent} row"
            for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check")
        ]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as e:
        return [f"not a usable SQLite database: {e}"]
    if app_id != database.APPLICATION_ID:
        problems.append(
            f"application_id is {app_id:#x}, not Kairan's "
            f"{database.APPLICATION_ID:#x}: not a Kairan database"
        )
    return problems


def quick_check(db: sqlite_utils.Database) -> list[str]:
    """``PRAGMA quick_check``: the page structure without the slower index
    cross-checks, fast enough for every daemon start. ``[]`` means ok."""
    try:
        return _pragma_lines(db.conn, "quick_check")
    except sqlite3.DatabaseError as e:
        return [f"not a usable SQLite database: {e}"]


def _pragma_lines(conn: sqlite3.Connection, pragma: str) -> list[str]:
    """The problems an integrity pragma reports (it says "ok" when there are none).

    SQLite returns one row per problem, or one row with the problems on separate
    lines, under a "*** in database main ***" heading: both are flattened.
    """
    rows = conn.execute(f"PRAGMA {pragma}({MAX_PROBLEMS})").fetchall()
    lines = [line for (text,) in rows for line in str(text).splitlines()]
    if lines == ["ok"]:
        return []
    return [line for line in lines if not line.startswith("*** in database")]


def rotate(
    backup_dir: Path, db: sqlite_utils.Database, now: datetime, keep: int
) -> BackupResult:
    """The daily backup: a new file named by the UTC time, then only the newest
    ``keep`` of the rotated backups stay (files named otherwise are left alone)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    name = f"kairan-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}.db"
    result = backup(db, backup_dir / name)
    for old in _rotated(backup_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return result


def newest_backup(backup_dir: Path) -> Path | None:
    """The most recent rotated backup in ``backup_dir``, if any."""
    rotated = _rotated(backup_dir)
    return rotated[-1] if rotated else None


def default_backup_dir(settings: Settings) -> Path:
    return settings.data_dir / BACKUP_DIR_NAME


def _rotated(backup_dir: Path) -> list[Path]:
    """Rotated backups, oldest first (the UTC timestamps sort as text)."""
    try:
        names = os.listdir(backup_dir)
    except FileNotFoundError:
        return []
    return [backup_dir / n for n in sorted(names) if ROTATED_NAME.fullmatch(n)]


def _main_file(db: sqlite_utils.Database) -> Path | None:
    for _, name, file in db.execute("PRAGMA database_list").fetchall():
        if name == "main" and file:
            return Path(file)
    return None


def _same_file(live: Path, target: Path) -> bool:
    if target.exists():
        return os.path.samefile(live, target)
    return live.resolve() == target.resolve()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(tmp: Path) -> None:
    """The temporary copy and any journal files SQLite left beside it."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
