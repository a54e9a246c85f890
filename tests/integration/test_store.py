"""The database edge: pragmas, ownership, migrations, transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aggregator import migrations
from aggregator.db import APPLICATION_ID, open_database, unit_of_work
from aggregator.errors import NotKairanDatabaseError, SchemaVersionError, StoreError


def test_new_database_is_ours_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    db = open_database(tmp_path / "k.sqlite3")
    try:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        applied = [m.name for m in migrations.MIGRATIONS.applied(db)]
        assert applied == migrations.KNOWN
    finally:
        db.close()


def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    open_database(tmp_path / "k.sqlite3").close()
    db = open_database(tmp_path / "k.sqlite3")
    try:
        count = db.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
        assert count == len(migrations.KNOWN)
    finally:
        db.close()


def test_someone_elses_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    with pytest.raises(NotKairanDatabaseError, match="not a Kairan database"):
        open_database(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database"):
        open_database(path)


def test_a_database_from_a_newer_kairan_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    db = open_database(path)
    db.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('kairan', '9999_from_the_future', '2030-01-01')"
    )
    db.close()
    with pytest.raises(SchemaVersionError, match="newer kairan"):
        open_database(path)


def test_missing_database_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="kairan init"):
        open_database(tmp_path / "absent.sqlite3", create=False)


def test_unit_of_work_rolls_back_on_error(tmp_path: Path) -> None:
    db = open_database(tmp_path / "k.sqlite3")
    try:

        def insert_two() -> None:
            with unit_of_work(db):
                db.execute(
                    "INSERT INTO members (id, configured_url, url) "
                    "VALUES ('a', 'u', 'u')"
                )
                db.execute("INSERT INTO members (id) VALUES ('b')")  # NOT NULL fails

        with pytest.raises(sqlite3.IntegrityError):
            insert_two()
        assert db.execute("SELECT count(*) FROM members").fetchone()[0] == 0
        with unit_of_work(db), unit_of_work(db):  # nested: a savepoint
            db.execute(
                "INSERT INTO members (id, configured_url, url) VALUES ('b', 'u', 'u')"
            )
        assert db.execute("SELECT count(*) FROM members").fetchone()[0] == 1
    finally:
        db.close()


def test_unit_of_work_takes_the_write_lock_up_front(tmp_path: Path) -> None:
    path = tmp_path / "k.sqlite3"
    db = open_database(path)
    other = sqlite3.connect(path, timeout=0.05)
    try:
        with (
            unit_of_work(db),
            pytest.raises(sqlite3.OperationalError, match="locked"),
        ):
            other.execute("BEGIN IMMEDIATE")
    finally:
        other.close()
        db.close()
