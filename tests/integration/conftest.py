"""Fixtures for integration tests: the sandbox feed server, one per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aggregator.sandbox.feed_server import FeedServer


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
