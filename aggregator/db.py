"""Open the SQLite file: pragmas, ownership check, migrations, unit_of_work().

Every connection gets WAL, foreign keys and a busy timeout. Write paths run in
``unit_of_work()``, which starts with ``BEGIN IMMEDIATE`` so that a writer takes the
write lock up front instead of failing half-way with SQLITE_BUSY when it upgrades a
read transaction (https://sqlite.org/lang_transaction.html#immediate).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from aggregator import migrations
from aggregator.errors import NotKairanDatabaseError, StoreError

# "KRN1" as a 32-bit integer: marks the file as Kairan's (PRAGMA application_id).
APPLICATION_ID = 0x4B524E31
BUSY_TIMEOUT_MS = 5000


def open_database(path: Path, *, create: bool = True) -> sqlite_utils.Database:
    """Open (and, with ``create``, initialise or migrate) Kairan's database."""
    if not create and not path.exists():
        raise StoreError(f"{path}: no database; run `kairan init` first")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(
            f"{path.parent}: cannot create the data directory: {e.strerror}"
        ) from None
    try:
        # isolation_level=None: no implicit BEGIN. A write outside unit_of_work()
        # commits at once instead of silently holding a transaction open.
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
        )
        db = sqlite_utils.Database(conn)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the database") from e
    try:
        _configure(db, path)
        migrations.apply(db, str(path))
    except StoreError as e:
        db.close()
        if _is_damage(e.__cause__):
            raise _damaged(path, str(e.__cause__)) from e.__cause__
        raise
    except BaseException:
        db.close()
        raise
    return db


def startup_check(db: sqlite_utils.Database, path: Path) -> None:
    """The daemon's check at start (``PRAGMA quick_check``): damage found now is
    reported with the backup to restore, not met later half-way through a write."""
    from aggregator import backup  # imported here: backup.py imports this module

    problems = backup.quick_check(db)
    if problems:
        raise _damaged(path, f"quick_check: {problems[0]}")


# https://sqlite.org/wal.html#walresetbug
WAL_RESET_FIXED = (3, 51, 3)


def sqlite_version_warning() -> str | None:
    """A warning for the daemon's start log when SQLite has the WAL-reset bug."""
    if sqlite3.sqlite_version_info >= WAL_RESET_FIXED:
        return None
    fixed = ".".join(map(str, WAL_RESET_FIXED))
    return (
        f"SQLite {sqlite3.sqlite_version} is older than {fixed}, which fixes a WAL "
        "bug that can corrupt a database when two connections write or checkpoint "
        "at the same moment (https://sqlite.org/wal.html#walresetbug); kairan "
        "writes one transaction at a time and only the daemon checkpoints, so it "
        f"avoids the race, but upgrade SQLite to {fixed} or later when you can"
    )


def _is_damage(error: BaseException | None) -> bool:
    """Is this SQLite saying the file itself is broken (not busy, not read-only)?"""
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    # The primary result code is the low byte of an extended one.
    primary = error.sqlite_errorcode & 0xFF
    return primary in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _damaged(path: Path, reason: str) -> StoreError:
    """The error for a damaged file, with the command that restores the newest
    backup. The stale -wal and -shm files go too: SQLite would otherwise replay
    the damaged database's log onto the restored copy."""
    from aggregator import backup  # imported here: backup.py imports this module

    backups = path.parent / backup.BACKUP_DIR_NAME
    newest = backup.newest_backup(backups)
    if newest is None:
        advice = f"no backup found in {backups}"
    else:
        advice = (
            f"restore the newest backup: rm -f {path}-wal {path}-shm && "
            f"cp {newest} {path}"
        )
    return StoreError(
        f"{path}: not a usable SQLite database: the file is damaged ({reason}); "
        f"{advice}"
    )


def _configure(db: sqlite_utils.Database, path: Path) -> None:
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        is_empty = not db.table_names()
        if app_id == 0 and is_empty:
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        elif app_id != APPLICATION_ID:
            raise NotKairanDatabaseError(f"{path}: not a Kairan database")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{path}: cannot enable WAL mode (got {mode})")
        db.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: not a usable SQLite database") from e


@contextmanager
def read_snapshot(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One consistent read (a deferred transaction that only reads). In WAL mode
    it never holds the write lock, so writers on other connections go on."""
    db.conn.execute("BEGIN")
    try:
        yield db
    finally:
        db.conn.execute("COMMIT")


@contextmanager
def unit_of_work(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One write transaction (``BEGIN IMMEDIATE``); nested calls become savepoints."""
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    try:
        db.conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as e:
        raise StoreError("the database is busy or read-only") from e
    try:
        yield db
    except BaseException:
        db.conn.rollback()
        raise
    try:
        db.conn.commit()
    except sqlite3.Error as e:
        db.conn.rollback()
        raise StoreError("could not commit to the database") from e
