"""One poll cycle: pick due members, fetch concurrently, parse off-loop, ingest.

Per-member isolation lives here (ARCHITECTURE "Isolation boundaries"): a
`FeedError` is a recorded outcome (last_error, failures, backoff); any other
exception is logged with its traceback as an internal error, recorded, and
re-raised when ``strict`` (tests), so bugs fail loudly.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import sqlite_utils

from aggregator import backoff, fetch, logs, normalize, store
from aggregator.audience import AudienceCache
from aggregator.clock import Clock
from aggregator.db import unit_of_work
from aggregator.errors import (
    FeedError,
    FeedGone,
    RateLimited,
    StoreError,
    UsageError,
)
from aggregator.hostlimits import HostLimits
from aggregator.ingest import FeedContext, IngestReport, PollRecord, ingest, save_poll
from aggregator.models import (
    FeedState,
    Fetched,
    FetchRequest,
    Member,
    MemberState,
    NotModified,
)
from aggregator.parse_runner import ParseRunner
from aggregator.settings import Settings
from aggregator.store import FetchOutcome

log = logs.get("poller")


@dataclass(frozen=True, slots=True)
class MemberReport:
    member_id: str
    # "ok", "not_modified", "unchanged", "error", "internal_error" or "store_error"
    kind: str
    duration: float  # seconds
    new: int = 0
    edited: int = 0
    unchanged: int = 0
    baseline: int = 0
    error: str | None = None
    error_class: str | None = None
    moved_to: str | None = None
    new_ids: tuple[int, ...] = ()
    edited_ids: tuple[int, ...] = ()
    parse_seconds: float | None = None  # None: the body was not parsed


@dataclass(frozen=True, slots=True)
class CycleReport:
    started_at: datetime
    duration: float
    members: tuple[MemberReport, ...]

    @property
    def failed(self) -> tuple[MemberReport, ...]:
        return tuple(m for m in self.members if m.kind.endswith("error"))

    @property
    def changed(self) -> bool:
        """Did the cycle store new or edited articles (so publishing is due)?"""
        return any(m.new or m.edited or m.baseline for m in self.members)


def select_due(
    members: Sequence[Member],
    states: dict[str, FeedState],
    now: datetime,
    *,
    names: Sequence[str] = (),
    force: bool = False,
) -> list[Member]:
    """The members to poll now.

    Named members are polled whatever their schedule, pause or 410 (an explicit
    operator request); ``force`` polls every active member now; otherwise only
    those whose next poll time has come. Requests stay conditional either way.
    """
    if names:
        by_id = {m.id: m for m in members}
        unknown = [n for n in names if n not in by_id]
        if unknown:
            raise UsageError(f'no member with id "{unknown[0]}"')
        return [by_id[n] for n in dict.fromkeys(names)]
    due = []
    for member in members:
        state = states.get(member.id)
        if member.paused or (state and state.state is MemberState.GONE):
            continue
        next_at = state.next_poll_at if state else None
        if force or next_at is None or next_at <= now:
            due.append(member)
    return due


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass
class Poller:
    settings: Settings
    db: sqlite_utils.Database
    clock: Clock
    rng: random.Random
    clients: fetch.Clients
    limits: HostLimits
    parser: ParseRunner
    strict: bool = False

    async def run_cycle(
        self,
        names: Sequence[str] = (),
        *,
        force: bool = False,
        on_member: Callable[[MemberReport], None] | None = None,
    ) -> CycleReport:
        started, t0 = self.clock.now(), self.clock.monotonic()
        with unit_of_work(self.db):
            store.sync_members(self.db, self.settings.members)
        states = store.feed_states(self.db)
        due = select_due(
            self.settings.members, states, started, names=names, force=force
        )

        async def one(member: Member) -> MemberReport:
            report = await self.poll_member(member, states[member.id])
            if on_member is not None:
                on_member(report)
            return report

        reports = await asyncio.gather(*(one(m) for m in due))
        cycle = CycleReport(started, self.clock.monotonic() - t0, tuple(reports))
        log.info(
            "poll.cycle",
            extra=logs.fields(
                members=len(reports),
                failed=len(cycle.failed),
                new=sum(r.new for r in reports),
                edited=sum(r.edited for r in reports),
                seconds=round(cycle.duration, 3),
            ),
        )
        return cycle

    async def poll_member(self, member: Member, state: FeedState) -> MemberReport:
        started, t0 = self.clock.now(), self.clock.monotonic()
        try:
            report = await self.fetch_and_store(member, state, started, t0)
        except FeedError as e:
            report = self.record_failure(member, state, e, started, t0)
        except (StoreError, sqlite3.OperationalError) as e:
            # Our storage failed (a full disk, a locked or damaged file), not the
            # member: its transaction rolled back, nothing about it is recorded,
            # so its poll stays due and the next tick tries again, no backoff.
            log.error("poll.store_failed", extra=logs.fields(member=member.id, error=e))
            report = MemberReport(
                member.id,
                "store_error",
                self.clock.monotonic() - t0,
                error=str(e),
                error_class="store",
            )
            if self.strict:
                raise
        except Exception as e:
            log.exception(
                "poll.internal_error",
                extra=logs.fields(member=member.id, url=state.url),
            )
            report = self.record_failure(member, state, e, started, t0)
            if self.strict:
                raise
        log.info(
            "poll.member",
            extra=logs.fields(
                member=member.id,
                outcome=report.kind,
                new=report.new,
                edited=report.edited,
                error=report.error or "",
                seconds=round(report.duration, 3),
            ),
        )
        return report

    async def fetch_and_store(
        self, member: Member, state: FeedState, started: datetime, t0: float
    ) -> MemberReport:
        poll = self.settings.poll
        request = FetchRequest(member.id, state.url, state.validators)
        client = self.clients.for_key(member.id)
        result = await fetch.fetch(client, self.limits, request, poll, self.clock)
        if result.moved_to:
            log.warning(
                "poll.moved",
                extra=logs.fields(member=member.id, old=state.url, new=result.moved_to),
            )
        url = result.moved_to or state.url
        moved_from = state.url if result.moved_to else None
        ttl = None
        digest = body_hash(result.body) if isinstance(result, Fetched) else None
        parse_seconds = None
        if isinstance(result, Fetched) and digest != state.body_hash:
            parse_t0 = self.clock.monotonic()
            feed = await self.parser.parse(
                result.body, result.content_type, result.url, member.id
            )
            parse_seconds = self.clock.monotonic() - parse_t0
            for warning in feed.warnings:
                log.warning(
                    "parse.warning",
                    extra=logs.fields(member=member.id, warning=warning),
                )
            candidates = normalize.identify_all(feed, member.id, result.url)
            ttl = feed.ttl_minutes
        else:
            candidates = None
        now = self.clock.now()
        outcome = FetchOutcome(
            member_id=member.id,
            now=now,
            next_poll_at=backoff.next_poll(
                now, poll, self.rng, 0, caching=result.caching, ttl_minutes=ttl
            ),
            url=url,
            moved_from=moved_from,
            validators=result.validators,
            body_hash=digest,
        )
        status = 304 if isinstance(result, NotModified) else result.status
        duration = self.clock.monotonic() - t0
        kind = (
            "ok"
            if candidates is not None
            else ("not_modified" if isinstance(result, NotModified) else "unchanged")
        )
        record = PollRecord(outcome, started, kind, status, round(duration * 1000))
        if candidates is None:
            save_poll(self.db, record)
            report = IngestReport()
        else:
            report = ingest(
                self.db, self.feed_context(member, state, url), candidates, record
            )
        return MemberReport(
            member_id=member.id,
            kind=kind,
            duration=duration,
            new=len(report.new),
            edited=len(report.edited),
            unchanged=report.unchanged,
            baseline=len(report.baseline),
            moved_to=result.moved_to,
            new_ids=report.new,
            edited_ids=report.edited,
            parse_seconds=parse_seconds,
        )

    @cached_property
    def audience(self) -> AudienceCache:
        """Who is told of new articles, read again only when subscribers change."""
        return AudienceCache()

    @cached_property
    def members_by_id(self) -> dict[str, Member]:
        """Built once per poller, not once per polled feed."""
        return {m.id: m for m in self.settings.members}

    def feed_context(self, member: Member, state: FeedState, url: str) -> FeedContext:
        return FeedContext(
            member=member,
            members=self.members_by_id,
            feed_url=url,
            baseline_done=state.baseline_done,
            notify_backlog=self.settings.poll.notify_backlog,
            default_tz=self.settings.site.tz,
            audience=self.audience,
        )

    def record_failure(
        self,
        member: Member,
        state: FeedState,
        error: Exception,
        started: datetime,
        t0: float,
    ) -> MemberReport:
        now = self.clock.now()
        gone = isinstance(error, FeedGone)
        if isinstance(error, FeedError):
            kind, error_class = "error", error.error_class
            message = error.problem
        else:
            kind, error_class = "internal_error", "internal"
            message = f"internal error: {type(error).__name__}: {error}"
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        next_poll = (
            None
            if gone
            else backoff.next_poll(
                now,
                self.settings.poll,
                self.rng,
                state.failures + 1,
                retry_after=retry_after,
            )
        )
        duration = self.clock.monotonic() - t0
        status = getattr(error, "status", None)
        outcome = FetchOutcome(
            member_id=member.id,
            now=now,
            next_poll_at=next_poll,
            url=state.url,
            error=message,
            error_class=error_class,
            gone=gone,
        )
        save_poll(
            self.db,
            PollRecord(outcome, started, "error", status, round(duration * 1000)),
        )
        return MemberReport(
            member_id=member.id,
            kind=kind,
            duration=duration,
            error=message,
            error_class=error_class,
        )
