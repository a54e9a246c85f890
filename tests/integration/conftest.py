"""Fixtures for integration tests: the sandbox feed server, one per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aggregator.sandbox.feed_server import FeedServer
from aggregator.sandbox.webhook_receiver import WebhookReceiver
from tests.support.webhooks import fresh, running_receiver


@pytest.fixture(scope="session")
def feed_server_session() -> Iterator[FeedServer]:
    """One running server for the whole session; tests use `feed_server`."""
    server = FeedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def feed_server(feed_server_session: FeedServer) -> Iterator[FeedServer]:
    """The session's server with no routes and no recorded requests."""
    feed_server_session.reset()
    try:
        yield feed_server_session
    finally:
        feed_server_session.reset()


@pytest.fixture(scope="module")
def shared_receiver() -> Iterator[WebhookReceiver]:
    """One sandbox webhook receiver per test module (each start costs ~0.2 s)."""
    yield from running_receiver()


@pytest.fixture
def receiver(shared_receiver: WebhookReceiver) -> Iterator[WebhookReceiver]:
    """The module's receiver without scripts, requests or secrets, before and after."""
    yield from fresh(shared_receiver)
