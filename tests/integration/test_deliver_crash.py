"""Kill `kairan deliver` mid-send: the restart sends each article exactly once, or
one identical duplicate of the message that was in flight, never zero times.

The process really dies (SIGKILL) at two moments: after it claimed the message
but before the SMTP server has it, and after the server accepted it (250) but
before the outcome is committed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator import config
from aggregator.clock import SystemClock
from aggregator.runtime import open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.settings import Settings
from tests.support.clock import FixedClock
from tests.support.feeds import Item, note_feed, note_key
from tests.support.followers import add_subscriber

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"
)
WAIT = 15.0  # seconds any step may take before the test gives up


def config_text(feed: str, smtp_port: int) -> str:
    return f"""
[site]
contact = "https://example.jp/contact"
base_url = "https://kairan.example.jp/"

[poll]
connect_timeout = 2
timeout = 5
jitter = 0
parse_workers = 0

[email]
host = "127.0.0.1"
port = {smtp_port}
from = "kairan@example.jp"
timeout = 20

[storage]
data_dir = "state"

[[members]]
id = "city"
name = "テスト市"
feed = "{feed}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Scene:
    """A config file, a database with one due immediate e-mail, and the port."""

    def __init__(self, tmp_path: Path, feeds: FeedServer) -> None:
        self.port = free_port()
        self.path = tmp_path / "config.toml"
        self.path.write_text(config_text(feeds.url("/city.xml"), self.port), "utf-8")
        self.feeds = feeds

    def settings(self) -> Settings:
        return config.load_settings(self.path)

    async def prepare(self) -> None:
        """Baseline, a subscriber, then a new article: one delivery is due."""
        self.feeds.route("/city.xml", static_route(note_feed([])))
        with open_runtime(self.settings()) as rt:
            async with rt.poller() as poller:
                await poller.run_cycle((), force=True)
            add_subscriber(rt.db, "a@example.jp", rt.clock.now(), key=rt.key)
            fresh = Item(note_key(7), "新しい記事", published=rt.clock.now())
            self.feeds.route("/city.xml", static_route(note_feed([fresh])))
            async with rt.poller() as poller:
                await poller.run_cycle((), force=True)

    def start_deliver(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [sys.executable, "-m", "aggregator", "--config", str(self.path), "deliver"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        )

    def states(self) -> list[str]:
        with sqlite3.connect(self.settings().database_path) as conn:
            return [r[0] for r in conn.execute("SELECT state FROM deliveries")]

    def wait_until_claimed(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + WAIT
        while self.states() != ["sending"]:
            assert time.monotonic() < deadline, "the delivery was never claimed"
            still_running(proc, 0.02)

    async def restart_after_lease(self) -> None:
        """The next pass, once the dead process's lease has run out."""
        later = FixedClock(SystemClock().now() + timedelta(minutes=30))
        with open_runtime(self.settings(), clock=later) as rt:
            async with rt.delivery_pass() as delivery:
                report = await delivery.run()
        assert report.count("sent") == 1
        assert self.states() == ["sent"]


def still_running(proc: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait up to `seconds`, failing if the process exits meanwhile."""
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(seconds)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(WAIT)
    if proc.stderr is not None:
        proc.stderr.close()


@pytest.fixture
def scene(tmp_path: Path, feed_server: FeedServer) -> Scene:
    scene = Scene(tmp_path, feed_server)
    asyncio.run(scene.prepare())
    return scene


@pytest.fixture
def tarpit(scene: Scene) -> Iterator[socket.socket]:
    """A port that accepts connections and never says a word."""
    listener = socket.create_server(("127.0.0.1", scene.port))
    try:
        yield listener
    finally:
        listener.close()


def test_killed_after_the_claim_before_the_send_sends_exactly_once(
    scene: Scene, tarpit: socket.socket
) -> None:
    proc = scene.start_deliver()
    try:
        scene.wait_until_claimed(proc)
    finally:
        kill(proc)
    tarpit.close()
    with SmtpSink(port=scene.port) as sink:
        asyncio.run(scene.restart_after_lease())
        [mail] = sink.messages
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert "新しい記事" in text.get_content()


def test_killed_after_250_before_the_commit_resends_one_identical_copy(
    scene: Scene,
) -> None:
    with SmtpSink(port=scene.port) as sink:
        sink.hold()
        proc = scene.start_deliver()
        try:
            sink.wait_for(1, WAIT)
            # Take the write lock before the 250 goes out: the outcome cannot commit.
            lock = sqlite3.connect(scene.settings().database_path, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            sink.release()
            still_running(proc, 0.3)  # it reads its 250, then waits for the lock
        finally:
            kill(proc)
        lock.rollback()
        lock.close()
        assert scene.states() == ["sending"]
        asyncio.run(scene.restart_after_lease())
        first, second = sink.messages
    assert first.message["Message-ID"] == second.message["Message-ID"]
    assert first.message["Date"] == second.message["Date"]
    assert first.data == second.data
