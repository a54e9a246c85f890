"""One delivery pass: claim due messages, send them through their channel, record.

Each chunk of messages is claimed in one transaction (with a lease), sent
concurrently, and each outcome is committed on its own. A crash between the
claim and the outcome leaves the rows `sending` until the lease runs out; the
next pass then sends the same batch again: same articles, same Message-ID.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import sqlite_utils

from aggregator import (
    backoff,
    compose,
    endpoints,
    logs,
    optin,
    outbox,
    published_ids,
    store,
    subscribers,
)
from aggregator.clock import Clock
from aggregator.db import unit_of_work
from aggregator.errors import UsageError
from aggregator.models import StoredEntry, Subscriber, SubscriberState
from aggregator.settings import Settings
from notifiers.errors import (
    DeliveryError,
    EndpointGone,
    RecipientRejected,
    TransientDeliveryError,
)

log = logs.get("deliver")

CHUNK_PER_WORKER = 4  # messages claimed per sending worker and transaction


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A claimed message with everything its channel needs to build it."""

    claim: outbox.Claim
    entries: tuple[StoredEntry, ...]
    confirm: tuple[str, datetime] | None  # the live confirmation token, expiry
    secrets: tuple[str, ...] = ()  # a webhook's live signing secrets, newest first


class Channel(Protocol):
    """A way to reach subscribers; raises DeliveryError when a send fails."""

    @property
    def name(self) -> str: ...

    @property
    def concurrency(self) -> int:
        """Messages in flight at once."""
        ...

    @property
    def retry_schedule(self) -> tuple[int, ...]:
        """Seconds to wait after the 1st, 2nd, … failure; then give up."""
        ...

    def payload(self, outgoing: Outgoing) -> bytes | None:
        """Bytes to fix at the first claim and resend unchanged (None: none)."""
        ...

    async def send(self, outgoing: Outgoing) -> None: ...


@dataclass(frozen=True, slots=True)
class Attempt:
    """One send and how it went (None: accepted), not yet recorded."""

    claim: outbox.Claim
    error: DeliveryError | None


@dataclass(frozen=True, slots=True)
class SendResult:
    batch_id: int | None  # None in a dry run for a message never claimed
    subscriber_id: int
    address: str
    channel: str
    kind: str
    articles: int
    outcome: str  # "sent", "retry", "failed" or "due" (dry run)
    error: str | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    results: tuple[SendResult, ...]

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)


@dataclass
class DeliveryPass:
    db: sqlite_utils.Database
    settings: Settings
    clock: Clock
    rng: random.Random
    key: bytes
    channels: Mapping[str, Channel]
    _entries: dict[int, StoredEntry] = field(default_factory=dict, repr=False)
    _secrets: dict[int, tuple[str, ...]] = field(default_factory=dict, repr=False)

    async def run(
        self,
        *,
        channel: str | None = None,
        subscriber_id: int | None = None,
        dry_run: bool = False,
    ) -> DeliveryReport:
        """Send everything due now (on the chosen channels, for one subscriber)."""
        self._entries.clear()  # articles may have been edited since the last pass
        self._secrets.clear()  # and secrets rotated
        names = self._channel_names(channel)
        results: list[SendResult] = []
        for name in names:
            now = self.clock.now()
            due = outbox.due_subscribers(self.db, now, name, subscriber_id)
            if dry_run:
                results += self._planned(due, now, name)
                continue
            chosen = self.channels[name]
            size = max(1, chosen.concurrency) * CHUNK_PER_WORKER
            for start in range(0, len(due), size):
                results += await self._send_group(chosen, due[start : start + size])
        return DeliveryReport(tuple(results))

    async def _send_group(
        self, channel: Channel, subscriber_ids: Sequence[int]
    ) -> list[SendResult]:
        """Everything due for these subscribers, a chunk of messages at a time.

        An e-mail subscriber has one message due at most, so one chunk does. A
        webhook endpoint may have thousands (one per article, after an outage):
        those go out `size` at a time, so a lease covers only what is in flight.
        """
        size = max(1, channel.concurrency) * CHUNK_PER_WORKER
        if channel.name != "webhook":
            return await self._send_chunk(channel, subscriber_ids)
        rows = outbox.due_count(self.db, self.clock.now(), channel.name, subscriber_ids)
        results: list[SendResult] = []
        for _ in range(rows // size + 1):  # what becomes due meanwhile waits
            sent = await self._send_chunk(channel, subscriber_ids, size)
            results += sent
            if len(sent) < size:
                break
        return results

    def _channel_names(self, channel: str | None) -> list[str]:
        if channel is None:
            return sorted(self.channels)
        if channel not in self.channels:
            known = ", ".join(sorted(self.channels)) or "none"
            raise UsageError(f"no channel {channel!r} (available: {known})")
        return [channel]

    def _planned(
        self, due: Sequence[int], now: datetime, name: str
    ) -> list[SendResult]:
        people = {i: subscribers.get(self.db, i) for i in due}
        return [
            SendResult(
                batch_id=batch.batch_id,
                subscriber_id=batch.subscriber_id,
                address=people[batch.subscriber_id].address,
                channel=name,
                kind=outbox.batch_kind(batch, people[batch.subscriber_id]),
                articles=sum(1 for e in batch.entry_ids if e is not None),
                outcome="due",
            )
            for batch in outbox.plan(self.db, due, now, name)
        ]

    async def _send_chunk(
        self,
        channel: Channel,
        subscriber_ids: Sequence[int],
        limit: int | None = None,
    ) -> list[SendResult]:
        with unit_of_work(self.db):
            claims = outbox.claim(
                self.db,
                subscriber_ids,
                self.clock.now(),
                self.lease(),
                self.message_host(),
                channel.name,
                limit,
            )
            self._load_entries(claims)
            claims = [self._with_payload(channel, c) for c in claims]
        gate = asyncio.Semaphore(max(1, channel.concurrency))

        async def one(claim: outbox.Claim) -> Attempt:
            async with gate:
                return await self._attempt(channel, claim)

        try:
            attempts = await asyncio.gather(*(one(c) for c in claims))
        except asyncio.CancelledError:
            # Stopping (SIGTERM): hand the chunk back now rather than when the
            # lease runs out. A send that did get through is resent as the
            # same message: the in-flight duplicate the design allows.
            with unit_of_work(self.db):
                outbox.release(self.db, claims, self.clock.now())
            raise
        return self._record(channel, attempts)

    def lease(self) -> timedelta:
        """Long enough for one chunk, short enough that a crash costs little."""
        timeout = max(self.settings.email.timeout, self.settings.webhooks.timeout)
        return timedelta(seconds=max(300.0, 4 * CHUNK_PER_WORKER * timeout))

    def message_host(self) -> str:
        return compose.site_host(self.settings)

    def _load_entries(self, claims: Sequence[outbox.Claim]) -> None:
        """A digest pass sends the same articles thousands of times: read each once.

        Their published ids are assigned first (as `kairan publish` would), so a
        webhook names an article by the id it has in the feeds.
        """
        wanted = {i for c in claims for i in c.entry_ids} - self._entries.keys()
        if wanted:
            published_ids.assign_atom_ids(self.db, self.message_host())
            self._entries.update(store.get_entries(self.db, sorted(wanted)))

    def _with_payload(self, channel: Channel, claim: outbox.Claim) -> outbox.Claim:
        """Fix a message's bytes in the claim's transaction (webhooks)."""
        if claim.payload is not None:
            return claim
        try:
            payload = channel.payload(self._outgoing(claim))
        except Exception:
            # Sent without: the send builds it again, and its error is recorded.
            log.exception("delivery.bug", extra=_fields(claim))
            return claim
        if payload is None:
            return claim
        return outbox.fix_payload(self.db, claim, payload)

    async def _attempt(self, channel: Channel, claim: outbox.Claim) -> Attempt:
        try:
            await channel.send(self._outgoing(claim))
        except DeliveryError as e:
            return Attempt(claim, e)
        except Exception as e:
            log.exception("delivery.bug", extra=_fields(claim))
            return Attempt(claim, TransientDeliveryError(repr(e)))
        return Attempt(claim, None)

    def _outgoing(self, claim: outbox.Claim) -> Outgoing:
        entries = tuple(self._entries[i] for i in claim.entry_ids if i in self._entries)
        confirm = (
            optin.confirmation_link_token(self.db, claim.subscriber.id, self.key)
            if claim.kind == "confirm"
            else None
        )
        return Outgoing(claim, entries, confirm, self._signing_secrets(claim))

    def _signing_secrets(self, claim: outbox.Claim) -> tuple[str, ...]:
        if claim.channel != "webhook":
            return ()
        who = claim.subscriber.id
        if who not in self._secrets:
            self._secrets[who] = endpoints.live_secrets(self.db, who, self.clock.now())
        return self._secrets[who]

    def _record(
        self, channel: Channel, attempts: Sequence[Attempt]
    ) -> list[SendResult]:
        """Every outcome of a chunk in one transaction.

        A crash before this commit leaves the chunk's rows `sending`; after the
        lease they are sent again as the same messages (same Message-ID and
        bytes), so the worst case stays one identical duplicate per message.
        """
        now = self.clock.now()
        sent = [a.claim for a in attempts if a.error is None]
        with unit_of_work(self.db):
            # The common case in bulk: one statement for all sent messages.
            outbox.mark_all_sent(self.db, sent, now)
            for subscriber_id in {c.subscriber.id for c in sent}:
                subscribers.mark_reachable(self.db, subscriber_id)
            results = [self._outcome(channel, a, now) for a in attempts]
        for attempt, result in zip(attempts, results, strict=True):
            level = {"sent": logging.INFO, "retry": logging.WARNING}.get(
                result.outcome, logging.ERROR
            )
            if not log.isEnabledFor(level):
                continue
            more = {} if result.error is None else {"error": result.error}
            log.log(
                level,
                f"delivery.{result.outcome}",
                extra=_fields(attempt.claim, **more),
            )
        return results

    def _outcome(self, channel: Channel, attempt: Attempt, now: datetime) -> SendResult:
        """A failed attempt's outcome, written; a sent one is already written."""
        claim, error = attempt.claim, attempt.error
        if error is None:
            return self._result(claim, "sent")
        problem = str(error)
        if claim.channel == "webhook" and self._endpoint_failed(claim, error, now):
            outbox.mark_failed(self.db, claim, problem)
            return self._result(claim, "failed", problem)
        retry_at = None
        if isinstance(error, TransientDeliveryError):
            retry_at = backoff.next_retry(
                claim.attempts, channel.retry_schedule, now, self.rng, error.retry_after
            )
            if retry_at is None:
                problem = f"gave up after {claim.attempts} attempts: {problem}"
        if retry_at is not None:
            outbox.mark_retry(self.db, claim, problem, retry_at)
            return self._result(claim, "retry", problem, retry_at)
        outbox.mark_failed(self.db, claim, problem)
        if isinstance(error, RecipientRejected):
            self._bounced(claim.subscriber, problem, now)
        return self._result(claim, "failed", problem)

    def _endpoint_failed(
        self, claim: outbox.Claim, error: DeliveryError, now: datetime
    ) -> bool:
        """True when this failure disables the endpoint: gone (410) or failing
        for `webhooks.disable_after`.

        Called before this claim's outcome is written: its own rows are still
        `sending`, so `disable` drops the endpoint's other unsent rows and the
        caller fails this one.
        """
        who = subscribers.get(self.db, claim.subscriber.id)
        if who.state is SubscriberState.DISABLED:
            return True  # an earlier outcome of this chunk disabled it
        if isinstance(error, EndpointGone):
            reason = f"gone: {error}"
            dropped = endpoints.disable(
                self.db, who.id, now, reason, cancel_unsent=True
            )
        else:
            since = endpoints.record_failure(self.db, who.id, now)
            limit = timedelta(seconds=self.settings.webhooks.disable_after)
            if not endpoints.failing_too_long(who, since, now, limit):
                return False
            reason = f"failing since {since:%Y-%m-%d %H:%M} UTC: {error}"
            dropped = endpoints.disable(
                self.db, who.id, now, reason, cancel_unsent=False
            )
        log.warning(
            "webhook.disabled",
            extra=logs.fields(subscriber=who.id, reason=reason, unsent=dropped),
        )
        return True

    def _bounced(self, subscriber: Subscriber, problem: str, now: datetime) -> None:
        limit = self.settings.email.bounce_limit
        if subscribers.record_bounce(self.db, subscriber.id, now, limit, problem):
            held = outbox.fail_unsent(
                self.db, subscriber.id, f"subscriber is bouncing: {problem}"
            )
            log.warning(
                "subscriber.bouncing",
                extra=logs.fields(subscriber=subscriber.id, failed_unsent=held),
            )

    def _result(
        self,
        claim: outbox.Claim,
        outcome: str,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> SendResult:
        return SendResult(
            batch_id=claim.batch_id,
            subscriber_id=claim.subscriber.id,
            address=claim.subscriber.address,
            channel=claim.channel,
            kind=claim.kind,
            articles=len(claim.entry_ids),
            outcome=outcome,
            error=error,
            retry_at=retry_at,
        )


def _fields(claim: outbox.Claim, **more: object) -> dict[str, object]:
    return logs.fields(
        subscriber=claim.subscriber.id,
        batch=claim.batch_id,
        channel=claim.channel,
        kind=claim.kind,
        articles=len(claim.entry_ids),
        attempt=claim.attempts,
        **more,
    )
