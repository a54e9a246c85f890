"""GET /metrics (Prometheus text format) and GET /readyz (ready to do its work?).

/healthz (in server.py) says the process answers; /readyz says whether it is
doing its job: the database can be read, the scheduler runs, and polling has
not stalled. A probe gets the reasons, one line per failing check, so the
operator reads what is wrong from the 503 itself. Neither endpoint exposes
anything but aggregates (see aggregator/metrics.py).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Protocol

import sqlite_utils
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from aggregator import logs
from aggregator.metrics import Metrics, quick_busy_timeout
from aggregator.runtime import Runtime

log = logs.get("health")

POLL_GRACE_INTERVALS = 3  # polling has stalled after this many poll intervals
NO_STORE = {"Cache-Control": "no-store"}  # a probe or scraper must see now


class Readiness(Protocol):
    """What the daemon tells /readyz about itself."""

    def scheduler_running(self) -> bool: ...

    def last_cycle_at(self) -> datetime | None:
        """When the last completed poll cycle ended (any outcome); None: none yet."""
        ...

    def started_at(self) -> datetime:
        """When the daemon started: before any cycle, polling is judged from here."""
        ...


def human(seconds: float) -> str:
    """A rough duration for a person: "40 s", "45 min", "2 h", "3 d"."""
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 2 * 3600:
        return f"{round(seconds / 60)} min"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"


def database_problem(db: sqlite_utils.Database) -> str | None:
    # Not `SELECT 1`: it touches no page, so it succeeds on a locked or vanished
    # file. Reading the schema's first page takes a real read lock.
    try:
        with quick_busy_timeout(db):
            db.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()
    except sqlite3.Error as e:
        return f"database: not readable ({e})"
    return None


def scheduler_problem(readiness: Readiness) -> str | None:
    return None if readiness.scheduler_running() else "scheduler: not running"


def poll_problem(readiness: Readiness, now: datetime, interval: int) -> str | None:
    """Stalled when no cycle ended within the limit, unless the daemon is younger."""
    limit = POLL_GRACE_INTERVALS * interval
    uptime = (now - readiness.started_at()).total_seconds()
    last = readiness.last_cycle_at()
    if uptime < limit:
        return None
    if last is None:
        return (
            f"poll: no cycle completed in {human(uptime)} since start "
            f"(limit {human(limit)})"
        )
    age = (now - last).total_seconds()
    if age <= limit:
        return None
    return f"poll: last cycle {human(age)} ago (limit {human(limit)})"


def readiness_problems(rt: Runtime, readiness: Readiness) -> list[str]:
    checks = (
        database_problem(rt.db),
        scheduler_problem(readiness),
        poll_problem(readiness, rt.clock.now(), rt.settings.poll.interval),
    )
    return [problem for problem in checks if problem is not None]


def health_routes(
    rt: Runtime, metrics: Metrics, readiness: Readiness
) -> list[BaseRoute]:
    """The routes for `build_app(rt, routes=...)`."""

    async def metrics_page(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type, headers=NO_STORE)

    async def readyz(request: Request) -> Response:
        problems = readiness_problems(rt, readiness)
        if not problems:
            return PlainTextResponse("ready\n", headers=NO_STORE)
        log.info("readyz.not_ready", extra=logs.fields(problems="; ".join(problems)))
        text = "".join(f"{problem}\n" for problem in problems)
        return PlainTextResponse(text, status_code=503, headers=NO_STORE)

    return [
        Route("/metrics", metrics_page, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
