"""Backups, checks and damaged files, on real SQLite files in tmp_path."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlite_utils

from aggregator import backup
from aggregator.db import (
    open_database,
    sqlite_version_warning,
    startup_check,
    unit_of_work,
)
from aggregator.errors import StoreError, UsageError
from aggregator.settings import Settings
from tests.support import builders
from tests.support.clock import FixedClock

ROWS = 3000


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return builders.settings(tmp_path)


@pytest.fixture
def live(settings: Settings) -> Iterator[sqlite_utils.Database]:
    """Kairan's database with a ballast table big enough to span many pages."""
    db = open_database(settings.database_path)
    try:
        with unit_of_work(db):
            db.execute("CREATE TABLE ballast (n INTEGER PRIMARY KEY, text TEXT)")
            db.conn.executemany(
                "INSERT INTO ballast (text) VALUES (?)",
                [(f"{'行' * 100}{i}",) for i in range(ROWS)],
            )
        yield db
    finally:
        db.close()


def damage_ballast(path: Path) -> None:
    """Overwrite the cell pointers of the ballast table's root page: the file
    still opens (the schema pages are intact) but its b-tree is broken."""
    db = open_database(path)
    root = db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'ballast'"
    ).fetchone()[0]
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()  # the last connection checkpoints the WAL into the file
    with path.open("r+b") as f:
        f.seek(page_size * (root - 1) + 12)
        f.write(b"\xff" * 64)


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_backup_is_a_verified_self_contained_copy(
    live: sqlite_utils.Database, tmp_path: Path, clock: FixedClock
) -> None:
    target = tmp_path / "elsewhere" / "copy.db"
    result = backup.backup(live, target, clock=clock)
    assert result == backup.BackupResult(target, target.stat().st_size, 0.0)
    assert result.bytes > ROWS * 100
    # one file (journal mode DELETE), no temporary file left beside it
    assert listing(target.parent) == ["copy.db"]
    with target.open("rb") as f:
        assert f.read(20)[18:20] == b"\x01\x01"  # https://sqlite.org/fileformat.html
    assert backup.check(target) == []
    copy = open_database(target, create=False)
    try:
        assert copy.execute("SELECT count(*) FROM ballast").fetchone()[0] == ROWS
    finally:
        copy.close()


def test_backup_does_not_wait_for_or_copy_an_open_write(
    live: sqlite_utils.Database, settings: Settings, tmp_path: Path
) -> None:
    writer = open_database(settings.database_path)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO ballast (text) VALUES ('uncommitted')")
        backup.backup(live, tmp_path / "copy.db")
        writer.conn.commit()
    finally:
        writer.close()
    copy = sqlite3.connect(tmp_path / "copy.db")
    try:
        count = copy.execute("SELECT count(*) FROM ballast").fetchone()[0]
    finally:
        copy.close()
    assert count == ROWS
    assert live.execute("SELECT count(*) FROM ballast").fetchone()[0] == ROWS + 1


def test_backup_replaces_an_existing_file_atomically(
    live: sqlite_utils.Database, tmp_path: Path
) -> None:
    target = tmp_path / "copy.db"
    target.write_bytes(b"an older backup")
    backup.backup(live, target)
    assert backup.check(target) == []
    assert listing(tmp_path) == ["copy.db", "data"]


@pytest.mark.parametrize(
    "spelling",
    [
        lambda p: p,
        lambda p: p.parent / "." / p.name,
        lambda p: p.parent.parent / "link.sqlite3",
    ],
    ids=["same", "dotted", "symlink"],
)
def test_backup_onto_the_live_database_is_refused(
    live: sqlite_utils.Database, settings: Settings, spelling: Callable[[Path], Path]
) -> None:
    path = settings.database_path
    (path.parent.parent / "link.sqlite3").symlink_to(path)
    before = path.read_bytes()
    with pytest.raises(UsageError, match="is the live database"):
        backup.backup(live, spelling(path))
    assert path.read_bytes() == before


def test_backup_of_a_damaged_database_is_not_kept(
    settings: Settings, live: sqlite_utils.Database, tmp_path: Path
) -> None:
    live.close()
    damage_ballast(settings.database_path)
    damaged = open_database(settings.database_path)
    try:
        with pytest.raises(StoreError, match="failed the integrity check"):
            backup.backup(damaged, tmp_path / "out" / "copy.db")
    finally:
        damaged.close()
    assert listing(tmp_path / "out") == []


def test_check_names_each_kind_of_problem(settings: Settings, tmp_path: Path) -> None:
    db = open_database(settings.database_path)
    try:
        assert backup.check(db) == []
        assert backup.quick_check(db) == []
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (p INTEGER REFERENCES parent (id))")
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("INSERT INTO child (p) VALUES (7)")
        assert backup.check(db) == [
            "foreign key: child row 1 refers to a missing parent row"
        ]
    finally:
        db.close()

    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).close()
    assert backup.check(other) == [
        "application_id is 0x0, not Kairan's 0x4b524e31: not a Kairan database"
    ]
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database at all" * 100)
    assert backup.check(garbage) == [
        "not a usable SQLite database: file is not a database"
    ]
    missing = tmp_path / "missing.sqlite3"
    assert backup.check(missing) == [f"{missing}: no such file"]
    assert not missing.exists()


def test_check_and_quick_check_find_a_broken_btree(
    settings: Settings, live: sqlite_utils.Database
) -> None:
    live.close()
    damage_ballast(settings.database_path)
    problems = backup.check(settings.database_path)
    assert 0 < len(problems) <= backup.MAX_PROBLEMS
    assert all("\n" not in p and not p.startswith("***") for p in problems)
    db = open_database(settings.database_path)
    try:
        assert backup.quick_check(db)
        with pytest.raises(StoreError, match="the file is damaged") as caught:
            startup_check(db, settings.database_path)
    finally:
        db.close()
    assert f"no backup found in {settings.data_dir / 'backups'}" in str(caught.value)


def test_startup_check_passes_a_healthy_database(
    live: sqlite_utils.Database, settings: Settings
) -> None:
    startup_check(live, settings.database_path)
    assert backup.quick_check(live) == []


def test_rotate_keeps_the_newest_and_leaves_other_files_alone(
    live: sqlite_utils.Database, settings: Settings
) -> None:
    backups = backup.default_backup_dir(settings)
    assert backups == settings.data_dir / "backups"
    assert backup.newest_backup(backups) is None
    backups.mkdir()
    (backups / "before-upgrade.db").write_bytes(b"the operator's own copy")
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    results = [
        backup.rotate(backups, live, start + timedelta(days=d), keep=2)
        for d in range(4)
    ]
    assert [r.path.name for r in results] == [
        "kairan-20261201T120000Z.db",
        "kairan-20261202T120000Z.db",
        "kairan-20261203T120000Z.db",
        "kairan-20261204T120000Z.db",
    ]
    assert listing(backups) == [
        "before-upgrade.db",
        "kairan-20261203T120000Z.db",
        "kairan-20261204T120000Z.db",
    ]
    assert backup.newest_backup(backups) == results[-1].path
    assert backup.check(results[-1].path) == []
    with pytest.raises(ValueError, match="keep must be at least 1"):
        backup.rotate(backups, live, start + timedelta(days=9), keep=0)
    assert len(listing(backups)) == 3


def test_rotate_names_by_utc(live: sqlite_utils.Database, tmp_path: Path) -> None:
    tokyo = datetime(2026, 12, 1, 18, 30, tzinfo=ZoneInfo("Asia/Tokyo"))
    result = backup.rotate(tmp_path / "b", live, tokyo, keep=1)
    assert result.path.name == "kairan-20261201T093000Z.db"


def kairan_file(settings: Settings) -> Path:
    """A real Kairan database of many pages, closed (its WAL checkpointed)."""
    path = settings.database_path
    db = open_database(path)
    db.execute("CREATE TABLE ballast (text TEXT)")
    db.conn.executemany(
        "INSERT INTO ballast VALUES (?)", [("x" * 200,) for _ in range(ROWS)]
    )
    db.close()
    return path


def test_a_truncated_database_points_to_the_newest_backup(
    settings: Settings,
) -> None:
    path = kairan_file(settings)
    backups = backup.default_backup_dir(settings)
    db = open_database(path)
    older = backup.rotate(backups, db, datetime(2026, 11, 30, tzinfo=UTC), keep=5)
    newest = backup.rotate(backups, db, datetime(2026, 12, 1, tzinfo=UTC), keep=5)
    db.close()
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(StoreError) as caught:
        open_database(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        f"{path}: not a usable SQLite database: the file is damaged "
        "(database disk image is malformed); restore the newest backup: "
        f"rm -f {path}-wal {path}-shm && cp {newest.path} {path}"
    )
    assert str(older.path) not in message


def test_a_garbage_file_without_backups_says_so(settings: Settings) -> None:
    path = kairan_file(settings)
    path.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(StoreError) as caught:
        open_database(path)
    assert str(caught.value) == (
        f"{path}: not a usable SQLite database: the file is damaged "
        f"(file is not a database); no backup found in {settings.data_dir}/backups"
    )


def test_restoring_the_pointed_backup_works(settings: Settings) -> None:
    db = open_database(settings.database_path)
    db.execute("CREATE TABLE kept (n)")
    db.execute("INSERT INTO kept VALUES (42)")
    result = backup.rotate(
        backup.default_backup_dir(settings), db, datetime(2026, 12, 1, tzinfo=UTC), 1
    )
    db.close()
    os.truncate(settings.database_path, 1000)
    with pytest.raises(StoreError, match="restore the newest backup"):
        open_database(settings.database_path)
    settings.database_path.write_bytes(result.path.read_bytes())
    restored = open_database(settings.database_path)
    try:
        assert restored.execute("SELECT n FROM kept").fetchall() == [(42,)]
        assert restored.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        restored.close()


def test_sqlite_version_warning_names_the_fix() -> None:
    warning = sqlite_version_warning()
    if sqlite3.sqlite_version_info >= (3, 51, 3):
        assert warning is None
    else:
        assert warning is not None
        assert sqlite3.sqlite_version in warning
        assert "3.51.3" in warning
        assert "https://sqlite.org/wal.html#walresetbug" in warning
