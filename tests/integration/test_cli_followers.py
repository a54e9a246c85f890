"""The followers' CLI end to end: subscribers, deliveries, digest preview, deliver.

Real config.toml and SQLite, the sandbox feed server for articles and the
sandbox SMTP sink for mail; the CLI runs in-process on the system clock.
"""

from __future__ import annotations

import csv
import email
import io
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from pathlib import Path
from typing import Any

import pytest

from aggregator.cli.subscriber_csv import COLUMNS, RECORD_COLUMNS
from aggregator.clock import SystemClock
from aggregator.sandbox.feed_server import FeedServer
from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.timefmt import to_db
from tests.integration.test_cli import Cli, config_text
from tests.support.feeds import Item, note_key

SENDER = "kairan@example.jp"
OLD = Item(note_key(1), "議事録要約の試行")
# A date in the future is stored as the time the article was first seen: always
# after the subscriber's notify_since, so it is mailed.
FRESH = Item(
    note_key(2),
    "生成AI研修を実施しました",
    published=SystemClock().now() + timedelta(days=3650),
)


class Followers(Cli):
    """A Cli whose config has member "a" and, when given, an [email] section."""

    def write(self, *, smtp_port: int | None = None, sender: bool = True) -> None:
        text = config_text([("a", self.server.url("a.xml"))]).replace(
            "[poll]\n",
            "[poll]\nparse_workers = 0\n",  # no worker processes to start
        )
        text += "\n[email]\n"
        if smtp_port is not None:
            text += f'host = "127.0.0.1"\nport = {smtp_port}\ntimeout = 5\n'
        if sender:
            text += f'from = "{SENDER}"\n'
        self.config.write_text(text, encoding="utf-8")

    def add(self, address: str, *options: str) -> int:
        out = self.ok("subscribers", "add", address, *options)
        first = out.splitlines()[0]
        assert first.startswith("added subscriber ")
        return int(first.split()[2])

    def doc(self, who: str | int) -> Any:
        return self.json("subscribers", "show", str(who))

    def deliveries(self, *options: str) -> Any:
        return self.json("deliveries", "list", *options)

    def fresh_article(self) -> None:
        """Member a publishes FRESH after a first poll stored OLD as its baseline
        (never mailed)."""
        self.serve("a", OLD)
        self.ok("poll")
        self.serve("a", FRESH, OLD)
        [report] = self.json("poll", "--force")
        assert report["new"] == 1, report

    def database_dump(self) -> list[str]:
        path = self.config.parent / "state" / "kairan.sqlite3"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()


@pytest.fixture
def cli(tmp_path: Path, feed_server: FeedServer) -> Followers:
    followers = Followers(tmp_path / "config.toml", feed_server)
    followers.write()
    return followers


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def mailing(cli: Followers, sink: SmtpSink) -> Followers:
    cli.write(smtp_port=sink.port)
    return cli


def write_csv(path: Path, text: str, *, bom: bool = False) -> str:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return str(path)


# --- add ------------------------------------------------------------------------------


def test_add_is_pending_with_a_queued_confirmation(cli: Followers) -> None:
    out = cli.ok("subscribers", "add", "taro@example.jp", "--schedule", "daily")
    lines = out.splitlines()
    assert lines[0] == (
        "added subscriber 1 (taro@example.jp), pending: daily 08:00 Asia/Tokyo, "
        "ja, all articles"
    )
    assert lines[1].startswith(
        "the confirmation mail is queued: the next `kairan deliver` (or the daemon) "
        "sends it; the link works until "
    )
    doc = cli.doc(1)
    assert (doc["state"], doc["confirmed_at"], doc["notify_since"]) == (
        "pending",
        None,
        None,
    )
    assert doc["deliveries"]["pending"] == 1
    [confirmation] = cli.deliveries()
    assert (confirmation["kind"], confirmation["state"]) == ("confirmation", "pending")
    assert confirmation["entry_id"] is None


def test_add_confirmed_is_active_and_records_the_consent(cli: Followers) -> None:
    subscriber = cli.add(
        "Hanako@EXAMPLE.JP", "--confirmed", "--schedule", "weekly", "--weekday",
        "水", "--hour", "7", "--member", "a", "--tag", "AI", "--keyword", "議事録",
        "--timezone", "Europe/Paris", "--language", "en",
    )  # fmt: skip
    doc = cli.doc(subscriber)
    assert doc["email"] == "Hanako@example.jp"  # domain lower-cased, local part kept
    assert doc["state"] == "active"
    assert (doc["schedule"], doc["hour"], doc["weekday"]) == ("weekly", 7, "wed")
    assert (doc["members"], doc["tags"], doc["keywords"]) == (["a"], ["AI"], ["議事録"])
    assert (doc["timezone"], doc["language"]) == ("Europe/Paris", "en")
    assert doc["consent_source"] == "cli"
    assert doc["consent_origin"].startswith("cli:")
    assert doc["consent_at"] == doc["created_at"] == doc["confirmed_at"]
    assert doc["notify_since"] == doc["confirmed_at"]
    assert doc["deliveries"] == dict.fromkeys(
        ("pending", "sending", "retry", "sent", "failed", "cancelled"), 0
    )
    assert cli.deliveries() == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["taro@example.jp"],
            "taro@example.jp is already subscriber 1 (active)",
        ),
        (
            ["TARO@example.jp"],
            "TARO@example.jp is already subscriber 1 (active)",
        ),
        (
            ["x@example.jp\r\nBcc: victim@example.jp"],
            "invalid e-mail address 'x@example.jp\\r\\nBcc: victim@example.jp': "
            "contains a line break",
        ),
        (
            ["Taro <x@example.jp>"],
            "invalid e-mail address 'Taro <x@example.jp>': a display name or angle "
            "brackets are not accepted",
        ),
        (
            ["x@example.jp", "--timezone", "Mars/Olympus"],
            '--timezone: unknown time zone "Mars/Olympus" (use an IANA name such as '
            '"Asia/Tokyo")',
        ),
        (["x@example.jp", "--member", "zz"], '--member: no member with id "zz"'),
        (
            ["x@example.jp", "--weekday", "funday"],
            "--weekday: unknown weekday 'funday': use 0-6 (0 = monday), mon-sun or "
            "月-日",
        ),
        (["x@example.jp", "--hour", "24"], "--hour: must be an hour 0-23, got '24'"),
        (["x@example.jp", "--hour", "8am"], "--hour: must be an hour 0-23, got '8am'"),
        (
            ["x@example.jp", "--schedule", "hourly"],
            "--schedule: must be immediate, daily or weekly, got 'hourly'",
        ),
        (
            ["x@example.jp", "--language", "fr"],
            "--language: must be ja or en, got 'fr'",
        ),
        (
            ["x@example.jp", "--keyword", "a;b"],
            "--keyword: 'a;b' contains ';'",
        ),
    ],
    ids=[
        "duplicate", "duplicate-case", "crlf", "display-name", "timezone", "member",
        "weekday", "hour", "hour-text", "schedule", "language", "separator",
    ],
)  # fmt: skip
def test_add_refuses_bad_input_with_one_line(
    cli: Followers, args: list[str], line: str
) -> None:
    cli.add("taro@example.jp", "--confirmed")
    before = cli.database_dump()
    assert cli.error("subscribers", "add", *args) == f"kairan: error: {line}"
    assert cli.database_dump() == before


# --- list, show -----------------------------------------------------------------------


def test_list_shows_the_schedule_and_filters_and_filters_by_state(
    cli: Followers,
) -> None:
    cli.add("a@example.jp", "--confirmed")
    cli.add("b@example.jp", "--schedule", "daily", "--hour", "9", "--member", "a")
    cli.add("c@example.jp", "--confirmed", "--schedule", "weekly", "--weekday", "fri")
    table = cli.ok("subscribers", "list").splitlines()
    assert table[0].split() == [
        "id", "email", "state", "schedule", "filters", "timezone", "language",
        "created",
    ]  # fmt: skip
    assert table[1].split()[:5] == ["1", "a@example.jp", "active", "immediate", "all"]
    assert table[2].split()[:7] == [
        "2", "b@example.jp", "pending", "daily", "09:00", "members:", "a",
    ]  # fmt: skip
    assert table[3].split()[3:6] == ["weekly", "fri", "08:00"]
    assert table[-1] == "created in Asia/Tokyo"

    docs = cli.json("subscribers", "list")
    assert [d["email"] for d in docs] == [
        "a@example.jp",
        "b@example.jp",
        "c@example.jp",
    ]
    assert set(docs[0]) == {
        "id", "kind", "email", "state", "schedule", "hour", "weekday", "timezone",
        "language", "members", "tags", "keywords", "created_at", "confirmed_at",
        "notify_since", "consent_at", "consent_source", "consent_origin",
        "hard_bounces", "state_reason",
    }  # fmt: skip
    assert docs[0]["created_at"].endswith("Z")
    pending = cli.json("subscribers", "list", "--state", "pending")
    assert [d["email"] for d in pending] == ["b@example.jp"]
    both = cli.json("subscribers", "list", "--state", "pending", "--state", "active")
    assert len(both) == 3
    assert cli.error("subscribers", "list", "--state", "gone") == (
        "kairan: error: --state: must be one of pending, active, paused, "
        "unsubscribed, bouncing, disabled, got 'gone'"
    )


def test_show_finds_by_id_or_address_and_prints_the_consent(cli: Followers) -> None:
    cli.add("taro@example.jp", "--confirmed")
    assert cli.doc("TARO@example.jp")["id"] == 1
    text = cli.ok("subscribers", "show", "taro@example.jp").splitlines()
    assert "email: taro@example.jp" in text
    assert "schedule: immediate" in text
    assert "filters: all articles" in text
    assert "deliveries: none" in text
    assert any(
        line.startswith("consent: ") and "via cli (cli:" in line for line in text
    )
    assert text[-1] == "times in Asia/Tokyo"
    assert cli.error("subscribers", "show", "7") == "kairan: error: no subscriber 7"
    assert cli.error("subscribers", "show", "nobody@example.jp") == (
        "kairan: error: no subscriber nobody@example.jp"
    )


# --- update, pause, resume --------------------------------------------------------


def test_update_changes_only_the_options_given(cli: Followers) -> None:
    cli.add("taro@example.jp", "--confirmed", "--member", "a", "--tag", "ai")
    out = cli.ok("subscribers", "update", "1", "--schedule", "daily", "--hour", "18")
    assert out == (
        "updated subscriber 1 (taro@example.jp): daily 18:00 Asia/Tokyo, ja, "
        "members: a; tags: ai\n"
    )
    cli.ok("subscribers", "update", "taro@example.jp", "--keyword", "研修")
    doc = cli.doc(1)
    assert (doc["schedule"], doc["hour"]) == ("daily", 18)
    assert (doc["members"], doc["tags"], doc["keywords"]) == (["a"], ["ai"], ["研修"])

    cli.ok("subscribers", "update", "1", "--clear-filters", "--tag", "東京都")
    doc = cli.doc(1)
    assert (doc["members"], doc["tags"], doc["keywords"]) == ([], ["東京都"], [])
    assert doc["state"] == "active"
    assert cli.error("subscribers", "update", "1") == (
        "kairan: error: nothing to change: give at least one option (see --help)"
    )
    assert cli.error("subscribers", "update", "1", "--timezone", "Tokyo") == (
        'kairan: error: --timezone: unknown time zone "Tokyo" (use an IANA name '
        'such as "Asia/Tokyo")'
    )
    assert cli.doc(1)["timezone"] == "Asia/Tokyo"


def test_pause_and_resume(cli: Followers) -> None:
    cli.add("taro@example.jp", "--confirmed")
    assert cli.ok("subscribers", "pause", "1") == (
        "paused subscriber 1 (taro@example.jp)\n"
    )
    doc = cli.doc(1)
    assert (doc["state"], doc["state_reason"]) == ("paused", "paused by operator")
    assert cli.error("subscribers", "pause", "1") == (
        "kairan: error: subscriber 1 is paused, not active"
    )
    assert cli.ok("subscribers", "resume", "taro@example.jp") == (
        "resumed subscriber 1 (taro@example.jp)\n"
    )
    assert cli.doc(1)["state"] == "active"
    assert cli.error("subscribers", "resume", "1").startswith(
        "kairan: error: subscriber 1 is active; only paused"
    )


# --- remove ---------------------------------------------------------------------------


def test_remove_unsubscribes_and_cancels_what_is_unsent(cli: Followers) -> None:
    cli.add("taro@example.jp")  # pending: its confirmation is queued
    assert cli.ok("subscribers", "remove", "taro@example.jp") == (
        "unsubscribed subscriber 1 (taro@example.jp); cancelled 1 unsent delivery\n"
    )
    doc = cli.doc(1)
    assert (doc["state"], doc["state_reason"]) == (
        "unsubscribed",
        "removed by operator",
    )
    [row] = cli.deliveries()
    assert (row["state"], row["last_error"]) == ("cancelled", "removed by operator")
    assert cli.ok("deliver") == "nothing is due\n"
    assert cli.error("subscribers", "remove", "1") == (
        "kairan: error: subscriber 1 is already unsubscribed (--forget erases it)"
    )


def test_forget_erases_and_the_address_cannot_be_added_again(cli: Followers) -> None:
    cli.add("taro@example.jp")
    out = cli.ok("subscribers", "remove", "1", "--forget")
    assert out.startswith("forgot subscriber 1 (taro@example.jp): its data and ")
    assert cli.json("subscribers", "list") == []
    assert cli.deliveries() == []
    assert cli.error("subscribers", "show", "taro@example.jp") == (
        "kairan: error: no subscriber taro@example.jp"
    )
    line = cli.error("subscribers", "add", "Taro@Example.jp", "--confirmed")
    assert line.startswith("kairan: error: Taro@example.jp asked to be forgotten on ")
    dump = "\n".join(cli.database_dump())
    assert "taro@" not in dump.lower()  # only the suppression hash is left


# --- import, export -------------------------------------------------------------------


def test_import_adds_pending_subscribers_and_skips_existing_ones(
    cli: Followers, tmp_path: Path
) -> None:
    cli.add("old@example.jp", "--confirmed")
    path = write_csv(
        tmp_path / "people.csv",
        "Email,Schedule,Hour,Weekday,Timezone,Language,Members,Tags,Keywords\r\n"
        "taro@example.jp,daily,7,,,en,a,ai|x;東京都, 研修 \r\n"
        "\r\n"
        "hanako@example.jp\r\n"
        "OLD@example.jp,weekly\r\n",
        bom=True,
    )
    out = cli.ok("subscribers", "import", path).splitlines()
    assert out[0] == (
        f"imported 2 subscribers from {path} (2 pending); skipped 1 already "
        "subscribed, 0 other"
    )
    assert out[1].startswith("the confirmation mails are queued: the next ")
    taro = cli.doc("taro@example.jp")
    assert (taro["state"], taro["schedule"], taro["hour"]) == ("pending", "daily", 7)
    assert (taro["language"], taro["timezone"]) == ("en", "Asia/Tokyo")
    assert (taro["members"], taro["tags"], taro["keywords"]) == (
        ["a"],
        ["ai|x", "東京都"],
        ["研修"],
    )
    assert (taro["consent_source"], taro["consent_origin"]) == (
        "import",
        "import:people.csv",
    )
    hanako = cli.doc("hanako@example.jp")
    assert (hanako["schedule"], hanako["hour"], hanako["weekday"]) == (
        "immediate",
        8,
        "mon",
    )
    assert cli.doc("old@example.jp")["schedule"] == "immediate"  # untouched
    confirmations = cli.deliveries("--state", "pending")
    assert sorted(d["address"] for d in confirmations) == [
        "hanako@example.jp",
        "taro@example.jp",
    ]
    again = cli.ok("subscribers", "import", path, "--confirmed")
    assert "imported 0 subscribers" in again
    assert "skipped 3 already subscribed" in again


def test_import_is_all_or_nothing_and_names_every_bad_row(
    cli: Followers, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "bad.csv",
        "email,timezone,members,hour\n"
        "good@example.jp,,,\n"
        "tz@example.jp,Mars/Olympus,,\n"
        '"multi\nline@example.jp",,,\n'
        "member@example.jp,,a;zz,\n"
        "hour@example.jp,,,25\n"
        "good@example.jp,,,\n"
        "extra@example.jp,,,,surplus\n",
    )
    result = cli.run("subscribers", "import", path)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f'{path}:3: timezone: unknown time zone "Mars/Olympus" (use an IANA name '
        'such as "Asia/Tokyo")',
        f"{path}:4: invalid e-mail address 'multi\\nline@example.jp': contains a "
        "line break",
        f'{path}:6: members: no member with id "zz"',
        f"{path}:7: hour: must be an hour 0-23, got '25'",
        f"{path}:8: good@example.jp is on line 2 already",
        f"{path}:9: 1 cell more than the header names",
        f"kairan: error: {path}: 6 bad rows; nothing was imported",
    ]
    assert cli.json("subscribers", "list") == []


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"", "{path}: empty; the first line must name the columns"),
        (b"schedule,tags\ndaily,y\n", "{path}:1: no email column"),
        (
            b"email,colour\nx@example.jp,red\n",
            "{path}:1: unknown column 'colour' (known: email, schedule, hour, "
            "weekday, timezone, language, members, tags, keywords, id, state, "
            "created_at, confirmed_at, consent_at, consent_source, consent_origin)",
        ),
        (
            b"email,email\nx@example.jp,y\n",
            "{path}:1: the column 'email' appears twice",
        ),
        (
            b"email\nx@example.jp\n\x83e\x83X\x83g@example.jp\n",
            "{path}:3: not UTF-8 (save the file as CSV UTF-8)",
        ),
    ],
    ids=["empty", "no-email", "unknown-column", "twice", "shift-jis"],
)
def test_import_refuses_a_file_it_cannot_read(
    cli: Followers, tmp_path: Path, content: bytes, line: str
) -> None:
    path = tmp_path / "file.csv"
    path.write_bytes(content)
    assert cli.error("subscribers", "import", str(path)) == (
        "kairan: error: " + line.format(path=path)
    )


def test_export_then_import_round_trips(
    cli: Followers, tmp_path: Path, feed_server: FeedServer
) -> None:
    cli.add(
        "taro@example.jp", "--confirmed", "--schedule", "weekly", "--weekday", "sun",
        "--hour", "21", "--member", "a", "--tag", "ai", "--tag", "東京都",
        "--keyword", "議事録, 要約", "--keyword", '"引用"', "--timezone",
        "America/New_York", "--language", "en",
    )  # fmt: skip
    cli.add("hanako@example.jp", "--schedule", "daily")  # pending
    cli.add("jiro@example.jp", "--confirmed")
    cli.ok("subscribers", "remove", "jiro@example.jp")  # unsubscribed
    exported = cli.ok("subscribers", "export")
    assert exported == cli.ok("subscribers", "export", "--csv")
    header, *rows = list(csv.reader(io.StringIO(exported)))
    assert tuple(header) == COLUMNS + RECORD_COLUMNS
    assert rows[0][: len(COLUMNS)] == [
        "taro@example.jp", "weekly", "21", "sun", "America/New_York", "en", "a",
        "ai;東京都", '議事録, 要約;"引用"',
    ]  # fmt: skip
    json_docs = cli.json("subscribers", "export")
    assert json_docs == cli.json("subscribers", "list")

    other = Followers(tmp_path / "other" / "config.toml", feed_server)
    other.config.parent.mkdir()
    other.write()
    path = write_csv(tmp_path / "export.csv", exported)
    out = other.ok("subscribers", "import", path, "--confirmed").splitlines()
    assert (
        out[0] == f"{path}:4: jiro@example.jp is unsubscribed (state column); skipped"
    )
    assert out[1] == (
        f"imported 2 subscribers from {path} (1 pending); skipped 0 already "
        "subscribed, 1 other"
    )

    def settings(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{c: d[c] for c in COLUMNS} for d in docs]

    imported = other.json("subscribers", "export")
    assert settings(imported) == settings(json_docs[:2])
    assert [d["state"] for d in imported] == ["active", "pending"]
    assert {d["consent_source"] for d in imported} == {"import"}
    other_rows = list(csv.reader(io.StringIO(other.ok("subscribers", "export"))))
    assert [r[: len(COLUMNS)] for r in other_rows[1:]] == [
        r[: len(COLUMNS)] for r in rows[:2]
    ]


def test_import_reports_a_forgotten_address_and_skips_it(
    cli: Followers, tmp_path: Path
) -> None:
    cli.add("taro@example.jp")
    cli.ok("subscribers", "remove", "taro@example.jp", "--forget")
    path = write_csv(tmp_path / "again.csv", "email\ntaro@example.jp\nnew@example.jp\n")
    out = cli.ok("subscribers", "import", path, "--confirmed").splitlines()
    assert out[0].startswith(f"{path}:2: taro@example.jp asked to be forgotten on ")
    assert out[0].endswith("; skipped")
    assert out[1] == (
        f"imported 1 subscriber from {path} (0 pending); skipped 0 already "
        "subscribed, 1 other"
    )
    assert [d["email"] for d in cli.json("subscribers", "list")] == ["new@example.jp"]


def test_import_and_export_refuse_bad_arguments(cli: Followers, tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    assert cli.error("subscribers", "import", str(missing)) == (
        f"kairan: error: {missing}: cannot read: No such file or directory"
    )
    assert cli.error("subscribers", "export", "--json", "--csv") == (
        "kairan: error: give --json or --csv, not both"
    )


# --- deliver --------------------------------------------------------------------------


def test_deliver_sends_the_confirmation_once(
    mailing: Followers, sink: SmtpSink
) -> None:
    mailing.add("taro@example.jp")
    out = mailing.ok("deliver").splitlines()
    assert out == [
        "subscriber 1 taro@example.jp: confirmation: sent",
        "1 message: 1 sent, 0 to retry, 0 failed",
    ]
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ("taro@example.jp",)
    assert received.mail_from == SENDER
    body = received.message.get_body(("plain",))
    assert body is not None
    assert "http://localhost:8080/confirm/" in body.get_content()

    assert mailing.ok("deliver") == "nothing is due\n"
    assert sink.count == 1
    [row] = mailing.deliveries("--state", "sent")
    assert row["message_id"] == received.message["Message-ID"]
    assert row["sent_at"] is not None


def test_deliver_sends_new_articles_to_whom_they_are_due(
    mailing: Followers, sink: SmtpSink
) -> None:
    mailing.add("now@example.jp", "--confirmed")
    mailing.add("daily@example.jp", "--confirmed", "--schedule", "daily")
    mailing.fresh_article()
    dry = mailing.ok("deliver", "--dry-run").splitlines()
    assert dry == [
        "subscriber 1 now@example.jp: immediate, 1 article: due (dry run)",
        "dry run: 1 message due; nothing was sent",
    ]
    assert mailing.deliveries("--state", "pending", "--subscriber", "1")[0][
        "title"
    ] == (FRESH.title)
    [result] = mailing.json("deliver")
    assert result | {"batch_id": 0} == {
        "batch_id": 0,
        "subscriber_id": 1,
        "address": "now@example.jp",
        "channel": "email",
        "kind": "immediate",
        "articles": 1,
        "outcome": "sent",
        "error": None,
        "retry_at": None,
    }
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ("now@example.jp",)
    assert FRESH.title in str(received.message["Subject"])
    assert mailing.ok("deliver") == "nothing is due\n"
    # the daily subscriber's digest waits for its hour
    [waiting] = mailing.deliveries("--subscriber", "daily@example.jp")
    assert waiting["state"] == "pending"
    assert waiting["due_at"] > to_db(SystemClock().now())
    assert sink.count == 1


def test_deliver_for_one_subscriber_only(mailing: Followers, sink: SmtpSink) -> None:
    mailing.add("one@example.jp")
    mailing.add("two@example.jp")
    out = mailing.ok("deliver", "--subscriber", "two@example.jp").splitlines()
    assert out[0] == "subscriber 2 two@example.jp: confirmation: sent"
    [received] = sink.wait_for(1)
    assert received.rcpt_tos == ("two@example.jp",)
    assert [d["address"] for d in mailing.deliveries("--state", "pending")] == [
        "one@example.jp"
    ]


def test_a_4xx_is_retried_later_and_retry_makes_it_due_now(
    mailing: Followers, sink: SmtpSink
) -> None:
    mailing.add("taro@example.jp")
    sink.fail_next(1, 451)
    [line, summary] = mailing.ok("deliver").splitlines()
    assert line.startswith("subscriber 1 taro@example.jp: confirmation: retry at ")
    assert "451" in line
    assert summary == "1 message: 0 sent, 1 to retry, 0 failed (times in Asia/Tokyo)"
    assert mailing.ok("deliver") == "nothing is due\n"  # not before its time
    [row] = mailing.deliveries("--state", "retry")
    assert row["attempts"] == 1
    assert mailing.ok("deliveries", "retry", str(row["id"])) == (
        "1 delivery due again now; the next `kairan deliver` (or the daemon) sends "
        "them\n"
    )
    assert mailing.ok("deliver").splitlines()[0].endswith(": confirmation: sent")
    [received] = sink.wait_for(1)
    # the same message as the attempt that failed: its Message-ID was fixed at claim
    assert received.message["Message-ID"] == row["message_id"]


def test_a_5xx_fails_and_retry_failed_sends_it_again(
    mailing: Followers, sink: SmtpSink
) -> None:
    mailing.add("taro@example.jp")
    sink.reject("taro@example.jp")
    [line, summary] = mailing.ok("deliver").splitlines()
    assert line.startswith("subscriber 1 taro@example.jp: confirmation: failed: ")
    assert "550" in line
    assert summary == "1 message: 0 sent, 0 to retry, 1 failed"
    assert mailing.doc(1)["hard_bounces"] == 1
    [failed] = mailing.deliveries("--state", "failed")
    assert "550" in failed["last_error"]
    table = mailing.ok("deliveries", "list").splitlines()
    assert table[0].split() == ["id", "state", "due", "tries", "to", "article", "note"]
    assert table[1].split()[:2] == [str(failed["id"]), "failed"]

    sink.reset()
    assert mailing.ok("deliveries", "retry", "--failed").startswith(
        "1 delivery due again now"
    )
    assert mailing.ok("deliveries", "retry", "--failed") == "no failed deliveries\n"
    assert mailing.ok("deliver").splitlines()[0].endswith(": confirmation: sent")
    assert sink.wait_for(1)[0].rcpt_tos == ("taro@example.jp",)


def test_deliver_and_deliveries_refuse_bad_arguments(cli: Followers) -> None:
    cli.add("taro@example.jp")
    assert cli.error("deliver", "--channel", "sms") == (
        "kairan: error: no channel 'sms' (available: email, webhook)"
    )
    assert cli.error("deliver", "--subscriber", "9") == "kairan: error: no subscriber 9"
    assert cli.error("deliveries", "retry") == (
        "kairan: error: give delivery ids or --failed"
    )
    assert cli.error("deliveries", "retry", "1", "--failed") == (
        "kairan: error: give delivery ids or --failed, not both"
    )
    assert cli.error("deliveries", "retry", "99") == "kairan: error: no delivery 99"
    assert cli.error("deliveries", "list", "--state", "lost") == (
        "kairan: error: --state: must be one of pending, sending, retry, sent, "
        "failed, cancelled, got 'lost'"
    )
    assert cli.deliveries("--state", "sent") == []
    assert len(cli.deliveries("--state", "pending", "--limit", "1")) == 1


def test_deliver_without_a_sender_is_a_config_error(cli: Followers) -> None:
    cli.write(sender=False)
    cli.add("taro@example.jp")
    assert cli.error("deliver") == (
        f"kairan: error: {cli.config}: email.from: must be set before kairan can "
        "send e-mail"
    )
    assert cli.deliveries()[0]["state"] == "pending"


def test_add_without_a_sender_says_to_set_one(cli: Followers) -> None:
    cli.write(sender=False)
    out = cli.ok("subscribers", "add", "taro@example.jp").splitlines()
    assert out[-1] == f"note: set [email] from in {cli.config} before sending"


# --- digest preview -------------------------------------------------------------------


def test_preview_renders_the_next_mail_and_changes_nothing(cli: Followers) -> None:
    cli.add("taro@example.jp", "--confirmed", "--schedule", "daily")
    assert cli.ok("digest", "preview", "1") == (
        "nothing to preview: no unsent articles for subscriber 1 "
        "(taro@example.jp, active)\n"
    )
    cli.fresh_article()
    before = cli.database_dump()
    text = cli.ok("digest", "preview", "taro@example.jp")
    assert text.startswith("Subject: ")
    assert FRESH.title in text
    assert "http://localhost:8080/unsubscribe/" in text
    html = cli.ok("digest", "preview", "1", "--format", "html")
    assert "<html" in html
    assert FRESH.title in html
    result = cli.run("digest", "preview", "1", "--format", "eml")
    assert result.exit_code == 0
    message = email.message_from_bytes(result.stdout_bytes, policy=policy.default)
    assert message["Message-ID"] == "<preview@localhost>"
    assert message["To"] == "taro@example.jp"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message.get_content_type() == "multipart/alternative"
    assert cli.database_dump() == before
    [row] = cli.deliveries()
    assert (row["state"], row["attempts"], row["message_id"]) == ("pending", 0, None)
    assert cli.error("digest", "preview", "1", "--format", "pdf") == (
        "kairan: error: --format: must be text, html or eml, got 'pdf'"
    )


# --- help -----------------------------------------------------------------------------

COMMANDS = [
    ["subscribers", "add"], ["subscribers", "list"], ["subscribers", "show"],
    ["subscribers", "update"], ["subscribers", "pause"], ["subscribers", "resume"],
    ["subscribers", "remove"], ["subscribers", "import"], ["subscribers", "export"],
    ["deliveries", "list"], ["deliveries", "retry"], ["digest", "preview"],
    ["deliver"],
]  # fmt: skip


def test_every_command_has_help(cli: Followers) -> None:
    for command in COMMANDS:
        out = cli.ok(*command, "--help")
        assert "Usage: kairan " + " ".join(command) in out, command
