"""SIGKILL the daemon at random moments while articles arrive: nothing is lost or
doubled (issue 6 §2).

`kairan run` (tests/support/daemon_child.py, on a clock at SPEED× real time so
that poll intervals and leases pass in seconds) runs against the sandbox feed
server, SMTP sink and webhook receiver. It is killed KILLS times, a random
0.3–2.5 s after each start (counted from its first log line: the imports take
about a second, and a kill before them tests nothing), while new articles
appear in the feeds; in some runs the sink and the receiver hold their answers,
so the kill lands mid-send. A last run drains the outbox and stops on SIGTERM.
Then: the database is intact, every new article has a delivery row per
subscriber and each was sent, every (article, subscriber) arrived, and any copy
beyond the first is the same message (same Message-ID / webhook-id, same bytes).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator import config, endpoints
from aggregator.clock import SystemClock
from aggregator.db import unit_of_work
from aggregator.models import Filters
from aggregator.runtime import open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.sandbox.webhook_receiver import WebhookReceiver
from tests.support import daemon as support
from tests.support.daemon_child import ChildClock, free_port, spawn
from tests.support.feeds import Item, note_feed, note_key
from tests.support.followers import add_subscriber

pytestmark = [
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"),
    pytest.mark.slow,
]

SEED = 20261120
KILLS = 20
RUN_SECONDS = (0.3, 2.5)  # how long each killed run lives once it logs
HOLD_SHARE = 0.35  # runs whose sink and receiver hold their answers
SPEED = 100.0  # the daemon's clock: a 300 s lease (or poll interval) is 3 s real
START_WAIT = 15.0  # seconds a child may take to log its first line
DRAIN_WAIT = 40.0  # seconds the last run gets to send everything
STOP_WAIT = 10.0  # issue 6 §1: SIGTERM exits 0 within 10 s
MEMBERS = ("m1", "m2", "m3", "m4", "m5")
EMAIL = ("a@example.jp", "b@example.jp")
KEY = re.compile(r"/n/(n[0-9a-f]{12})")


def config_text(feeds: FeedServer, smtp_port: int, http_port: int) -> str:
    return support.config_text(
        {m: feeds.url(f"/{m}.xml") for m in MEMBERS},
        smtp_port=smtp_port,
        server_port=http_port,
    )


@dataclass
class Scene:
    """The config, the daemon's clock, the feeds as served and what was added."""

    tmp_path: Path
    feeds: FeedServer
    sink: SmtpSink
    receiver: WebhookReceiver
    clock: ChildClock
    items: dict[str, list[Item]] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)  # note keys, in order
    logs: list[Path] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.tmp_path / "config.toml"

    @property
    def database(self) -> Path:
        return config.load_settings(self.config_path).database_path

    def serve(self, member: str) -> None:
        self.feeds.route(f"/{member}.xml", static_route(note_feed(self.items[member])))

    async def prepare(self) -> None:
        """Each feed's baseline (one old article), then the three subscribers."""
        settings = config.load_settings(self.config_path)
        for n, member in enumerate(MEMBERS):
            old = self.clock.now() - timedelta(days=3)
            self.items[member] = [
                Item(note_key(900 + n), f"古い記事{n}", published=old)
            ]
            self.serve(member)
        with open_runtime(settings, clock=self.clock) as rt:
            async with rt.poller(strict=True) as poller:
                await poller.run_cycle((), force=True)
            for address in EMAIL:
                add_subscriber(rt.db, address, self.clock.now(), key=rt.key)
            with unit_of_work(rt.db):
                hook = endpoints.add(
                    rt.db,
                    self.receiver.url,
                    Filters(),
                    settings,
                    rt.key,
                    self.clock.now(),
                    "cli:test",
                )
        self.receiver.secrets.append(hook.secret)

    def add_articles(self, rng: random.Random) -> None:
        """1–3 new articles, each in a random member's feed, published now."""
        for _ in range(rng.randint(1, 3)):
            member = rng.choice(MEMBERS)
            n = len(self.added) + 1
            item = Item(note_key(n), f"新着記事{n:03d}", published=self.clock.now())
            self.items[member].insert(0, item)
            self.added.append(item.key)
            self.serve(member)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        path = self.tmp_path / f"{name}.log"
        self.logs.append(path)
        with path.open("wb") as log:
            return spawn(self.config_path, self.clock, log)

    def wait_until_logging(self, proc: subprocess.Popen[bytes]) -> None:
        """Until the child (imports done) has opened the database and logged."""
        for _ in range(int(START_WAIT / 0.02)):
            if self.logs[-1].stat().st_size:
                return
            alive_for(proc, 0.02)
        pytest.fail(f"{self.logs[-1].name}: nothing logged in {START_WAIT} s")

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.database) as conn:
            return list(conn.execute(sql))

    def drained(self) -> bool:
        """Every added article stored, with its rows, and nothing left unsent."""
        [(entries, rows, unsent)] = self.query(
            """SELECT (SELECT count(*) FROM entries WHERE status != 'baseline'),
                      (SELECT count(*) FROM deliveries WHERE entry_id IS NOT NULL),
                      (SELECT count(*) FROM deliveries WHERE state != 'sent')"""
        )
        wanted = len(self.added)
        return entries == wanted and rows == wanted * 3 and unsent == 0


def alive_for(proc: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait ``seconds``, failing if the daemon exits meanwhile."""
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(seconds)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(STOP_WAIT)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def scene(
    tmp_path: Path, feed_server: FeedServer, sink: SmtpSink, receiver: WebhookReceiver
) -> Scene:
    real = SystemClock()
    clock = ChildClock(start=real.now(), origin=real.monotonic(), speed=SPEED)
    scene = Scene(tmp_path, feed_server, sink, receiver, clock)
    scene.config_path.write_text(
        config_text(feed_server, sink.port, free_port()), "utf-8"
    )
    asyncio.run(scene.prepare())
    return scene


def crash_loop(scene: Scene, rng: random.Random) -> int:
    """KILLS runs, each SIGKILLed at a random moment; returns the held runs."""
    held = 0
    for run in range(KILLS):
        hold = rng.random() < HOLD_SHARE
        if hold:
            held += 1
            scene.sink.hold()
            scene.receiver.hold()
        lifetime = rng.uniform(*RUN_SECONDS)
        arrival = rng.uniform(0, lifetime)
        proc = scene.start(f"run{run:02d}")
        try:
            scene.wait_until_logging(proc)
            alive_for(proc, arrival)
            scene.add_articles(rng)
            alive_for(proc, lifetime - arrival)
        finally:
            kill(proc)
            scene.sink.release()
            scene.receiver.release()
    return held


def drain(scene: Scene) -> None:
    """One more run until the outbox is empty, then SIGTERM: exit 0."""
    proc = scene.start("final")
    try:
        for _ in range(int(DRAIN_WAIT / 0.1)):
            if scene.drained():
                break
            alive_for(proc, 0.1)
        else:
            pytest.fail(f"the outbox did not drain in {DRAIN_WAIT} s")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_WAIT) == 0
    finally:
        if proc.poll() is None:
            kill(proc)


@dataclass(frozen=True)
class Batch:
    """A claimed message as the database has it."""

    address: str  # the subscriber's
    keys: frozenset[str]  # its articles
    attempts: int  # claims so far: each copy received is one of them


# One received copy of a message: (recipient, bytes, the article keys it carries).
Copy = tuple[str, bytes, frozenset[str]]


def keys_of_entries(scene: Scene) -> dict[int, str]:
    found: dict[int, str] = {}
    for entry_id, link in scene.query("SELECT id, link FROM entries"):
        match = KEY.search(str(link))
        assert match is not None
        assert isinstance(entry_id, int)
        found[entry_id] = match[1]
    return found


def batches(scene: Scene, keys: dict[int, str]) -> dict[str, Batch]:
    """Each claimed message by its Message-ID / webhook-id."""
    found: dict[str, Batch] = {}
    for message_id, address, entry_ids, attempts in scene.query(
        """SELECT b.message_id, s.address, group_concat(d.entry_id), max(d.attempts)
           FROM batches b JOIN subscribers s ON s.id = b.subscriber_id
           JOIN deliveries d ON d.batch_id = b.id GROUP BY b.id"""
    ):
        assert isinstance(attempts, int)
        carried = frozenset(keys[int(i)] for i in str(entry_ids).split(","))
        found[str(message_id)] = Batch(str(address), carried, attempts)
    return found


def mails(sink: SmtpSink) -> dict[str, list[Copy]]:
    found: dict[str, list[Copy]] = defaultdict(list)
    for mail in sink.messages:
        [to] = mail.rcpt_tos
        body = mail.message.get_body(("plain",))
        assert body is not None
        carried = frozenset(KEY.findall(body.get_content()))
        found[str(mail.message["Message-ID"])].append((to, mail.data, carried))
    return found


def posts(receiver: WebhookReceiver) -> dict[str, list[Copy]]:
    found: dict[str, list[Copy]] = defaultdict(list)
    for request in receiver.requests:
        assert request.verified, f"{request.error}; seed={SEED}"
        url = json.loads(request.body)["data"]["url"]
        carried = frozenset(KEY.findall(url))
        found[request.webhook_id or ""].append((receiver.url, request.body, carried))
    return found


def check_copies(
    what: str, copies: dict[str, list[Copy]], known: dict[str, Batch], context: str
) -> set[tuple[str, str]]:
    """Each received id is a claimed message; its copies are identical, carry its
    articles, and are no more than its claims (a second copy is the resend of
    one in flight). Returns the (address, key) pairs received."""
    got: dict[tuple[str, str], set[str]] = defaultdict(set)
    for message_id, received in copies.items():
        assert message_id in known, f"{what} {message_id} was never claimed; {context}"
        batch = known[message_id]
        assert set(received) == {(batch.address, received[0][1], batch.keys)}, (
            f"{what} {message_id}: copies differ or carry other articles; {context}"
        )
        assert len(received) <= batch.attempts, f"{message_id}: {context}"
        for key in batch.keys:
            got[(batch.address, key)].add(message_id)
    twice = {pair: ids for pair, ids in got.items() if len(ids) > 1}
    assert not twice, f"articles sent as two different {what}s: {twice}; {context}"
    return set(got)


def check_store(
    scene: Scene, keys: dict[int, str], context: str
) -> set[tuple[str, str]]:
    """Intact; every new article stored with one sent row per subscriber; returns
    the (address, key) pairs that should have been delivered."""
    assert scene.query("PRAGMA integrity_check") == [("ok",)], context
    new = scene.query("SELECT id FROM entries WHERE status != 'baseline'")
    assert {keys[int(str(i))] for (i,) in new} == set(scene.added), context
    rows = scene.query(
        """SELECT s.address, d.entry_id, d.state FROM deliveries d
           JOIN subscribers s ON s.id = d.subscriber_id WHERE d.entry_id IS NOT NULL"""
    )
    expected = {(a, k) for k in scene.added for a in (*EMAIL, scene.receiver.url)}
    assert {(str(a), keys[int(str(e))]) for a, e, _ in rows} == expected, context
    assert len(rows) == len(expected), f"duplicate delivery rows; {context}"
    assert {state for *_, state in rows} == {"sent"}, context
    return expected


@pytest.mark.timeout(180)
def test_sigkill_at_random_moments_loses_and_doubles_nothing(scene: Scene) -> None:
    rng = random.Random(SEED)
    held = crash_loop(scene, rng)
    drain(scene)
    started = sum("daemon.started" in p.read_text("utf-8") for p in scene.logs)
    sent_mails, sent_posts = mails(scene.sink), posts(scene.receiver)
    resent = sum(len(c) - 1 for c in [*sent_mails.values(), *sent_posts.values()])
    context = (
        f"seed={SEED}, {KILLS} kills ({held} while held), {started} runs started,"
        f" {len(scene.added)} articles, {resent} in-flight copies received again;"
        f" logs in {scene.tmp_path}"
    )
    keys = keys_of_entries(scene)
    expected = check_store(scene, keys, context)

    known = batches(scene, keys)
    received = check_copies("Message-ID", sent_mails, known, context)
    received |= check_copies("webhook-id", sent_posts, known, context)
    assert received == expected, f"never received: {expected - received}; {context}"
    for path in scene.logs:
        text = path.read_text("utf-8")
        for sign in ("daemon.job_bug", "internal_error", "delivery.bug"):
            assert sign not in text, f"{sign} in {path.name}; {context}"
