"""The WebSub ping: a real hub on 127.0.0.1 receives hub.mode=publish per change."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from aggregator.publish import PublishReport, ping_hub
from aggregator.settings import PublishSettings
from notifiers import websub
from tests.support.builders import settings


class Hub:
    """Answers POSTs with the scripted statuses (then 204) and keeps their forms."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.forms: list[dict[str, list[str]]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                hub.forms.append(parse_qs(self.rfile.read(length).decode()))
                self.send_response(hub.statuses.pop(0) if hub.statuses else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hub"


@pytest.fixture
def hub() -> Iterator[Hub]:
    running = Hub()
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


async def no_wait(seconds: float) -> None:
    return None


TOPICS = ["https://kairan.example.jp/feed.atom", "https://kairan.example.jp/feed.json"]


async def test_the_hub_gets_one_publish_request_with_every_topic(hub: Hub) -> None:
    error = await websub.ping(hub.url, TOPICS, user_agent="Kairan/test", sleep=no_wait)
    assert error is None
    assert hub.forms == [{"hub.mode": ["publish"], "hub.url": TOPICS}]


async def test_a_failing_hub_is_retried_then_accepts(hub: Hub) -> None:
    hub.statuses = [500, 503]
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    assert await websub.ping(hub.url, TOPICS, user_agent="K", sleep=record) is None
    assert len(hub.forms) == 3
    assert waits == list(websub.RETRY_WAITS)


async def test_a_hub_that_keeps_failing_gives_the_error_not_an_exception(
    hub: Hub,
) -> None:
    hub.statuses = [500, 500, 500]
    error = await websub.ping(hub.url, TOPICS, user_agent="K", sleep=no_wait)
    assert error == f"{hub.url}: HTTP 500"
    assert len(hub.forms) == 3


async def test_a_dead_hub_is_an_error_line_and_nothing_is_pinged_without_topics(
    hub: Hub,
) -> None:
    dead = "http://127.0.0.1:9/hub"  # discard port: nothing listens
    error = await websub.ping(dead, TOPICS, user_agent="K", seconds=2, sleep=no_wait)
    assert error is not None
    assert error.startswith(dead)
    assert await websub.ping(hub.url, [], user_agent="K") is None
    assert hub.forms == []


async def test_kairan_publish_pings_only_for_the_feeds_it_rewrote(
    hub: Hub, tmp_path: Path
) -> None:
    base = settings(tmp_path)
    config = dataclasses.replace(
        base,
        site=dataclasses.replace(base.site, base_url="https://kairan.example.jp/"),
        publish=PublishSettings(websub_hub=hub.url),
    )
    written = ("feed.atom", "index.html", "tags/神奈川県.atom", "members.opml")
    report = PublishReport(tmp_path, written, 3, (), 0)
    assert await ping_hub(config, report) is None
    [form] = hub.forms
    assert form["hub.url"] == [
        "https://kairan.example.jp/feed.atom",
        "https://kairan.example.jp/tags/%E7%A5%9E%E5%A5%88%E5%B7%9D%E7%9C%8C.atom",
    ]
    nothing = PublishReport(tmp_path, ("index.html",), 3, (), 0)
    assert await ping_hub(config, nothing) is None
    assert len(hub.forms) == 1  # no feed changed: no request
