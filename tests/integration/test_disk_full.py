"""The disk fills during a commit: the transaction rolls back, the daemon logs it,
keeps running and catches up once space returns; nothing is half-written
(issue 6 §2).

`kairan run` runs as a child (tests/support/daemon_child.py) whose file-size
limit (RLIMIT_FSIZE) lets the database and its WAL grow only a little past their
size after the baseline. Many long articles then appear at once: storing them
needs more than that, so the poll's one transaction cannot commit. The limit is
then raised (space returns) and the next poll stores and delivers them all.
The daemon's clock stands still but for the jumps the test makes, so every poll
happens when the test says.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator import config
from aggregator.clock import SystemClock
from aggregator.runtime import open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.settings import Settings
from tests.support import daemon as support
from tests.support.daemon_child import ChildClock, free_port, spawn
from tests.support.feeds import Item, note_feed, note_key
from tests.support.followers import add_subscriber

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file-size limits"
)

HEADROOM = 256 * 1024  # bytes the files may grow past their size after setup
SENTENCE = "自治体の生成AI活用事例を詳しく報告します。"  # 63 bytes of UTF-8
ROOM = 1 << 30  # bytes the files may grow to once space returns
WAIT = 20.0  # seconds any step may take
STOP_WAIT = 10.0  # issue 6 §1: SIGTERM exits 0 within 10 s
DUE = 400.0  # seconds the clock jumps so that the member is due (interval 5 min)
KEY = re.compile(r"/n/(n[0-9a-f]{12})")
FAILED = re.compile(r"poll\.store_failed")
DISK = re.compile(r"disk I/O error|database or disk is full")


@dataclass(frozen=True)
class Burst:
    """The articles that arrive at once, and where their transaction fails."""

    articles: int
    sentences: int  # per article body
    at_commit: bool  # True: all of it fits SQLite's page cache (2 MB by default),
    # so the first write is the commit's; False: the cache spills mid-transaction.


BURSTS = {
    "at-commit": Burst(40, 200, at_commit=True),  # about 0.5 MB
    "mid-transaction": Burst(40, 1200, at_commit=False),  # about 3 MB
}


def config_text(feed: str, smtp_port: int, http_port: int) -> str:
    return support.config_text(
        {"city": feed}, smtp_port=smtp_port, server_port=http_port
    )


@dataclass
class Log:
    """The child's stderr, line by line, read by a thread as it comes."""

    lines: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def follow(self, proc: subprocess.Popen[bytes]) -> threading.Thread:
        assert proc.stderr is not None
        stream = proc.stderr

        def read() -> None:
            for raw in stream:
                with self.changed:
                    self.lines.append(raw.decode("utf-8", "replace"))
                    self.changed.notify_all()

        thread = threading.Thread(target=read, daemon=True)
        thread.start()
        return thread

    def wait_for(self, pattern: re.Pattern[str], count: int = 1) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: self._count(pattern) >= count, WAIT):
                pytest.fail(f"no {pattern.pattern!r} ×{count} in:\n{self.text()}")

    def _count(self, pattern: re.Pattern[str]) -> int:
        return sum(1 for line in self.lines if pattern.search(line))

    def text(self) -> str:
        return "".join(self.lines)


class Scene:
    """A config file, the daemon's standing clock, its file-size limit file."""

    def __init__(self, tmp_path: Path, feeds: FeedServer, sink: SmtpSink) -> None:
        self.tmp_path = tmp_path
        self.path = tmp_path / "config.toml"
        self.http_port = free_port()
        self.path.write_text(
            config_text(feeds.url("/city.xml"), sink.port, self.http_port), "utf-8"
        )
        self.feeds = feeds
        self.limit_file = tmp_path / "fsize"
        real = SystemClock()
        self.clock = ChildClock(
            start=real.now(),
            origin=real.monotonic(),
            speed=0.0,
            skip_file=tmp_path / "skip",
        )

    def settings(self) -> Settings:
        return config.load_settings(self.path)

    async def prepare(self) -> None:
        """The baseline (one old article) and an immediate e-mail subscriber."""
        old = Item(note_key(999), "古い記事", published=self.clock.now() - timedelta(7))
        self.feeds.route("/city.xml", static_route(note_feed([old])))
        with open_runtime(self.settings(), clock=self.clock) as rt:
            async with rt.poller(strict=True) as poller:
                await poller.run_cycle((), force=True)
            add_subscriber(rt.db, "a@example.jp", self.clock.now(), key=rt.key)

    def publish_many(self, burst: Burst) -> list[str]:
        """The burst's long new articles in the feed at once; their keys."""
        body = SENTENCE * burst.sentences
        items = [
            Item(note_key(n), f"新着記事{n:03d}", body, published=self.clock.now())
            for n in range(1, burst.articles + 1)
        ]
        self.feeds.route("/city.xml", static_route(note_feed(items)))
        return [item.key for item in items]

    def set_limit(self, size: int) -> None:
        temporary = self.limit_file.with_suffix(".tmp")
        temporary.write_text(f"{size}\n", "ascii")
        temporary.replace(self.limit_file)

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.settings().database_path) as conn:
            return list(conn.execute(sql))

    def member(self) -> tuple[object, ...]:
        """(etag, body_hash, failures, last_error) of the one member."""
        [row] = self.query("SELECT etag, body_hash, failures, last_error FROM members")
        return row

    def unsent(self) -> int:
        [(count,)] = self.query("SELECT count(*) FROM deliveries WHERE state != 'sent'")
        assert isinstance(count, int)
        return count

    def healthz(self) -> int:
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        with urllib.request.urlopen(url, timeout=WAIT) as answer:
            status: int = answer.status
            return status


def alive_until(
    proc: subprocess.Popen[bytes], done: Callable[[], bool], log: Log
) -> None:
    """Wait (bounded) until ``done()``, failing if the daemon exits first."""
    for _ in range(int(WAIT / 0.05)):
        if done():
            return
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.05)
    pytest.fail(f"not caught up in {WAIT} s:\n{log.text()}")


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def scene(tmp_path: Path, feed_server: FeedServer, sink: SmtpSink) -> Scene:
    scene = Scene(tmp_path, feed_server, sink)
    asyncio.run(scene.prepare())
    return scene


@pytest.fixture
def daemon(scene: Scene) -> Iterator[tuple[subprocess.Popen[bytes], Log]]:
    """The daemon, its files limited to their size now plus HEADROOM."""
    database = scene.settings().database_path
    assert not database.with_name(database.name + "-wal").exists()  # all in the file
    scene.set_limit(database.stat().st_size + HEADROOM)
    proc = spawn(scene.path, scene.clock, subprocess.PIPE, fsize_file=scene.limit_file)
    log = Log()
    reader = log.follow(proc)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(STOP_WAIT)
        reader.join(STOP_WAIT)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("burst", BURSTS.values(), ids=BURSTS.keys())
def test_a_transaction_that_does_not_fit_rolls_back_and_resumes_with_space(
    scene: Scene,
    sink: SmtpSink,
    daemon: tuple[subprocess.Popen[bytes], Log],
    burst: Burst,
) -> None:
    proc, log = daemon
    log.wait_for(re.compile(r"poll\.cycle"))  # started: its first cycle is done
    before = scene.member()
    keys = scene.publish_many(burst)

    for attempt in (1, 2):  # the member stays due: each poll fails the same way
        scene.clock.skip(DUE)
        log.wait_for(FAILED, attempt)
        assert scene.healthz() == 200
        assert scene.query("PRAGMA integrity_check") == [("ok",)]
        assert scene.query("SELECT count(*) FROM entries") == [(1,)]  # the baseline
        assert scene.query("SELECT count(*) FROM deliveries") == [(0,)]
        # Nothing about the member changed: the disk failed, not its feed, so
        # it is not counted as failing nor backed off, and its poll stays due.
        assert scene.member() == before
        assert DISK.search(log.text()), log.text()
    assert proc.poll() is None
    assert not re.search(r"poll\.internal_error|daemon\.job_bug", log.text())
    assert ("could not commit" in log.text()) is burst.at_commit, log.text()

    scene.set_limit(ROOM)  # space returns
    log.wait_for(re.compile(r"child\.fsize_limit bytes=" + str(ROOM)))
    scene.clock.skip(DUE)
    alive_until(proc, lambda: sink.count >= 1 and not scene.unsent(), log)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(STOP_WAIT) == 0

    assert scene.query("PRAGMA integrity_check") == [("ok",)]
    rows = scene.query(
        """SELECT e.link, d.state FROM entries e LEFT JOIN deliveries d
           ON d.entry_id = e.id WHERE e.status != 'baseline'"""
    )
    assert sorted(KEY.findall(" ".join(str(link) for link, _ in rows))) == keys
    assert {state for _, state in rows} == {"sent"}
    [mail] = sink.messages
    text = mail.message.get_body(("plain",))
    assert text is not None
    assert sorted(KEY.findall(text.get_content())) == keys
    assert scene.member()[2:] == (0, None)  # the member is healthy again
