"""`kairan db backup` and `kairan db check` in-process, on a real config and SQLite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from aggregator import backup, config
from aggregator.cli import KairanGroup, root
from aggregator.cli import db as db_cli
from aggregator.db import open_database, unit_of_work
from aggregator.settings import Settings

CONFIG = """\
[site]
contact = "https://example.jp/contact"

[storage]
data_dir = "state"
"""


def kairan() -> typer.Typer:
    """The real root callback and error handling, with only the `db` commands."""
    app = typer.Typer(cls=KairanGroup, add_completion=False)
    app.callback()(root)
    app.add_typer(db_cli.app, name="db")
    return app


class Cli:
    def __init__(self, config_path: Path) -> None:
        self.config = config_path
        self.app = kairan()

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(
            self.app, ["--config", str(self.config), *args], prog_name="kairan"
        )

    def settings(self) -> Settings:
        return config.load_settings(self.config)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    cli = Cli(tmp_path / "config.toml")
    db = open_database(cli.settings().database_path)
    try:
        with unit_of_work(db):
            db.execute("CREATE TABLE ballast (n INTEGER PRIMARY KEY, text TEXT)")
            db.conn.executemany(
                "INSERT INTO ballast (text) VALUES (?)", [("x" * 100,)] * 500
            )
    finally:
        db.close()
    return cli


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_backup_prints_path_size_and_time(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "saved" / "kairan-copy.db"
    result = cli.run("db", "backup", str(target))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    match = re.fullmatch(r"(.+): ([\d,]+) bytes in (\d+\.\d\d) s\n", result.stdout)
    assert match is not None, result.stdout
    assert match[1] == str(target)
    assert int(match[2].replace(",", "")) == target.stat().st_size
    assert backup.check(target) == []
    copy = open_database(target, create=False)
    try:
        assert copy.execute("SELECT count(*) FROM ballast").fetchone()[0] == 500
    finally:
        copy.close()


def test_backup_refuses_an_existing_path_unless_forced(
    cli: Cli, tmp_path: Path
) -> None:
    target = tmp_path / "copy.db"
    target.write_bytes(b"keep me")
    line = one_error_line(cli.run("db", "backup", str(target)), 2)
    assert line == f"kairan: error: {target}: already exists; add --force to replace it"
    assert target.read_bytes() == b"keep me"
    assert cli.run("db", "backup", "--force", str(target)).exit_code == 0
    assert backup.check(target) == []


def test_backup_onto_the_live_database_is_refused(cli: Cli) -> None:
    live = cli.settings().database_path
    line = one_error_line(cli.run("db", "backup", "--force", str(live)), 2)
    assert line == (f"kairan: error: {live}: is the live database; choose another path")


def test_backup_without_a_database_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    cli = Cli(tmp_path / "config.toml")
    line = one_error_line(cli.run("db", "backup", str(tmp_path / "copy.db")), 1)
    assert "no database; run `kairan init` first" in line
    assert not (tmp_path / "copy.db").exists()
    assert not cli.settings().database_path.exists()


def test_check_says_ok_for_a_healthy_database_and_its_backup(
    cli: Cli, tmp_path: Path
) -> None:
    result = cli.run("db", "check")
    assert (result.exit_code, result.stdout) == (0, "ok\n")
    cli.run("db", "backup", str(tmp_path / "copy.db"))
    result = cli.run("db", "check", str(tmp_path / "copy.db"))
    assert (result.exit_code, result.stdout) == (0, "ok\n")


def test_check_lists_the_problems_and_exits_1(cli: Cli) -> None:
    db = open_database(cli.settings().database_path)
    try:
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (p INTEGER REFERENCES parent (id))")
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("INSERT INTO child (p) VALUES (1), (2)")
    finally:
        db.close()
    result = cli.run("db", "check")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "foreign key: child row 1 refers to a missing parent row",
        "foreign key: child row 2 refers to a missing parent row",
    ]


def test_check_of_a_damaged_file_exits_1(cli: Cli) -> None:
    path = cli.settings().database_path
    path.write_bytes(b"\x00" * 100 + b"not sqlite" * 100)
    result = cli.run("db", "check")
    assert result.exit_code == 1
    assert result.stdout == "not a usable SQLite database: file is not a database\n"
