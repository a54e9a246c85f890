"""The `kairan` CLI end to end: a real config.toml, real SQLite, the sandbox server."""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from aggregator import __version__, config
from aggregator.cli import app
from aggregator.clock import SystemClock
from aggregator.models import Member
from aggregator.sandbox.feed_server import FeedServer, Route, static_route
from aggregator.settings import Settings
from aggregator.timefmt import to_db
from tests.support.feeds import Item, note_feed, note_key

FIXTURES = Path(__file__).parents[1] / "fixtures" / "config"
BAD_FILES = sorted(FIXTURES.glob("bad_*.toml"))
DEBUG_HINT = "(rerun with --debug for the traceback)"

# Real time: the CLI runs on the system clock, and status counts the last 4 weeks.
NOW = SystemClock().now()
RECENT = Item(note_key(1), "議事録要約の試行", published=NOW - timedelta(days=2))
NEWER = Item(
    note_key(2), "庁内ガイドラインを改定しました", published=NOW - timedelta(days=1)
)
OLD = Item(note_key(3), "チャットボットの振り返り", published=NOW - timedelta(days=100))
LATER = Item(note_key(4), "生成AI研修を実施しました", published=NOW)


def config_text(members: Sequence[tuple[str, str]]) -> str:
    """A config.toml with quick timeouts, data in ./state and the given members."""
    lines = [
        "# written by test_cli",
        "[site]",
        'contact = "https://example.jp/contact"',
        "",
        "[poll]",
        "connect_timeout = 2",
        "timeout = 5",
        "jitter = 0",
        "",
        "[storage]",
        'data_dir = "state"',
    ]
    for member_id, feed in members:
        lines += ["", "[[members]]", f'id = "{member_id}"']
        lines += [f'name = "{member_id}市"', f'feed = "{feed}"']
    return "\n".join(lines) + "\n"


@dataclass
class Cli:
    """`kairan --config <tmp>/config.toml …` in-process, against the sandbox server."""

    config: Path
    server: FeedServer

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(
            app, ["--config", str(self.config), *args], prog_name="kairan"
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def error(self, *args: str, code: int = 2) -> str:
        """The one line a failing command prints on stderr (stdout stays empty)."""
        result = self.run(*args)
        assert result.exit_code == code, (result.stdout, result.stderr)
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        return lines[0]

    def members(self, *members: tuple[str, str]) -> None:
        self.config.write_text(config_text(members), encoding="utf-8")

    def serve(self, name: str, *items: Item) -> str:
        path = f"/{name}.xml"
        self.server.route(path, static_route(note_feed(items)))
        return self.server.url(path)

    def settings(self) -> Settings:
        return config.load_settings(self.config)

    def hits(self, name: str) -> int:
        return len(self.server.requests_to(f"/{name}.xml"))

    def member_status(self, member_id: str) -> dict[str, Any]:
        doc = self.json("status")
        return next(m for m in doc["members"] if m["id"] == member_id)


@pytest.fixture
def cli(tmp_path: Path, feed_server: FeedServer) -> Cli:
    return Cli(tmp_path / "config.toml", feed_server)


@pytest.fixture
def two(cli: Cli) -> Cli:
    """Members a (RECENT, OLD) and b (NEWER), polled once."""
    cli.members(("a", cli.serve("a", RECENT, OLD)), ("b", cli.serve("b", NEWER)))
    cli.ok("poll")
    return cli


# --- init ---------------------------------------------------------------------------


def test_init_writes_config_data_and_database_then_keeps_the_config(
    tmp_path: Path,
) -> None:
    target = tmp_path / "site"
    result = CliRunner().invoke(app, ["init", str(target)], prog_name="kairan")
    assert result.exit_code == 0, result.stderr
    path = target / "config.toml"
    assert path.read_text(encoding="utf-8") == config.INIT_TEMPLATE
    assert (target / "data" / "kairan.sqlite3").is_file()
    assert f"wrote {path}" in result.stdout
    assert "database ready at " + str(target / "data" / "kairan.sqlite3") in (
        result.stdout
    )

    edited = config.INIT_TEMPLATE + "# the operator's own note\n"
    path.write_text(edited, encoding="utf-8")
    again = CliRunner().invoke(app, ["init", str(target)], prog_name="kairan")
    assert again.exit_code == 0, again.stderr
    assert f"{path} exists; keeping it" in again.stdout
    assert path.read_text(encoding="utf-8") == edited


# --- poll ---------------------------------------------------------------------------


def test_poll_stores_every_due_member_and_then_none_is_due(cli: Cli) -> None:
    cli.members(("a", cli.serve("a", RECENT, OLD)), ("b", cli.serve("b", NEWER)))
    result = cli.run("poll")
    assert result.exit_code == 0
    assert result.stderr == ""  # the summary replaces the routine log lines
    out = result.stdout.splitlines()
    header = ["member", "status", "new", "edited", "unchanged", "time", "note"]
    assert out[0].split() == header
    assert out[1].split()[:5] == ["a", "ok", "2", "0", "0"]
    assert out[2].split()[:5] == ["b", "ok", "1", "0", "0"]
    assert out[3].startswith("2 polled, 0 failed, 3 new, 0 edited in ")

    assert cli.ok("poll") == (
        "no member is due; use --force or name members to poll now\n"
    )
    assert (cli.hits("a"), cli.hits("b")) == (1, 1)


def test_poll_named_and_forced_stay_conditional(two: Cli) -> None:
    named = two.json("poll", "b")
    assert [(m["member"], m["status"]) for m in named] == [("b", "not_modified")]
    assert (two.hits("a"), two.hits("b")) == (1, 2)
    # a conditional request: the stored ETag went back
    assert two.server.requests_to("/b.xml")[-1].header("If-None-Match")

    forced = two.json("poll", "--force")
    assert sorted(m["member"] for m in forced) == ["a", "b"]
    assert {m["status"] for m in forced} == {"not_modified"}
    assert set(forced[0]) == {
        "member",
        "status",
        "new",
        "edited",
        "unchanged",
        "baseline",
        "seconds",
        "error",
        "error_class",
        "moved_to",
    }


def test_poll_json_reports_new_and_baseline(cli: Cli) -> None:
    cli.members(("a", cli.serve("a", RECENT)))
    [first] = cli.json("poll")
    assert first | {"seconds": 0} == {
        "member": "a",
        "status": "ok",
        "new": 0,
        "edited": 0,
        "unchanged": 0,
        "baseline": 1,
        "seconds": 0,
        "error": None,
        "error_class": None,
        "moved_to": None,
    }
    cli.serve("a", RECENT, LATER)
    [second] = cli.json("poll", "--force")
    assert (second["new"], second["baseline"], second["unchanged"]) == (1, 0, 1)


def test_poll_unknown_member_is_a_one_line_usage_error(two: Cli) -> None:
    assert (
        two.error("poll", "a", "nobody") == 'kairan: error: no member with id "nobody"'
    )
    assert two.hits("a") == 1  # nothing was polled


def test_poll_exits_0_when_a_member_fails_and_names_the_failure(cli: Cli) -> None:
    cli.server.route("/broken.xml", Route(status=500, body=b"oops"))
    cli.members(("a", cli.serve("a", RECENT)), ("broken", cli.server.url("broken.xml")))
    out = cli.ok("poll")
    broken = next(line for line in out.splitlines() if line.startswith("broken "))
    assert broken.split()[1] == "error"
    assert "HTTP 500" in broken
    assert "2 polled, 1 failed, 1 new" in out

    status = cli.member_status("broken")
    assert status["state"] == "failing"
    assert status["last_error"] == "HTTP 500"
    assert status["last_error_class"] == "http"
    assert status["last_success"] is None


# --- status -------------------------------------------------------------------------


def test_status_json_has_health_counts_and_database(two: Cli) -> None:
    doc = two.json("status")
    a, b = doc["members"]
    assert (a["id"], a["state"], a["articles"], a["per_week"]) == ("a", "ok", 2, 0.25)
    assert (b["id"], b["state"], b["articles"], b["per_week"]) == ("b", "ok", 1, 0.25)
    assert a["last_error"] is None
    assert a["moved_from"] is None
    assert a["last_success"] is not None
    assert a["next_poll"] > a["last_success"]
    assert doc["entries"] == 3
    database = doc["database"]
    assert set(database) == {"path", "bytes", "sqlite_version"}
    assert database["path"] == str(two.config.parent / "state" / "kairan.sqlite3")
    assert database["bytes"] > 0
    assert database["sqlite_version"].count(".") == 2


def test_status_text_shows_states_and_database(two: Cli) -> None:
    out = two.ok("status").splitlines()
    assert out[0].split()[:2] == ["member", "state"]
    assert [line.split()[:2] for line in out[1:3]] == [["a", "ok"], ["b", "ok"]]
    assert out[3] == "times in Asia/Tokyo"
    assert out[4] == "subscribers: none"
    assert out[5].startswith("database " + str(two.config.parent / "state"))
    assert out[5].endswith(", 3 articles")
    assert "SQLite 3." in out[5]


def test_a_301_moves_the_member_and_status_says_from_where(cli: Cli) -> None:
    new_url = cli.serve("new", RECENT)
    old_url = cli.server.url("old.xml")
    cli.server.route("/old.xml", Route(status=301, redirect=new_url))
    cli.members(("a", old_url))
    [report] = cli.json("poll")
    assert (report["status"], report["moved_to"]) == ("ok", new_url)

    status = cli.member_status("a")
    assert (status["url"], status["moved_from"]) == (new_url, old_url)
    assert status["moved_at"] is not None
    row = next(line for line in cli.ok("status").splitlines() if line.startswith("a "))
    assert row.endswith(f"moved from {old_url}")
    # the next poll goes straight to the new URL
    cli.ok("poll", "--force")
    assert (cli.hits("old"), cli.hits("new")) == (1, 2)


# --- members ------------------------------------------------------------------------


def test_members_list_shows_config_and_state(two: Cli) -> None:
    docs = two.json("members", "list")
    assert [(d["id"], d["name"], d["state"]) for d in docs] == [
        ("a", "a市", "ok"),
        ("b", "b市", "ok"),
    ]
    assert docs[0]["feed"] == docs[0]["url"] == two.server.url("a.xml")
    assert set(docs[0]) >= {"site", "prefecture", "tags", "paused"}
    out = two.ok("members", "list").splitlines()
    assert out[0].split() == ["id", "name", "prefecture", "state", "feed"]
    assert out[1].split() == ["a", "a市", "ok", two.server.url("a.xml")]


def test_members_add_checks_the_feed_then_writes_config(cli: Cli) -> None:
    cli.members(("a", cli.serve("a", RECENT)))
    url = cli.serve("added", OLD, LATER)
    out = cli.ok(
        "members", "add", url, "--id", "added", "--name", "追加市",
        "--prefecture", "東京都", "--site", "https://added.example/",
        "--tag", "city", "--tag", "ai",
    )  # fmt: skip
    assert out.splitlines() == [
        f"{url}: rss20 feed, 2 items",
        f"added member added to {cli.config}",
    ]
    assert cli.hits("added") == 1
    assert cli.settings().member("added") == Member(
        id="added",
        name="追加市",
        feed=url,
        site="https://added.example/",
        prefecture="東京都",
        tags=("city", "ai"),
    )
    assert cli.config.read_text(encoding="utf-8").startswith("# written by test_cli")
    [_, added] = cli.json("poll")
    assert (added["member"], added["baseline"]) == ("added", 2)


def test_members_add_refuses_an_html_page_with_the_reason(cli: Cli) -> None:
    cli.members(("a", cli.serve("a", RECENT)))
    before = cli.config.read_bytes()
    cli.server.route(
        "/page.html",
        Route(
            body=b"<!DOCTYPE html><html><body>hi</body></html>",
            content_type="text/html",
        ),
    )
    url = cli.server.url("page.html")
    line = cli.error("members", "add", url, "--id", "page", "--name", "Page")
    assert line.startswith(f"kairan: error: {url}: ")
    assert "looks like an HTML page" in line
    assert "not added" in line
    assert cli.config.read_bytes() == before


def test_members_add_no_check_does_not_fetch(cli: Cli) -> None:
    cli.members()
    url = cli.server.url("later.xml")  # 404 for now: not fetched
    cli.ok("members", "add", url, "--id", "later", "--name", "Later", "--no-check")
    assert cli.server.requests == []
    assert cli.settings().members == (Member("later", "Later", url),)


def test_members_add_refuses_a_duplicate_id_before_fetching(two: Cli) -> None:
    before = two.config.read_bytes()
    url = two.serve("other", RECENT)
    line = two.error("members", "add", url, "--id", "a", "--name", "Again")
    assert line == 'kairan: error: a member with id "a" already exists'
    assert two.hits("other") == 0
    line = two.error(
        "members", "add", two.server.url("a.xml"), "--id", "c", "--name", "C"
    )
    assert line == (
        f'kairan: error: member "a" already has the feed {two.server.url("a.xml")}'
    )
    assert two.config.read_bytes() == before


def test_members_add_refuses_a_bad_id_or_url(cli: Cli) -> None:
    cli.members()
    before = cli.config.read_bytes()
    url = cli.server.url("x.xml")
    line = cli.error(
        "members", "add", url, "--id", "Bad_Id", "--name", "X", "--no-check"
    )
    assert line == (
        f"kairan: error: {cli.config}: members[0].id: must be a slug of lower-case"
        " letters, digits and hyphens, starting with a letter or digit, at most 63"
        ' characters, got "Bad_Id"'
    )
    line = cli.error(
        "members", "add", "note.com/x", "--id", "x", "--name", "X", "--no-check"
    )
    assert line == (
        f"kairan: error: {cli.config}: members[0].feed: must be an absolute"
        ' http(s) url, got "note.com/x"'
    )
    assert cli.config.read_bytes() == before


def test_members_remove_keeps_the_articles(two: Cli) -> None:
    assert two.ok("members", "remove", "a") == f"removed member a from {two.config}\n"
    assert [m.id for m in two.settings().members] == ["b"]
    assert sorted(e["member"] for e in two.json("entries", "list")) == ["a", "a", "b"]
    removed = two.json("entries", "list", "--member", "a")
    assert [e["title"] for e in removed] == [RECENT.title, OLD.title]
    assert two.error("members", "remove", "a") == 'kairan: error: no member with id "a"'


def test_pause_stops_polling_and_resume_restarts_it(two: Cli) -> None:
    assert two.ok("members", "pause", "a") == "paused member a\n"
    assert two.settings().members[0] == Member(
        "a", "a市", two.server.url("a.xml"), paused=True
    )
    assert two.member_status("a")["state"] == "paused"
    assert [d["state"] for d in two.json("members", "list")] == ["paused", "ok"]
    assert [m["member"] for m in two.json("poll", "--force")] == ["b"]
    assert two.hits("a") == 1

    assert two.ok("members", "resume", "a") == "resumed member a\n"
    assert not two.settings().members[0].paused
    assert sorted(m["member"] for m in two.json("poll", "--force")) == ["a", "b"]
    assert two.hits("a") == 2
    for command in ("pause", "resume"):
        assert two.error("members", command, "zz") == (
            'kairan: error: no member with id "zz"'
        )


def test_resume_revives_a_member_gone_with_410(cli: Cli) -> None:
    cli.server.route("/gone.xml", Route(status=410))
    cli.members(("gone", cli.server.url("gone.xml")))
    [report] = cli.json("poll")
    assert (report["status"], report["error_class"]) == ("error", "http")
    assert cli.member_status("gone")["state"] == "gone"
    assert cli.json("poll", "--force") == []
    assert cli.hits("gone") == 1

    cli.ok("members", "resume", "gone")
    cli.serve("gone", RECENT)
    [report] = cli.json("poll")  # due at once, without --force
    assert (report["status"], report["baseline"]) == ("ok", 1)
    assert cli.member_status("gone")["state"] == "ok"


OPML = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>list</title></head><body>
<outline text="A again" xmlUrl="{a}"/>
<outline type="rss" text="Kuwana" title="Kuwana City" xmlUrl="{k}"
 htmlUrl="https://kuwana.example/" category="mie,city"/>
</body></opml>
"""


def test_import_opml_adds_only_the_new_feeds(cli: Cli, tmp_path: Path) -> None:
    a = cli.serve("a", RECENT)
    cli.members(("a", a))
    kuwana = cli.server.url("kuwana.xml")
    opml_file = tmp_path / "list.opml"
    opml_file.write_text(OPML.format(a=a, k=kuwana), encoding="utf-8")
    assert cli.ok("members", "import-opml", str(opml_file)) == (
        "imported 1 member: kuwana-city\n"
    )
    assert cli.settings().members[1:] == (
        Member(
            "kuwana-city",
            "Kuwana City",
            kuwana,
            site="https://kuwana.example/",
            tags=("mie", "city"),
        ),
    )
    again = cli.ok("members", "import-opml", str(opml_file))
    assert again == "imported 0 members: none new\n"


def test_import_opml_refuses_entities(cli: Cli, tmp_path: Path) -> None:
    cli.members()
    before = cli.config.read_bytes()
    hostile = tmp_path / "hostile.opml"
    hostile.write_text(
        '<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;">]><opml version="2.0"><body>'
        '<outline text="&b;" xmlUrl="https://x.example/rss"/></body></opml>',
        encoding="utf-8",
    )
    line = cli.error("members", "import-opml", str(hostile))
    assert line.startswith(f"kairan: error: {hostile}: ")
    assert "hostile xml: doctype declares 2 entities" in line.lower()
    assert cli.config.read_bytes() == before
    missing = tmp_path / "missing.opml"
    assert cli.error("members", "import-opml", str(missing)) == (
        f"kairan: error: {missing}: cannot read: No such file or directory"
    )


def test_export_opml_round_trips_through_import(cli: Cli, tmp_path: Path) -> None:
    cli.config.write_text(
        config_text([]) + '\n[[members]]\nid = "yokosuka"\nname = "横須賀市"\n'
        'feed = "https://govgov.ai/rss"\nsite = "https://govgov.ai/"\n'
        'prefecture = "神奈川県"\ntags = ["municipality"]\n'
        '\n[[members]]\nid = "kobe"\nname = "Kobe"\nfeed = "https://kobe-note.jp/rss"\n',
        encoding="utf-8",
    )
    exported = cli.ok("members", "export-opml")
    root = ET.fromstring(exported)  # noqa: S314 - our own output
    assert (root.tag, root.get("version")) == ("opml", "2.0")
    outlines = root.findall("./body/outline")
    assert [o.get("xmlUrl") for o in outlines] == [
        "https://govgov.ai/rss",
        "https://kobe-note.jp/rss",
    ]
    assert outlines[0].get("text") == "横須賀市"
    assert outlines[0].get("htmlUrl") == "https://govgov.ai/"

    opml_file = tmp_path / "export.opml"
    opml_file.write_text(exported, encoding="utf-8")
    empty = Cli(tmp_path / "empty" / "config.toml", cli.server)
    empty.config.parent.mkdir()
    empty.members()
    assert empty.ok("members", "import-opml", str(opml_file)) == (
        "imported 2 members: yokosuka, kobe\n"
    )
    assert empty.settings().members == cli.settings().members
    assert empty.ok("members", "export-opml") == exported


# --- entries ------------------------------------------------------------------------


def test_entries_list_filters_and_json(two: Cli) -> None:
    everything = two.json("entries", "list")
    assert [e["title"] for e in everything] == [NEWER.title, RECENT.title, OLD.title]
    first = everything[0]
    assert set(first) >= {
        "id", "member", "title", "link", "published", "updated", "first_seen",
        "author", "thumbnail", "status",
    }  # fmt: skip
    assert first["member"] == "b"
    assert first["link"] == NEWER.url
    assert first["published"] == to_db(NEWER.published)
    assert first["first_seen"].endswith("Z")
    assert first["author"] == "テスト市"
    assert first["thumbnail"] == f"https://assets.example/{NEWER.key}.png"
    assert first["status"] == "baseline"

    only_a = two.json("entries", "list", "--member", "a")
    assert [e["title"] for e in only_a] == [RECENT.title, OLD.title]
    since = (NOW - timedelta(days=30)).date().isoformat()
    recent = two.json("entries", "list", "--since", since)
    assert [e["title"] for e in recent] == [NEWER.title, RECENT.title]
    assert [e["title"] for e in two.json("entries", "list", "--limit", "1")] == [
        NEWER.title
    ]

    table = two.ok("entries", "list", "--member", "a").splitlines()
    assert table[0].split() == ["id", "member", "published", "status", "title"]
    assert table[1].split()[-2:] == ["baseline", RECENT.title]
    assert len(table) == 3


def test_entries_list_refuses_bad_arguments(two: Cli) -> None:
    assert two.error("entries", "list", "--member", "zz") == (
        'kairan: error: no member with id "zz"'
    )
    assert two.error("entries", "list", "--since", "last week") == (
        "kairan: error: --since: not a date: 'last week' (use YYYY-MM-DD)"
    )


def test_entries_show_text_and_json(two: Cli) -> None:
    [entry] = two.json("entries", "list", "--member", "b")
    doc = two.json("entries", "show", str(entry["id"]))
    assert {k: doc[k] for k in entry} == entry
    assert doc["keys"][0] == f"note:{NEWER.key}"
    assert [(s["member_id"], s["feed_url"]) for s in doc["sightings"]] == [
        ("b", two.server.url("b.xml"))
    ]
    assert "生成AIの活用について報告します。" in doc["summary_html"]

    text = two.ok("entries", "show", str(entry["id"])).splitlines()
    assert f"title: {NEWER.title}" in text
    assert "member: b" in text
    assert f"link: {NEWER.url}" in text
    assert any(line.startswith(f"keys: note:{NEWER.key}") for line in text)
    assert any(
        line.startswith(f"seen in: b {two.server.url('b.xml')} (") for line in text
    )


def test_entries_remove_leaves_a_tombstone(two: Cli) -> None:
    [gone, kept] = two.json("entries", "list", "--member", "a")
    assert two.ok("entries", "remove", str(gone["id"])) == (
        f"removed entry {gone['id']} ({RECENT.title}); it will not be stored again\n"
    )
    two.serve("a", LATER, RECENT, OLD)  # a changed body: parsed again
    [report] = two.json("poll", "a")
    assert (report["status"], report["new"], report["unchanged"]) == ("ok", 1, 1)
    titles = [e["title"] for e in two.json("entries", "list", "--member", "a")]
    assert titles == [LATER.title, OLD.title]
    assert kept["title"] == OLD.title
    assert two.error("entries", "show", str(gone["id"])) == (
        f"kairan: error: no entry with id {gone['id']}"
    )
    assert (
        two.error("entries", "remove", "999") == "kairan: error: no entry with id 999"
    )


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("path", BAD_FILES, ids=lambda p: p.stem)
def test_each_config_error_is_one_line_and_exit_2(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = path.read_text(encoding="utf-8").splitlines()[0]
    assert expected.startswith("# expect: ")
    # a copy in a directory of its own, named bare (as the unit test does): the
    # message shows the bare file name, and nothing is written near the fixtures
    shutil.copy(path, tmp_path / path.name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["--config", path.name, "status"], prog_name="kairan"
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert (
        result.stderr == "kairan: error: " + expected.removeprefix("# expect: ") + "\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_missing_config_says_how_to_create_one(cli: Cli) -> None:
    assert cli.error("status") == (
        f"kairan: error: {cli.config}: no such file; run `kairan init` to create one"
    )


def debug_run(cli: Cli, *args: str) -> Result:
    return CliRunner().invoke(
        app, ["--debug", "--config", str(cli.config), *args], prog_name="kairan"
    )


def assert_traceback_then(result: Result, line: str, code: int) -> None:
    """--debug: the traceback, then the same one line, and the same exit code."""
    assert result.exit_code == code
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert result.stderr.endswith("\n" + line.removesuffix(" " + DEBUG_HINT) + "\n")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: p.mkdir(), "cannot open the database"),
        (lambda p: p.write_bytes(os.urandom(4096)), "not a usable SQLite database"),
    ],
    ids=["directory", "garbage"],
)
def test_a_broken_database_is_one_line_and_debug_shows_the_traceback(
    cli: Cli, make: Callable[[Path], object], reason: str
) -> None:
    cli.members()
    database = cli.config.parent / "state" / "kairan.sqlite3"
    database.parent.mkdir()
    make(database)
    line = cli.error("status", code=1)
    assert line.startswith(f"kairan: error: {database}: {reason}")
    assert line.endswith(DEBUG_HINT)
    assert_traceback_then(debug_run(cli, "status"), line, 1)


def test_an_internal_error_is_one_line_and_debug_shows_the_traceback(
    cli: Cli,
) -> None:
    cli.members()
    (cli.config.parent / "state").write_text("not a directory", encoding="utf-8")
    line = cli.error("status", code=1)
    assert line.startswith("kairan: ")
    assert str(cli.config.parent / "state") in line
    assert line.endswith(DEBUG_HINT)
    assert_traceback_then(debug_run(cli, "status"), line, 1)


def test_debug_keeps_the_exit_code_of_a_usage_error(two: Cli) -> None:
    line = 'kairan: error: no member with id "nobody"'
    assert two.error("poll", "nobody") == line
    assert_traceback_then(debug_run(two, "poll", "nobody"), line, 2)


def test_debug_shows_the_debug_logs_of_a_poll(two: Cli) -> None:
    result = debug_run(two, "poll", "--force")
    assert result.exit_code == 0
    assert " info poll.member member=a outcome=not_modified " in result.stderr
    assert " info poll.cycle members=2 failed=0 " in result.stderr


def test_the_config_is_found_by_env_then_in_the_working_directory(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.members(("a", cli.server.url("a.xml")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    env = CliRunner().invoke(
        app, ["members", "list", "--json"], env={"KAIRAN_CONFIG": str(cli.config)}
    )
    assert env.exit_code == 0, env.stderr
    assert [m["id"] for m in json.loads(env.stdout)] == ["a"]
    missing = CliRunner().invoke(app, ["status"], prog_name="kairan")
    assert missing.exit_code == 2
    assert missing.stderr == (
        "kairan: error: config.toml: no such file; run `kairan init` to create one\n"
    )
    monkeypatch.chdir(tmp_path)
    here = CliRunner().invoke(app, ["members", "list", "--json"])
    assert [m["id"] for m in json.loads(here.stdout)] == ["a"]


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"], prog_name="kairan")
    assert result.exit_code == 0
    assert result.stdout == f"kairan {__version__}\n"


def test_python_m_aggregator_prints_one_line_or_with_debug_a_traceback(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[poll]\nconcurrency = 0\n", encoding="utf-8")
    command = [sys.executable, "-m", "aggregator", "--config", str(bad), "status"]
    plain = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, capture_output=True, text=True, cwd=tmp_path, timeout=30, check=False
    )
    assert plain.returncode == 2
    assert plain.stdout == ""
    assert plain.stderr.splitlines() == [
        f"kairan: error: {bad}: poll.concurrency: must be between 1 and 500, got 0"
    ]

    debug = subprocess.run(  # noqa: S603
        [*command[:3], "--debug", *command[3:]],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=30,
        check=False,
    )
    assert debug.returncode == 2
    assert debug.stdout == ""
    assert debug.stderr.startswith("Traceback (most recent call last):\n")
    assert "aggregator.errors.ConfigError: " in debug.stderr
    assert debug.stderr.endswith("\n" + plain.stderr)


# --- demo ---------------------------------------------------------------------------


def test_demo_keeps_the_daemon_up_until_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-m", "aggregator", "demo", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        portal = ""
        for _ in range(200):  # the demo prints well under 200 lines
            line = proc.stdout.readline()
            if line.startswith("portal: "):
                portal = line.split()[1]
                break
        assert portal.startswith("http://127.0.0.1:")
        index = httpx.get(portal + "index.html", timeout=10)
        assert index.status_code == 200
        assert "横須賀市" in index.text
        feed = httpx.get(portal + "feed.atom", timeout=10)
        assert feed.headers["content-type"] == "application/atom+xml; charset=utf-8"
        assert "アイデアソン" in feed.text  # republished after the new article
        assert httpx.get(portal + "readyz", timeout=10).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_demo_once_tells_the_story_through_the_daemon(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--once", "--data-dir", str(data)], prog_name="kairan"
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    second = lines.index("cycle 2: nothing changed; every request is conditional")
    # Only the members that came due half an hour later; all of them answer 304.
    assert re.fullmatch(
        r"  (\d) feeds polled \(\1 not_modified\): 0 stored as baseline, "
        r"0 new, 0 edited",
        lines[second + 1],
    )
    third = lines.index("cycle 3: yokosuka has published a new article")
    assert lines[third + 1].endswith(": 0 stored as baseline, 1 new, 0 edited")
    assert "(6 not_modified, 1 ok)" in lines[third + 1]
    assert f"database: {data / 'kairan.sqlite3'}" in lines
    assert (data / "kairan.sqlite3").is_file()
    # The new article is mailed at once to one follower, in the next morning's
    # digest to the other, and both messages are files a user can open.
    assert "  sent immediate mail to taro@example.jp (1 article(s))" in lines
    assert "  sent daily mail to reader@example.com (1 article(s))" in lines
    mails = sorted((data / "mail").glob("*.eml"))
    assert [f"  {p}" for p in mails] == lines[-2:]
    # The webhook endpoint got one verified POST, whose body the receiver kept.
    assert any(
        line.startswith("  sent webhook POST to http://127.0.0.1:") for line in lines
    )
    assert "webhook: 1 verified delivery; body in:" in lines
    (body,) = (data / "webhooks").glob("msg_*.json")
    assert json.loads(body.read_text())["type"] == "article.created"
    assert (data / "public" / "index.html").is_file()
    assert (data / "public" / "feed.atom").is_file()
    first = email.message_from_bytes(mails[0].read_bytes(), policy=policy.default)
    assert first["To"] == "taro@example.jp"
    assert "アイデアソン" in first["Subject"]
