"""`kairan run`: the daemon in-process against the sandbox servers, and as a process
for its lock, its signals and a damaged database."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from aggregator import backup, config, endpoints
from aggregator.clock import SystemClock
from aggregator.daemon import Daemon
from aggregator.db import open_database, unit_of_work
from aggregator.models import Filters
from aggregator.runtime import open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.sandbox.webhook_receiver import WebhookReceiver
from aggregator.settings import ServerSettings, Settings
from tests.support.clock import FixedClock
from tests.support.daemon import (
    KairanProcess,
    config_text,
    eventually,
    free_port,
    metric,
    metric_sum,
    running,
)
from tests.support.feeds import Item, note_feed, note_key
from tests.support.followers import add_subscriber

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGHUP"), reason="needs POSIX signals"
)
POLL_INTERVAL = 300  # seconds: the config's poll.interval
STOP_LIMIT = 10.0  # seconds: issue 6 §1, SIGTERM to exit


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running_sink:
        yield running_sink


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running_receiver:
        yield running_receiver


def write_config(
    tmp_path: Path, feeds: FeedServer, smtp_port: int, server_port: int, *ids: str
) -> Path:
    path = tmp_path / "config.toml"
    members = {member_id: feeds.url(f"/{member_id}.xml") for member_id in ids}
    path.write_text(
        config_text(members, smtp_port=smtp_port, server_port=server_port), "utf-8"
    )
    return path


def serve(feeds: FeedServer, member_id: str, *items: Item) -> None:
    feeds.route(f"/{member_id}.xml", static_route(note_feed(items)))


# --- in-process: poll → outbox → e-mail and webhook → portal ---------------------


def on_port_zero(path: Path) -> Settings:
    """The config's settings, the HTTP server on a free port (config.toml refuses
    port 0; `Server` takes it and `Daemon.url` tells the port it got)."""
    loaded = config.load_settings(path)
    return dataclasses.replace(loaded, server=ServerSettings("127.0.0.1", 0))


def add_followers(
    settings: Settings, clock: FixedClock, receiver: WebhookReceiver
) -> None:
    """An immediate e-mail subscriber and a webhook endpoint on the receiver."""
    with open_runtime(settings, clock=clock) as rt:
        add_subscriber(rt.db, "a@example.jp", clock.now(), key=rt.key)
        with unit_of_work(rt.db):
            added = endpoints.add(
                rt.db,
                endpoints.checked_url(receiver.url, settings),
                Filters(),
                settings,
                rt.key,
                clock.now(),
                "cli:test",
            )
    receiver.secrets.append(added.secret)


def delivery_count(settings: Settings) -> int:
    db = open_database(settings.database_path, create=False)
    try:
        return int(db.execute("SELECT count(*) FROM deliveries").fetchone()[0])
    finally:
        db.close()


async def test_a_new_article_reaches_mail_webhook_and_portal(
    tmp_path: Path,
    feed_server: FeedServer,
    sink: SmtpSink,
    receiver: WebhookReceiver,
) -> None:
    # The scheduler runs on real time; the members' poll times follow this clock.
    clock = FixedClock(SystemClock().now())
    path = write_config(tmp_path, feed_server, sink.port, 8080, "city", "town")
    settings = on_port_zero(path)
    old = Item(note_key(1), "以前の記事", published=clock.now() - timedelta(days=3))
    serve(feed_server, "city", old)
    serve(feed_server, "town")
    add_followers(settings, clock, receiver)
    daemon = Daemon(path, settings, clock=clock)
    index = settings.public_dir / "index.html"
    async with running(daemon), httpx.AsyncClient(base_url=daemon.url or "") as http:
        assert daemon.url is not None
        assert not daemon.url.endswith(":0/")
        await eventually(index.exists, "the first cycle published the portal")
        assert len(feed_server.requests_to("/city.xml")) == 1
        assert len(feed_server.requests_to("/town.xml")) == 1
        assert delivery_count(settings) == 0  # the baseline notifies no one

        fresh = Item(note_key(2), "生成AI活用の新指針", published=clock.now())
        serve(feed_server, "city", fresh, old)
        clock.advance(POLL_INTERVAL + 1)

        async def both_counted() -> bool:
            text = (await http.get("/metrics")).text
            sent = ("email", "webhook")
            return all(
                metric(text, "kairan_deliveries_total", channel=c, outcome="sent") == 1
                for c in sent
            )

        await eventually(both_counted, "one e-mail and one webhook sent")
        await eventually(
            lambda: "生成AI活用の新指針" in feed_atom(settings), "feed.atom updated"
        )
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.text) == (200, "ready\n")
        portal = await http.get("/feed.atom")
        assert "生成AI活用の新指針" in portal.text

    [mail] = sink.messages
    assert mail.rcpt_tos == ("a@example.jp",)
    body = mail.message.get_body(("plain",))
    assert body is not None
    assert "生成AI活用の新指針" in body.get_content()
    [hook] = receiver.requests
    assert hook.verified
    assert "生成AI活用の新指針" in hook.body.decode("utf-8")


def feed_atom(settings: Settings) -> str:
    path = settings.public_dir / "feed.atom"
    return path.read_text("utf-8") if path.exists() else ""


def delivery_states(settings: Settings) -> list[str]:
    db = open_database(settings.database_path, create=False)
    try:
        return [str(row[0]) for row in db.execute("SELECT state FROM deliveries")]
    finally:
        db.close()


async def test_stop_lets_a_send_in_flight_finish(
    tmp_path: Path, feed_server: FeedServer, sink: SmtpSink
) -> None:
    clock = FixedClock(SystemClock().now())
    path = write_config(tmp_path, feed_server, sink.port, 8080, "city")
    settings = on_port_zero(path)
    serve(feed_server, "city")
    with open_runtime(settings, clock=clock) as rt:
        add_subscriber(rt.db, "a@example.jp", clock.now(), key=rt.key)
    daemon = Daemon(path, settings, clock=clock)
    async with running(daemon):
        await eventually(
            lambda: bool(feed_server.requests_to("/city.xml")), "the baseline poll"
        )
        sink.hold()  # the message arrives, its 250 waits for release()
        serve(feed_server, "city", Item(note_key(2), "速報", published=clock.now()))
        clock.advance(POLL_INTERVAL + 1)
        await eventually(lambda: sink.count == 1, "the mail is in flight")
        daemon.stop()
        await asyncio.sleep(0.5)  # well within STOP_BUDGET
        sink.release()
    assert delivery_states(settings) == ["sent"]


async def test_the_first_cycle_runs_at_once_whatever_the_injected_clock_says(
    tmp_path: Path, feed_server: FeedServer, sink: SmtpSink
) -> None:
    clock = FixedClock(SystemClock().now() + timedelta(days=1))
    path = write_config(tmp_path, feed_server, sink.port, 8080, "city")
    settings = on_port_zero(path)
    serve(feed_server, "city")
    async with running(Daemon(path, settings, clock=clock)):
        await eventually(
            (settings.public_dir / "index.html").exists,
            "the first cycle published the portal",
            within=2.0,
        )


def fetch_outcomes(settings: Settings) -> list[str]:
    db = open_database(settings.database_path, create=False)
    try:
        return [str(row[0]) for row in db.execute("SELECT outcome FROM fetch_log")]
    finally:
        db.close()


async def test_sighup_during_a_poll_leaves_that_poll_alone(
    tmp_path: Path, feed_server: FeedServer, sink: SmtpSink
) -> None:
    clock = FixedClock(SystemClock().now())
    path = write_config(tmp_path, feed_server, sink.port, 8080, "city")
    settings = on_port_zero(path)
    feed_server.route("/city.xml", static_route(note_feed([]), delay=1.0))
    async with running(Daemon(path, settings, clock=clock), signals=True):
        await eventually(
            lambda: bool(feed_server.requests_to("/city.xml")), "the poll started"
        )
        os.kill(os.getpid(), signal.SIGHUP)  # the daemon's handler has it
        await eventually(lambda: bool(fetch_outcomes(settings)), "the poll ended")
    assert fetch_outcomes(settings) == ["ok"]


# --- `kairan run` as a process ----------------------------------------------------


def test_kairan_run_holds_its_lock_reloads_on_sighup_and_stops_on_sigterm(
    tmp_path: Path, feed_server: FeedServer, sink: SmtpSink
) -> None:
    port = free_port()
    path = write_config(tmp_path, feed_server, sink.port, port, "city")
    serve(feed_server, "city")
    serve(feed_server, "town")
    base = f"http://127.0.0.1:{port}"
    with KairanProcess(path, tmp_path / "run.log") as daemon:
        daemon.wait_for_log("daemon.started")
        with KairanProcess(path, tmp_path / "second.log") as second:
            daemon.wait_for_log("poll.cycle")  # meanwhile the second one starts

            path.write_text("[site\ntitle = ", "utf-8")
            daemon.send(signal.SIGHUP)
            daemon.wait_for_log("config.reload_refused")
            [refused] = [
                line
                for line in daemon.log.splitlines()
                if "config.reload_refused" in line
            ]
            assert str(path) in refused  # the reason names the file
            alive = httpx.get(f"{base}/healthz", timeout=5)
            assert (alive.status_code, alive.text) == (200, "ok\n")

            write_config(tmp_path, feed_server, sink.port, port, "city", "town")
            daemon.send(signal.SIGHUP)
            daemon.wait_for_log("config.reloaded")
            daemon.wait_until(
                lambda: "member=town outcome=ok" in daemon.log, "the new member polled"
            )
            text = httpx.get(f"{base}/metrics", timeout=5).text
            assert metric_sum(text, "kairan_members") == 2
            assert metric(text, "kairan_polls_total") == 2

            assert second.wait() == 2
            lock = tmp_path / "data" / "kairan.lock"
            [line] = second.log.strip().splitlines()
            assert f"another kairan run holds {lock} (pid {daemon.proc.pid})" in line

        daemon.send(signal.SIGTERM)
        started = time.monotonic()
        assert daemon.wait(STOP_LIMIT) == 0
        assert time.monotonic() - started < STOP_LIMIT
    assert "daemon.stopped" in daemon.log


def test_a_damaged_database_stops_the_start_naming_the_newest_backup(
    tmp_path: Path, feed_server: FeedServer, sink: SmtpSink
) -> None:
    path = write_config(tmp_path, feed_server, sink.port, free_port(), "city")
    settings = config.load_settings(path)
    backups = backup.default_backup_dir(settings)
    now = SystemClock().now()
    with open_runtime(settings) as rt:
        older = backup.rotate(backups, rt.db, now - timedelta(days=1), 7)
        newest = backup.rotate(backups, rt.db, now, 7)
    os.truncate(settings.database_path, settings.database_path.stat().st_size // 2)

    with KairanProcess(path, tmp_path / "run.log") as run:
        assert run.wait() != 0
    [line] = run.log.strip().splitlines()
    assert "damaged" in line
    assert str(newest.path) in line
    assert str(older.path) not in line
    assert backup.check(newest.path) == []
