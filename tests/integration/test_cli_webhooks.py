"""The webhook CLI end to end: add, show, list, test, rotate-secret, enable, deliver.

Real config.toml and SQLite, the sandbox feed server for articles and the sandbox
webhook receiver, which verifies every POST with the `standardwebhooks` library;
the CLI runs in-process on the system clock.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator import logs
from aggregator.cli.webhooks import SHOWN_ONCE
from aggregator.clock import SystemClock
from aggregator.sandbox.feed_server import FeedServer
from aggregator.sandbox.webhook_receiver import WebhookReceiver
from aggregator.timefmt import from_db_required
from tests.integration.test_cli import Cli, config_text
from tests.support.feeds import Item, note_key
from tests.support.webhooks import (
    body_of,
    free_port,
    running_receiver,
    signatures,
    verifies,
)

OLD = Item(note_key(1), "議事録要約の試行")
# A date in the future is stored as the time the article was first seen: always
# after the endpoint's notify_since, so it is sent.
FRESH = Item(
    note_key(2),
    "生成AI研修を実施しました",
    published=SystemClock().now() + timedelta(days=3650),
)
WEBHOOK_ID = re.compile(r"msg_[0-9a-f]{32}")
LIFTS = "([webhooks] allow_private_addresses = true lifts the guard)"


class Hooks(Cli):
    """A Cli whose config has member "a" and a [webhooks] section."""

    def write(self, *, allow_private: bool = True) -> None:
        text = config_text([("a", self.server.url("a.xml"))]).replace(
            "[poll]\n", "[poll]\nparse_workers = 0\n"
        )
        private = "true" if allow_private else "false"
        text += f"\n[webhooks]\ntimeout = 1\nallow_private_addresses = {private}\n"
        self.config.write_text(text, encoding="utf-8")

    def add_webhook(self, url: str, *options: str) -> tuple[int, str]:
        """The new endpoint's id and the secret printed once."""
        out = self.ok("subscribers", "add", "--webhook", url, *options)
        first, secret, note = out.splitlines()
        assert first.startswith(f"added webhook subscriber {first.split()[3]} ({url})")
        assert note == SHOWN_ONCE
        return int(first.split()[3]), secret.removeprefix("secret: ")

    def fresh_article(self) -> None:
        """Member a publishes FRESH after a first poll stored OLD as its baseline."""
        self.serve("a", FRESH, OLD)
        [report] = self.json("poll", "--force")
        assert report["new"] == 1, report

    def doc(self, who: int) -> Any:
        return self.json("subscribers", "show", str(who))


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[WebhookReceiver]:
    try:
        yield from running_receiver()
    finally:
        # Each in-process CLI run points the kairan logger at CliRunner's stderr,
        # closed once the run returns; the receiver's server logs as it stops.
        logs.setup(stream=sys.stderr)


@pytest.fixture
def cli(tmp_path: Path, feed_server: FeedServer) -> Hooks:
    hooks = Hooks(tmp_path / "config.toml", feed_server)
    hooks.write()
    return hooks


@pytest.fixture
def baseline(cli: Hooks) -> None:
    """Member a polled once: OLD is its baseline, never sent."""
    cli.serve("a", OLD)
    cli.ok("poll")


def is_secret(text: str) -> bool:
    """Standard Webhooks form: whsec_ + base64 of 24 to 64 random bytes."""
    raw = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    return text.startswith("whsec_") and 24 <= len(raw) <= 64


# --- add, show, list ------------------------------------------------------------------


def test_add_prints_the_secret_once_and_nothing_shows_it_again(
    cli: Hooks, receiver: WebhookReceiver
) -> None:
    sid, secret = cli.add_webhook(receiver.url, "--member", "a", "--keyword", "AI")
    assert is_secret(secret)
    shown = cli.ok("subscribers", "show", str(sid), "--json")
    assert secret not in shown
    doc = json.loads(shown)
    assert (doc["kind"], doc["url"], doc["state"]) == (
        "webhook",
        receiver.url,
        "active",
    )
    assert (doc["members"], doc["keywords"]) == (["a"], ["AI"])
    assert doc["secrets"] == [{"expires_at": None}]
    assert doc["notify_since"] is not None
    assert secret not in cli.ok("subscribers", "show", str(sid))

    listed = cli.ok("subscribers", "list", "--webhooks", "--json")
    assert secret not in listed
    [row] = json.loads(listed)
    assert (row["id"], row["url"], row["state"]) == (sid, receiver.url, "active")
    table = cli.ok("subscribers", "list", "--webhooks")
    assert secret not in table
    assert receiver.url in table
    assert "failing since" in table.splitlines()[0]
    assert cli.ok("subscribers", "list").splitlines() == [
        "no subscribers",
        "and 1 webhook endpoint: `kairan subscribers list --webhooks`",
    ]


def test_add_refuses_mail_options_for_a_webhook(
    cli: Hooks, receiver: WebhookReceiver
) -> None:
    line = cli.error("subscribers", "add", "--webhook", receiver.url, "--hour", "9")
    assert line == "kairan: error: --hour is for e-mail subscribers, not --webhook"
    assert cli.json("subscribers", "list", "--webhooks") == []


# Each spelling of a destination in the operator's network, and why it is refused.
UNSAFE = [
    ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://0x7f.1/", "127.0.0.1 is a loopback address"),
    ("http://[::ffff:127.0.0.1]/", "embeds 127.0.0.1 (IPv4-mapped"),
    ("http://169.254.169.254/latest", "the cloud metadata service"),
    ("ftp://example.com/", "only http and https URLs are accepted"),
    ("http://user:pw@example.com/", "credentials in the URL are not accepted"),
]


def test_add_refuses_unsafe_destinations_with_the_reason(
    cli: Hooks, receiver: WebhookReceiver
) -> None:
    cli.write(allow_private=False)
    for template, reason in UNSAFE:
        url = template.format(port=receiver.port)
        line = cli.error("subscribers", "add", "--webhook", url)
        assert line.startswith(f"kairan: error: --webhook {url}: "), line
        assert reason in line, line
        assert line.endswith(LIFTS), line
    assert cli.json("subscribers", "list", "--webhooks") == []  # nothing stored
    assert receiver.requests == []


# --- test, rotate-secret -------------------------------------------------------------


def test_test_sends_a_verified_ping_and_prints_the_answer(
    cli: Hooks, receiver: WebhookReceiver
) -> None:
    sid, secret = cli.add_webhook(receiver.url)
    receiver.secrets.append(secret)
    status, answer = cli.ok("subscribers", "test", str(sid)).splitlines()
    match = re.fullmatch(
        rf"HTTP 200 from {re.escape(receiver.url)} in \d+\.\d\d s "
        rf"\(webhook-id ({WEBHOOK_ID.pattern})\)",
        status,
    )
    assert match is not None, status
    assert answer == "ok"
    [ping] = receiver.accepted
    assert ping.webhook_id == match[1]
    document = body_of(ping)
    assert (document["type"], document["data"]) == (
        "ping",
        {"message": "Kairan webhook test"},
    )
    assert cli.json("deliveries", "list") == []  # a ping is not a delivery


def test_test_against_a_dead_port_is_one_line_and_exit_2(cli: Hooks) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    sid, _ = cli.add_webhook(url)
    line = cli.error("subscribers", "test", str(sid))
    assert line.startswith(
        f"kairan: error: webhook subscriber {sid} ({url}): cannot connect to 127.0.0.1"
    )


def test_rotate_secret_prints_the_new_one_and_both_sign_meanwhile(
    cli: Hooks, receiver: WebhookReceiver
) -> None:
    sid, old = cli.add_webhook(receiver.url)
    before = SystemClock().now()
    out = cli.ok("subscribers", "rotate-secret", str(sid), "--overlap", "2h")
    headline, secret_line, until = out.splitlines()
    assert (
        headline == f"rotated the secret of webhook subscriber {sid} ({receiver.url})"
    )
    new = secret_line.removeprefix("secret: ")
    assert is_secret(new)
    assert new != old
    assert re.fullmatch(
        r"both secrets sign until \d{4}-\d\d-\d\d \d\d:\d\d \(Asia/Tokyo\); "
        r"switch the receiver to the new one before then",
        until,
    )
    shown = cli.ok("subscribers", "show", str(sid), "--json")
    assert old not in shown
    assert new not in shown
    newest, previous = json.loads(shown)["secrets"]
    assert newest == {"expires_at": None}
    expires = from_db_required(previous["expires_at"]) - before
    assert timedelta(hours=2) - timedelta(minutes=1) < expires <= timedelta(hours=2)

    receiver.secrets.append(new)
    cli.ok("subscribers", "test", str(sid))
    [ping] = receiver.accepted
    assert len(signatures(ping)) == 2
    assert verifies(ping, old)
    assert verifies(ping, new)


# --- deliver, deliveries, enable ------------------------------------------------------


@pytest.mark.usefixtures("baseline")
def test_deliver_channel_webhook_works_without_an_email_sender(
    cli: Hooks, receiver: WebhookReceiver
) -> None:
    sid, secret = cli.add_webhook(receiver.url)
    receiver.secrets.append(secret)
    cli.fresh_article()
    out = cli.ok("deliver", "--channel", "webhook")
    assert out.splitlines() == [
        f"subscriber {sid} {receiver.url}: webhook, 1 article: sent",
        "1 message: 1 sent, 0 to retry, 0 failed",
    ]
    [post] = receiver.accepted
    assert body_of(post)["data"]["title"] == FRESH.title
    [row] = cli.json("deliveries", "list")
    assert (row["channel"], row["state"], row["attempts"]) == ("webhook", "sent", 1)
    assert row["message_id"] == post.webhook_id
    assert cli.ok("deliver").splitlines() == ["nothing is due"]


@pytest.mark.usefixtures("baseline")
def test_410_disables_then_enable_and_retry_send_it(
    cli: Hooks, receiver: WebhookReceiver
) -> None:
    sid, secret = cli.add_webhook(receiver.url)
    receiver.secrets.append(secret)
    cli.fresh_article()
    receiver.fail_next(410)
    [result] = cli.json("deliver", "--channel", "webhook")
    assert (result["outcome"], result["error"]) == ("failed", "HTTP 410")
    assert cli.doc(sid)["state"] == "disabled"
    [item] = cli.json("status")["attention"]
    assert item["kind"] == "webhook_disabled"
    assert receiver.url in item["subject"]

    assert cli.ok("subscribers", "enable", str(sid)).splitlines() == [
        f"enabled webhook subscriber {sid} ({receiver.url}); deliveries that failed "
        f"meanwhile: `kairan deliveries retry --failed --subscriber {sid}`"
    ]
    assert cli.doc(sid)["state"] == "active"
    kinds = [item["kind"] for item in cli.json("status")["attention"]]
    assert kinds == ["deliveries_failing"]  # the 410'd one, until it is retried
    line = cli.error("subscribers", "enable", str(sid))
    assert line == f"kairan: error: subscriber {sid} is active, not disabled"

    out = cli.ok("deliveries", "retry", "--failed", "--subscriber", str(sid))
    assert out.startswith("1 delivery due again now")
    assert cli.json("deliver")[0]["outcome"] == "sent"
    gone, delivered = receiver.requests
    assert (gone.status, delivered.status) == (410, 200)
    # Retried after failing, it is the same message: same webhook-id and bytes,
    # so the receiver can tell it from a new article.
    assert delivered.webhook_id == gone.webhook_id
    assert delivered.body == gone.body
    [row] = cli.json("deliveries", "list", "--subscriber", str(sid))
    assert (row["state"], row["message_id"]) == ("sent", delivered.webhook_id)
