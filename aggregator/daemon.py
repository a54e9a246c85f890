"""`kairan run`: the scheduler, the HTTP server and their jobs in one event loop.

Jobs (APScheduler, `max_instances=1` and `coalesce`, so a job never overlaps
itself and a tick missed during a suspend runs once):

- poll: every `daemon.poll_tick`, the members whose next poll is due (those
  times are data in `members`, not scheduler jobs); a cycle that stored new or
  edited articles starts a republish beside it (one at a time; changes that
  arrive meanwhile are folded into the next one).
- deliver: every `daemon.deliver_tick`, one delivery pass over every channel.
- housekeeping: daily at `daemon.housekeeping_hour` (site time): prune, back up,
  optimize, and the operator's report when something needs attention.

Every job's transactions are synchronous blocks with no await inside, so jobs
interleave on the one connection without sharing a transaction. Publishing and
housekeeping run in a thread on a connection of their own: they take seconds,
and the loop keeps answering HTTP meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator import (
    __version__,
    config,
    housekeeping,
    logs,
    operator_mail,
    publish,
)
from aggregator.clock import Clock, SystemClock
from aggregator.daemon_lock import DaemonLock
from aggregator.db import sqlite_version_warning, startup_check, unit_of_work
from aggregator.deliver import DeliveryReport
from aggregator.errors import KairanError
from aggregator.health import health_routes
from aggregator.metrics import Metrics
from aggregator.poller import CycleReport, Poller
from aggregator.publish import PublishReport
from aggregator.runtime import Runtime, open_runtime
from aggregator.server import Server, build_app
from aggregator.settings import Settings
from aggregator.store import sync_members

log = logs.get("daemon")
Report = CycleReport | DeliveryReport | PublishReport
T = TypeVar("T")

STOP_BUDGET = 6.0  # seconds running jobs get to finish after SIGTERM (exit < 10 s)


class SwappableApp:
    """The ASGI app, replaced whole on SIGHUP (pages follow the new settings)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


@dataclass
class Daemon:
    config_path: Path
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _started: datetime | None = None
    _last_cycle: datetime | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _running_jobs: set[asyncio.Task[None]] = field(default_factory=set)
    _poller_stack: AsyncExitStack | None = None
    _poller: Poller | None = None
    _poller_stale: bool = False
    _publish_due: bool = False
    _publishing: asyncio.Task[None] | None = None
    _scheduler: AsyncIOScheduler | None = None
    _worker: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="kairan-work")
    )
    url: str | None = None  # the HTTP server's, once started
    # Told of every cycle, delivery pass and publish (the demo narrates them).
    observer: Callable[[Report], None] | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)

    # --- Readiness (aggregator.health) -------------------------------------------

    def scheduler_running(self) -> bool:
        return self._scheduler is not None and bool(self._scheduler.running)

    def last_cycle_at(self) -> datetime | None:
        return self._last_cycle

    def started_at(self) -> datetime:
        return self._started or self.clock.now()

    # --- running -------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM/SIGINT; raises KairanError for what stops a start."""
        asyncio.run(self.main())

    def stop(self) -> None:
        """What SIGTERM does (call from the daemon's loop)."""
        self._stopping.set()

    async def main(self, *, signals: bool = True) -> None:
        """The daemon in the running loop until `stop()`; ``signals=False`` leaves
        the process's signal handlers alone (a test running it in-process)."""
        with DaemonLock(self.settings.data_dir):
            await self._serve(signals)

    async def _serve(self, signals: bool) -> None:
        with open_runtime(self.settings, clock=self.clock, checkpointer=True) as rt:
            startup_check(rt.db, self.settings.database_path)
            # Its notes (a tick skipped while the job still runs, a tick missed)
            # are the design working; our jobs log what matters themselves.
            logging.getLogger("apscheduler").setLevel(logging.ERROR)
            self._announce()
            self._started = self.clock.now()
            metrics = Metrics(rt.db, self.clock)
            app = SwappableApp(self._app(rt, metrics))
            server = Server(app, self.settings.server.host, self.settings.server.port)
            scheduler = self._schedule(rt, metrics)
            loop = asyncio.get_running_loop()
            handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP) if signals else ()
            for number in handled:
                loop.add_signal_handler(
                    number,
                    (lambda: self.reload(rt, app, metrics))
                    if number == signal.SIGHUP
                    else self.stop,
                )
            serving = asyncio.create_task(server.serve())
            scheduler.start()
            self.url = server.url
            self.started.set()
            log.info("daemon.started", extra=logs.fields(url=server.url))
            try:
                await self._stopping.wait()
            finally:
                await self._shutdown(scheduler, server, serving)
                for number in handled:
                    loop.remove_signal_handler(number)

    def _announce(self) -> None:
        log.info(
            "daemon.starting",
            extra=logs.fields(
                kairan=__version__,
                python=sys.version.split()[0],
                sqlite=sqlite3.sqlite_version,
                database=str(self.settings.database_path),
            ),
        )
        warning = sqlite_version_warning()
        if warning:
            log.warning("daemon.sqlite_version", extra=logs.fields(warning=warning))

    def _app(self, rt: Runtime, metrics: Metrics) -> ASGIApp:
        return build_app(rt, routes=health_routes(rt, metrics, self))

    def _schedule(self, rt: Runtime, metrics: Metrics) -> AsyncIOScheduler:
        ticks = self.settings.daemon
        scheduler = AsyncIOScheduler(timezone=self.settings.site.tz)
        # A job never overlaps itself; ticks missed (a suspend, a long job) run
        # once, not once each.
        options = {"max_instances": 1, "coalesce": True}
        now = rt.wall.now()  # the scheduler ticks in real time, whatever `clock` says
        ticking: dict[str, tuple[int, Callable[[], Awaitable[None]]]] = {
            "poll": (ticks.poll_tick, lambda: self._poll(rt, metrics)),
            "deliver": (ticks.deliver_tick, lambda: self._deliver(rt, metrics)),
        }
        for name, (seconds, work) in ticking.items():
            scheduler.add_job(
                self._job(name, work),
                "interval",
                seconds=seconds,
                id=name,
                next_run_time=now,
                misfire_grace_time=seconds,
                **options,
            )
        scheduler.add_job(
            self._job("housekeeping", lambda: self._housekeeping(rt)),
            "cron",
            hour=ticks.housekeeping_hour,
            id="housekeeping",
            misfire_grace_time=6 * 3600,
            **options,
        )
        self._scheduler = scheduler
        return scheduler

    def _job(
        self, name: str, work: Callable[[], Awaitable[None]]
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """A job that never kills the daemon: an error is logged and the next
        tick tries again (a full disk, a locked database, an SMTP outage)."""

        async def job() -> None:
            if self._stopping.is_set():
                return
            task = asyncio.current_task()
            assert task is not None  # noqa: S101 (always inside a task)
            self._running_jobs.add(task)
            try:
                await work()
            except asyncio.CancelledError:
                log.warning("daemon.job_cancelled", extra=logs.fields(job=name))
                raise
            except KairanError as e:
                log.error("daemon.job_failed", extra=logs.fields(job=name, error=e))
            except Exception:
                log.exception("daemon.job_bug", extra=logs.fields(job=name))
            finally:
                self._running_jobs.discard(task)

        return job

    # --- the jobs ------------------------------------------------------------------

    async def _poll(self, rt: Runtime, metrics: Metrics) -> None:
        poller = await self._current_poller(rt)
        cycle = await poller.run_cycle()
        self._last_cycle = self.clock.now()
        metrics.observe_cycle(cycle)
        self._tell(cycle)
        if cycle.changed or not (rt.settings.public_dir / "index.html").exists():
            self._want_publish(rt)

    def _want_publish(self, rt: Runtime) -> None:
        """Republish soon, without holding up the next poll (a publish of a big
        site takes tens of seconds); changes meanwhile fold into one more."""
        self._publish_due = True
        if self._publishing is None or self._publishing.done():
            job = self._job("publish", lambda: self._publish_while_due(rt))
            self._publishing = asyncio.create_task(job())

    async def _publish_while_due(self, rt: Runtime) -> None:
        while self._publish_due and not self._stopping.is_set():
            self._publish_due = False
            await self._publish(rt)

    async def _current_poller(self, rt: Runtime) -> Poller:
        if self._poller_stale:
            self._poller_stale = False
            await self._close_poller()
        if self._poller is None:
            stack = AsyncExitStack()
            self._poller = await stack.enter_async_context(rt.poller())
            self._poller_stack = stack
        return self._poller

    async def _close_poller(self) -> None:
        stack, self._poller_stack, self._poller = self._poller_stack, None, None
        if stack is not None:
            await stack.aclose()

    async def _publish(self, rt: Runtime) -> None:
        settings, now = rt.settings, self.clock.now()
        report = await self._in_worker(publish.publish_fresh, settings, now)
        log.info(
            "publish.done",
            extra=logs.fields(
                written=len(report.written),
                unchanged=report.unchanged,
                removed=len(report.removed),
            ),
        )
        self._tell(report)
        problem = await publish.ping_hub(settings, report)
        if problem:
            log.warning("publish.websub_failed", extra=logs.fields(error=problem))

    async def _deliver(self, rt: Runtime, metrics: Metrics) -> None:
        async with rt.delivery_pass() as delivery:
            report = await delivery.run()
        metrics.observe_deliveries(report)
        self._tell(report)

    async def _in_worker(
        self, work: Callable[[Settings, datetime], T], settings: Settings, now: datetime
    ) -> T:
        """Run blocking work on the daemon's one worker thread.

        One thread, not asyncio's pool: glibc gives each thread that allocates
        its own malloc arena and keeps each at its peak, and a publish's peak is
        large (bench/soak.py: RSS +139% in 10 minutes with publishes landing on
        several pool threads). Publish and housekeeping never need to overlap.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, work, settings, now)

    def _tell(self, report: Report) -> None:
        if self.observer is not None:
            self.observer(report)

    async def _housekeeping(self, rt: Runtime) -> None:
        now = self.clock.now()
        await self._in_worker(housekeeping.run, rt.settings, now)
        await operator_mail.send_report(rt, now)

    # --- signals -------------------------------------------------------------------

    def reload(self, rt: Runtime, app: SwappableApp, metrics: Metrics) -> None:
        """SIGHUP: read config.toml again; an invalid file changes nothing."""
        try:
            fresh = config.load_settings(self.config_path)
        except KairanError as e:
            log.error("config.reload_refused", extra=logs.fields(error=e))
            return
        moved = (fresh.data_dir, fresh.server) != (
            rt.settings.data_dir,
            rt.settings.server,
        )
        with unit_of_work(rt.db):
            sync_members(rt.db, fresh.members)
        rt.settings = self.settings = fresh
        app.app = self._app(rt, metrics)
        self._reschedule(fresh)
        # The poller holds clients and limits built from the old settings; a poll
        # may be using them now, so the next poll replaces it.
        self._poller_stale = True
        log.info(
            "config.reloaded",
            extra=logs.fields(
                members=len(fresh.members),
                restart_needed="data_dir/server" if moved else "",
            ),
        )

    def _reschedule(self, fresh: Settings) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            return
        ticks = fresh.daemon
        scheduler.reschedule_job("poll", trigger="interval", seconds=ticks.poll_tick)
        scheduler.reschedule_job(
            "deliver", trigger="interval", seconds=ticks.deliver_tick
        )
        scheduler.reschedule_job(
            "housekeeping",
            trigger="cron",
            hour=ticks.housekeeping_hour,
            timezone=fresh.site.tz,
        )

    async def _shutdown(
        self,
        scheduler: AsyncIOScheduler,
        server: Server,
        serving: asyncio.Task[None],
    ) -> None:
        """Take no new work; give running jobs STOP_BUDGET, then cancel them (a
        cancelled delivery releases its leases); close the server."""
        log.info("daemon.stopping", extra=logs.fields(jobs=len(self._running_jobs)))
        # Paused, not shut down yet: APScheduler's shutdown cancels running jobs,
        # which must first get their chance to finish.
        scheduler.pause()
        server.stop()
        running = set(self._running_jobs)
        if running:
            _, late = await asyncio.wait(running, timeout=STOP_BUDGET)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        scheduler.shutdown(wait=False)
        await serving
        await self._close_poller()
        # A publish still running finishes first (Python joins the thread at exit
        # anyway); its files are replaced atomically, one by one.
        self._worker.shutdown(wait=True)
        log.info("daemon.stopped")
