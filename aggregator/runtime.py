"""Composition root: builds Settings, Database, Clock, RNG and the HTTP client once."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from aggregator import config, fetch, outbox_view, tokens
from aggregator.clock import Clock, SystemClock
from aggregator.daemon_lock import daemon_running
from aggregator.db import open_database, unit_of_work
from aggregator.deliver import Channel, DeliveryPass
from aggregator.errors import ConfigError
from aggregator.hostlimits import HostLimits
from aggregator.mail_channel import EmailChannel, Mailer
from aggregator.parse_runner import ParseRunner
from aggregator.poller import Poller
from aggregator.settings import Settings
from aggregator.store import sync_members
from aggregator.webhook_channel import Poster, WebhookChannel
from notifiers.webhook import WebhookTransport


@dataclass
class Runtime:
    settings: Settings
    db: sqlite_utils.Database
    clock: Clock = field(default_factory=SystemClock)
    rng: random.Random = field(default_factory=random.Random)
    # The real time, whatever `clock` says: what a receiver compares with its own
    # (webhook-timestamp). Tests and the demo move `clock`; this stays real.
    wall: Clock = field(default_factory=SystemClock)
    _key: bytes | None = field(default=None, repr=False)

    @property
    def key(self) -> bytes:
        """The site key that unsubscribe and confirmation tokens are derived from."""
        if self._key is None:
            self._key = tokens.load_or_create_key(self.settings.data_dir)
        return self._key

    def require_sender(self) -> None:
        if not self.settings.email.from_address:
            raise ConfigError(
                str(self.settings.path),
                "email.from",
                "must be set before kairan can send e-mail",
            )

    @asynccontextmanager
    async def delivery_pass(
        self, mailer: Mailer | None = None, poster: Poster | None = None
    ) -> AsyncIterator[DeliveryPass]:
        """A delivery pass over e-mail (SMTP unless a mailer is given) and
        webhooks (HTTPS unless a poster is given).

        Without `[email] from`, e-mail is left out, unless mail is waiting to be
        sent: then that is the error to report.
        """
        async with AsyncExitStack() as stack:
            channels: dict[str, Channel] = {}
            if self.settings.email.from_address or outbox_view.has_unsent(
                self.db, "email"
            ):
                self.require_sender()
                if mailer is None:
                    mailer = await stack.enter_async_context(self.smtp())
                channels["email"] = EmailChannel(self.settings, self.key, mailer)
            if poster is None:
                poster = await stack.enter_async_context(self.webhook_transport())
            channels["webhook"] = WebhookChannel(self.settings, poster, self.wall)
            yield DeliveryPass(
                db=self.db,
                settings=self.settings,
                clock=self.clock,
                rng=self.rng,
                key=self.key,
                channels=channels,
            )

    def smtp(self) -> AbstractAsyncContextManager[Mailer]:
        # Imported here: aiosmtplib is not needed by commands that never mail.
        from notifiers.email import SmtpTransport

        return SmtpTransport(self.settings.email)

    def webhook_transport(self) -> WebhookTransport:
        """Connects lazily: a pass with no webhook due opens no connection."""
        return WebhookTransport(
            self.settings.webhooks,
            fetch.user_agent(self.settings.poll, self.settings.site),
        )

    @asynccontextmanager
    async def poller(self, *, strict: bool = False) -> AsyncIterator[Poller]:
        poll = self.settings.poll
        parser = ParseRunner(poll.parse_workers)
        try:
            async with fetch.Clients(poll, self.settings.site) as clients:
                yield Poller(
                    settings=self.settings,
                    db=self.db,
                    clock=self.clock,
                    rng=self.rng,
                    clients=clients,
                    limits=HostLimits(poll.concurrency, poll.per_host),
                    parser=parser,
                    strict=strict,
                )
        finally:
            parser.close()


@contextmanager
def open_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    create: bool = True,
    checkpointer: bool = False,
) -> Iterator[Runtime]:
    """``checkpointer``: this is the daemon's runtime (it holds the lock)."""
    db = open_database(settings.database_path, create=create)
    if not checkpointer and daemon_running(settings.data_dir):
        # The daemon is the only checkpointer while it runs: a CLI command's
        # checkpoint could otherwise race the daemon's (issue 6, and the WAL
        # reset bug of SQLite < 3.51.3). Its writes wait in the WAL.
        db.execute("PRAGMA wal_autocheckpoint = 0")
    try:
        with unit_of_work(db):
            sync_members(db, settings.members)
        yield Runtime(settings, db, clock or SystemClock(), rng or random.Random())
    finally:
        db.close()


def load(config_path: str | Path | None) -> Settings:
    return config.load_settings(config.find_config_path(config_path))
