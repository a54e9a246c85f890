"""/metrics and /readyz over real HTTP: uvicorn on 127.0.0.1:0, a real database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from aggregator.health import health_routes
from aggregator.metrics import Metrics
from aggregator.runtime import Runtime, open_runtime
from aggregator.server import Server, build_app
from tests.support.builders import settings
from tests.support.clock import FixedClock

INTERVAL = 900  # seconds: /readyz allows 3 intervals, 45 min, without a cycle
QUICK = 2.0  # seconds: well under the connection's 5 s busy timeout


@dataclass
class Daemon:
    """The daemon's side of `Readiness`, set by each test."""

    started: datetime
    last: datetime | None = None
    running: bool = True

    def scheduler_running(self) -> bool:
        return self.running

    def last_cycle_at(self) -> datetime | None:
        return self.last

    def started_at(self) -> datetime:
        return self.started


@dataclass
class Site:
    rt: Runtime
    daemon: Daemon
    client: httpx.AsyncClient
    path: Path  # the database file


@pytest.fixture
async def site(tmp_path: Path, clock: FixedClock) -> AsyncIterator[Site]:
    configured = settings(tmp_path, interval=INTERVAL)
    daemon = Daemon(started=clock.now() - timedelta(days=1), last=clock.now())
    with open_runtime(configured, clock=clock) as rt:
        routes = health_routes(rt, Metrics(rt.db, clock), daemon)
        server = Server(build_app(rt, routes=routes), "127.0.0.1", 0)
        async with server.running(), httpx.AsyncClient(base_url=server.url) as client:
            yield Site(rt, daemon, client, configured.database_path)


def database_up(text: str) -> float:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return families["kairan_database_up"].samples[0].value


async def test_metrics_are_served_in_the_text_format_uncached(site: Site) -> None:
    response = await site.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert response.headers["cache-control"] == "no-store"
    assert database_up(response.text) == 1
    assert "kairan_outbox_depth" in response.text


async def test_ready_when_the_last_cycle_is_recent(
    site: Site, clock: FixedClock
) -> None:
    site.daemon.last = clock.now() - timedelta(minutes=44)

    response = await site.client.get("/readyz")

    assert response.status_code == 200
    assert response.text == "ready\n"
    assert response.headers["cache-control"] == "no-store"


async def test_ready_after_a_start_before_the_first_cycle(
    site: Site, clock: FixedClock
) -> None:
    site.daemon.started, site.daemon.last = clock.now() - timedelta(minutes=5), None

    assert (await site.client.get("/readyz")).status_code == 200


async def test_not_ready_names_each_failing_check(
    site: Site, clock: FixedClock
) -> None:
    site.daemon.running = False
    site.daemon.last = clock.now() - timedelta(hours=2)

    response = await site.client.get("/readyz")

    assert response.status_code == 503
    assert response.text == (
        "scheduler: not running\npoll: last cycle 2 h ago (limit 45 min)\n"
    )
    assert response.headers["cache-control"] == "no-store"


async def test_not_ready_when_no_cycle_ended_since_a_start_long_ago(
    site: Site, clock: FixedClock
) -> None:
    site.daemon.started, site.daemon.last = clock.now() - timedelta(hours=3), None

    response = await site.client.get("/readyz")

    assert response.status_code == 503
    assert response.text == (
        "poll: no cycle completed in 3 h since start (limit 45 min)\n"
    )


def hold_exclusive_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    return other


async def test_a_wal_writer_does_not_make_it_unready(site: Site) -> None:
    # WAL (the daemon's mode): readers go on reading while another process writes.
    other = hold_exclusive_lock(site.path)
    try:
        ready = await site.client.get("/readyz")
        metrics = await site.client.get("/metrics")
    finally:
        other.close()

    assert ready.status_code == 200
    assert database_up(metrics.text) == 1


async def test_a_database_locked_against_readers_is_reported_quickly(
    site: Site,
) -> None:
    # A lock that stops readers cannot be taken while the daemon holds the file
    # open in WAL mode, so this database is switched to a rollback journal, where
    # an exclusive writer does stop them.
    mode = site.rt.db.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
    assert mode == "delete"
    other = hold_exclusive_lock(site.path)
    try:
        t0 = time.monotonic()
        ready = await site.client.get("/readyz")
        metrics = await site.client.get("/metrics")
        elapsed = time.monotonic() - t0
    finally:
        other.close()
    after = await site.client.get("/readyz")

    assert ready.status_code == 503
    assert ready.text == "database: not readable (database is locked)\n"
    assert metrics.status_code == 200
    assert database_up(metrics.text) == 0
    assert elapsed < QUICK
    assert after.status_code == 200
    assert site.rt.db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
