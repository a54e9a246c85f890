"""Kill `kairan deliver` mid-POST: after the lease the webhook goes out again as the
same message (same webhook-id, byte-identical body), never zero times.

The process really dies (SIGKILL) at two moments: after it claimed the delivery
but before any receiver has it (a tarpit that accepts and never answers), and
after the receiver has the request but before the answer arrives (the receiver
holds it). The next pass runs in-process on a clock past the dead lease, as in
test_deliver_crash.py.
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
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator import config, endpoints
from aggregator.clock import SystemClock
from aggregator.db import unit_of_work
from aggregator.deliver import DeliveryReport
from aggregator.models import Filters
from aggregator.runtime import open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.sandbox.webhook_receiver import WebhookReceiver
from aggregator.settings import Settings
from tests.support.clock import FixedClock
from tests.support.feeds import Item, note_feed, note_key
from tests.support.webhooks import (
    free_port,
    requests_for,
)

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"
)
WAIT = 15.0  # seconds any step may take before the test gives up


def config_text(feed: str) -> str:
    return f"""
[site]
contact = "https://example.jp/contact"
base_url = "https://kairan.example.jp/"

[poll]
connect_timeout = 2
timeout = 5
jitter = 0
parse_workers = 0

[webhooks]
allow_private_addresses = true
timeout = 5

[storage]
data_dir = "state"

[[members]]
id = "city"
name = "テスト市"
feed = "{feed}"
"""


class Scene:
    """A config file and a database with one webhook delivery due."""

    def __init__(self, tmp_path: Path, feeds: FeedServer) -> None:
        self.path = tmp_path / "config.toml"
        self.path.write_text(config_text(feeds.url("/city.xml")), "utf-8")
        self.feeds = feeds
        self.secret = ""

    def settings(self) -> Settings:
        return config.load_settings(self.path)

    async def prepare(self, url: str) -> None:
        """Baseline, an endpoint at ``url``, then a new article: one POST is due."""
        self.feeds.route("/city.xml", static_route(note_feed([])))
        with open_runtime(self.settings()) as rt:
            async with rt.poller() as poller:
                await poller.run_cycle((), force=True)
                with unit_of_work(rt.db):
                    added = endpoints.add(
                        rt.db, url, Filters(), rt.settings, rt.key, rt.clock.now(), "t"
                    )
                self.secret = added.secret
                new = Item(note_key(7), "新しい記事", published=rt.clock.now())
                self.feeds.route("/city.xml", static_route(note_feed([new])))
                await poller.run_cycle((), force=True)

    def start_deliver(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "aggregator", "--config", str(self.path)]
        return subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
            [*command, "deliver", "--channel", "webhook"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        )

    def rows(self) -> list[tuple[str, int, str]]:
        """Every delivery as (state, attempts, webhook-id)."""
        with sqlite3.connect(self.settings().database_path) as conn:
            return list(
                conn.execute(
                    """SELECT d.state, d.attempts, coalesce(b.message_id, '')
                       FROM deliveries d LEFT JOIN batches b ON b.id = d.batch_id
                       ORDER BY d.id"""
                )
            )

    def payload(self) -> bytes:
        """The body fixed with the batch at the first claim."""
        with sqlite3.connect(self.settings().database_path) as conn:
            [(body,)] = conn.execute("SELECT payload FROM batches").fetchall()
        assert isinstance(body, bytes)
        return body

    async def restart_after_lease(self) -> DeliveryReport:
        """The next pass, once the dead process's lease has run out."""
        later = FixedClock(SystemClock().now() + timedelta(minutes=30))
        with open_runtime(self.settings(), clock=later) as rt:
            async with rt.delivery_pass() as delivery:
                return await delivery.run()


def wait_until(
    proc: subprocess.Popen[bytes], done: Callable[[], object], what: str
) -> None:
    """Wait (bounded) until ``done()`` is true, failing if ``proc`` exits first."""
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, what
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.02)


def kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(WAIT)
    if proc.stderr is not None:
        proc.stderr.close()


def test_killed_while_the_receiver_holds_the_post_redelivers_the_same_message(
    tmp_path: Path, feed_server: FeedServer, receiver: WebhookReceiver
) -> None:
    scene = Scene(tmp_path, feed_server)
    asyncio.run(scene.prepare(receiver.url))
    receiver.secrets.append(scene.secret)
    receiver.hold()
    proc = scene.start_deliver()
    try:
        wait_until(proc, lambda: receiver.requests, "the POST never arrived")
    finally:
        kill(proc)
    receiver.release()
    [(state, attempts, webhook_id)] = scene.rows()
    assert (state, attempts) == ("sending", 1)  # the outcome was never recorded

    report = asyncio.run(scene.restart_after_lease())
    assert report.count("sent") == 1
    first, second = requests_for(receiver, webhook_id)
    assert len(receiver.requests) == 2
    assert first.verified
    assert second.verified
    assert first.body == second.body == scene.payload()
    assert scene.rows() == [("sent", 2, webhook_id)]
    # A receiver that dedupes on webhook-id stores the article once.
    assert set(receiver.accepted_ids()) == {webhook_id}


def test_killed_before_any_receiver_has_the_post_delivers_it_once(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    port = free_port()
    scene = Scene(tmp_path, feed_server)
    asyncio.run(scene.prepare(f"http://127.0.0.1:{port}/"))
    tarpit = socket.create_server(("127.0.0.1", port))  # accepts, never answers
    try:
        proc = scene.start_deliver()
        try:
            wait_until(
                proc,
                lambda: [r[0] for r in scene.rows()] == ["sending"],
                "the delivery was never claimed",
            )
        finally:
            kill(proc)
    finally:
        tarpit.close()
    [(_, _, webhook_id)] = scene.rows()
    with WebhookReceiver(port, secrets=[scene.secret]) as receiver:
        report = asyncio.run(scene.restart_after_lease())
        [request] = receiver.requests
    assert report.count("sent") == 1
    assert (request.webhook_id, request.verified) == (webhook_id, True)
    assert request.body == scene.payload()
    assert scene.rows() == [("sent", 2, webhook_id)]
