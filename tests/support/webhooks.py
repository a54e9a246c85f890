"""Webhook integration helpers: a runtime on a FixedClock, the feed server, a receiver.

`WebhookWorld` polls the sandbox feed server through the real poller, adds endpoints
through `aggregator.endpoints` and runs real delivery passes; the receiver is the
sandbox `WebhookReceiver`, which verifies with the `standardwebhooks` library against
the real clock (`Runtime.wall`), whatever the FixedClock says.
"""

from __future__ import annotations

import dataclasses
import json
import random
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from aggregator import endpoints, outbox_view, subscribers
from aggregator.db import unit_of_work
from aggregator.deliver import DeliveryReport
from aggregator.models import Filters, Member, Subscriber
from aggregator.poller import CycleReport, Poller
from aggregator.runtime import Runtime, open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.sandbox.webhook_receiver import WebhookReceiver, WebhookRequest
from aggregator.settings import Settings, WebhookSettings
from aggregator.webhook_channel import Poster
from notifiers.webhook import WebhookTransport
from tests.support.builders import settings
from tests.support.clock import FixedClock
from tests.support.feeds import Item, note_feed, note_key

# Short timeouts keep failure tests quick; the receiver listens on 127.0.0.1.
QUICK = WebhookSettings(timeout=0.5, allow_private_addresses=True)


def webhook_settings(tmp_path: Path, members: tuple[Member, ...]) -> Settings:
    """Test settings (no [email] from) with QUICK webhooks."""
    return dataclasses.replace(settings(tmp_path, members), webhooks=QUICK)


@asynccontextmanager
async def webhook_world(
    config: Settings, feeds: FeedServer, receiver: WebhookReceiver, clock: FixedClock
) -> AsyncIterator[WebhookWorld]:
    with open_runtime(config, clock=clock, rng=random.Random(5)) as rt:
        async with rt.poller() as poller, rt.webhook_transport() as transport:
            yield WebhookWorld(rt, feeds, receiver, clock, poller, transport)


def running_receiver() -> Iterator[WebhookReceiver]:
    """A started receiver, stopped when the generator closes (a fixture's body)."""
    with WebhookReceiver() as receiver:
        yield receiver


def fresh(receiver: WebhookReceiver) -> Iterator[WebhookReceiver]:
    """``receiver`` without scripts, requests or secrets, and so again afterwards."""
    receiver.reset()
    receiver.secrets.clear()
    try:
        yield receiver
    finally:
        receiver.reset()
        receiver.secrets.clear()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (until a test binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def article(n: int, title: str, published: datetime, **kw: Any) -> Item:
    return Item(note_key(n), title, published=published, **kw)


def signatures(request: WebhookRequest) -> list[str]:
    """The ``v1,…`` signatures of a request (several during a rotation)."""
    return request.headers["webhook-signature"].split(" ")


def verifies(request: WebhookRequest, secret: str) -> bool:
    """Whether ``secret`` alone verifies ``request``, as a receiver holding only it
    would check (the official library, the real clock)."""
    try:
        Webhook(secret).verify(request.body, request.headers, json_parse=False)
    except WebhookVerificationError:
        return False
    return True


def body_of(request: WebhookRequest) -> Any:
    return json.loads(request.body)


def requests_for(receiver: WebhookReceiver, webhook_id: str) -> list[WebhookRequest]:
    return [r for r in receiver.requests if r.webhook_id == webhook_id]


@dataclass
class WebhookWorld:
    """A runtime whose members are served by the feed server; endpoints on a receiver.

    One poller and one transport serve all of a test's polls and passes: each new
    httpx client loads the CA bundle, which would cost more than the test itself.
    """

    rt: Runtime
    feeds: FeedServer
    receiver: WebhookReceiver
    clock: FixedClock
    poller: Poller
    transport: WebhookTransport

    @property
    def db(self) -> sqlite_utils.Database:
        return self.rt.db

    def serve(self, member_id: str, *items: Item) -> None:
        self.feeds.route(f"/{member_id}.xml", static_route(note_feed(items)))

    async def poll(self) -> CycleReport:
        return await self.poller.run_cycle((), force=True)

    async def deliver(self, poster: Poster | None = None) -> DeliveryReport:
        """One pass through ``poster``, by default the runtime's own transport."""
        async with self.rt.delivery_pass(poster=poster or self.transport) as delivery:
            return await delivery.run()

    def add_endpoint(
        self, url: str | None = None, filters: Filters | None = None
    ) -> endpoints.NewEndpoint:
        """An endpoint (the receiver's URL by default); the receiver trusts its
        secret too."""
        with unit_of_work(self.db):
            added = endpoints.add(
                self.db,
                endpoints.checked_url(url or self.receiver.url, self.rt.settings),
                filters or Filters(),
                self.rt.settings,
                self.rt.key,
                self.clock.now(),
                "cli:test",
            )
        self.receiver.secrets.append(added.secret)
        return added

    def subscriber(self, subscriber_id: int) -> Subscriber:
        return subscribers.get(self.db, subscriber_id)

    def rows(self, subscriber_id: int | None = None) -> list[outbox_view.DeliveryRow]:
        """The deliveries, oldest first."""
        found = outbox_view.list_deliveries(self.db, subscriber_id=subscriber_id)
        return list(reversed(found))

    def atom_id(self, entry_id: int | None) -> str:
        row = self.db.execute(
            "SELECT atom_id FROM entries WHERE id = ?", [entry_id]
        ).fetchone()
        return str(row[0])

    def later(self, seconds: float) -> datetime:
        """The FixedClock ``seconds`` from now, without moving it."""
        return self.clock.now() + timedelta(seconds=seconds)
