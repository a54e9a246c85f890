"""fetch.fetch against the real sandbox feed server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from aggregator import __version__
from aggregator.errors import (
    FeedGone,
    FetchTimeout,
    FetchTooLarge,
    HTTPStatusError,
    NetworkError,
    RateLimited,
    RedirectError,
    TLSError,
)
from aggregator.fetch import build_client, fetch, user_agent
from aggregator.hostlimits import HostLimits
from aggregator.models import Fetched, FetchRequest, NotModified, Validators
from aggregator.sandbox.feed_server import Drip, FeedServer, Route, static_route
from aggregator.settings import PollSettings, SiteSettings
from tests.support.clock import FixedClock

FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
)
SITE = SiteSettings(base_url="https://kairan.example/", contact="ops@kairan.example")
CAP = 1024 * 1024
ETAG = 'W/"caf\xe9 1"'  # obs-text and a space: only a byte-exact round trip keeps it
LAST_MODIFIED = "Tue, 01 Dec 2026 00:00:00 GMT"
EXPIRES = "Wed, 02 Dec 2026 03:00:00 GMT"
NO_VALIDATORS = Validators()


@pytest.fixture
def poll() -> PollSettings:
    return PollSettings(timeout=5.0, connect_timeout=2.0, max_bytes=CAP)


@pytest.fixture
def fast_poll(poll: PollSettings) -> PollSettings:
    """Short deadlines for the timeout tests, so they stay fast."""
    return dataclasses.replace(poll, timeout=0.5, connect_timeout=0.5)


@pytest.fixture
async def client(poll: PollSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with build_client(poll, SITE) as client:
        yield client


async def get(
    client: httpx.AsyncClient,
    url: str,
    poll: PollSettings,
    clock: FixedClock,
    validators: Validators = NO_VALIDATORS,
    limits: HostLimits | None = None,
) -> Fetched | NotModified:
    request = FetchRequest("yokosuka", url, validators)
    return await fetch(client, limits or HostLimits(10, 10), request, poll, clock)


# --- conditional GET -----------------------------------------------------------


async def test_validators_round_trip_byte_for_byte_then_304(
    feed_server, client, poll, clock
):
    route = Route(body=FEED, etag=ETAG, last_modified=LAST_MODIFIED)
    feed_server.route("/rss", route)
    url = feed_server.url("/rss")

    first = await get(client, url, poll, clock)
    assert isinstance(first, Fetched)
    assert first.body == FEED
    assert first.validators == Validators(etag=ETAG, last_modified=LAST_MODIFIED)
    assert first.url == url
    assert first.moved_to is None
    assert first.content_type == "application/rss+xml; charset=utf-8"

    second = await get(client, url, poll, clock, first.validators)
    assert isinstance(second, NotModified)
    assert second.validators == first.validators
    sent = feed_server.requests_to("/rss")
    assert sent[0].header("If-None-Match") is None
    assert sent[1].header("If-None-Match") == ETAG
    assert sent[1].header("If-Modified-Since") == LAST_MODIFIED


async def test_last_modified_alone_gets_304(feed_server, client, poll, clock):
    feed_server.route("/rss", Route(body=FEED, last_modified=LAST_MODIFIED))
    stored = Validators(last_modified=LAST_MODIFIED)
    result = await get(client, feed_server.url("/rss"), poll, clock, stored)
    assert isinstance(result, NotModified)
    assert result.validators == stored


async def test_validators_on_304_replace_stored_ones(feed_server, client, poll, clock):
    feed_server.route("/rss", Route(status=304, etag='"v2"'))
    stored = Validators(etag='"v1"', last_modified=LAST_MODIFIED)
    result = await get(client, feed_server.url("/rss"), poll, clock, stored)
    assert isinstance(result, NotModified)
    # The 304 named a new ETag and no Last-Modified: field by field (RFC 9111 §4.3.4).
    assert result.validators == Validators(etag='"v2"', last_modified=LAST_MODIFIED)


@pytest.mark.parametrize(
    ("headers", "max_age", "expires"),
    [
        ({"Cache-Control": "max-age=900"}, 900, None),
        ({"Expires": EXPIRES}, None, datetime(2026, 12, 2, 3, 0, tzinfo=UTC)),
        # RFC 9111 §5.3: with max-age, Expires is ignored
        ({"Cache-Control": 'public, max-age="60"', "Expires": EXPIRES}, 60, None),
        ({"Cache-Control": "no-cache, max-age=900", "Expires": EXPIRES}, None, None),
        ({"Cache-Control": "no-store"}, None, None),
        ({"Cache-Control": "max-age=soon", "Expires": "0"}, None, None),
        ({}, None, None),
    ],
)
async def test_caching_hints(
    feed_server, client, poll, clock, headers, max_age, expires
):
    feed_server.route("/rss", Route(body=FEED, headers=headers))
    result = await get(client, feed_server.url("/rss"), poll, clock)
    assert result.caching.max_age == max_age
    assert result.caching.expires == expires


# --- redirects -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "moves"),
    [
        ((301,), True),
        ((308,), True),
        ((301, 308, 301), True),
        ((302,), False),
        ((307,), False),
        ((303,), False),
        ((301, 302), False),
        ((302, 301), False),
    ],
)
async def test_redirect_chain_moves_only_when_every_hop_is_permanent(
    feed_server, client, poll, clock, statuses, moves
):
    for i, status in enumerate(statuses):
        feed_server.route(f"/hop{i}", Route(status=status, redirect=f"/hop{i + 1}"))
    final = f"/hop{len(statuses)}"
    feed_server.route(final, Route(body=FEED))

    result = await get(client, feed_server.url("/hop0"), poll, clock)

    assert isinstance(result, Fetched)
    assert result.url == feed_server.url(final)
    assert result.moved_to == (feed_server.url(final) if moves else None)
    assert result.body == FEED


async def test_relative_and_absolute_locations(feed_server, client, poll, clock):
    feed_server.route("/a/rss", Route(status=301, redirect="../b/rss"))
    feed_server.route("/b/rss", Route(status=301, redirect=feed_server.url("/c")))
    feed_server.route("/c", Route(body=FEED))
    result = await get(client, feed_server.url("/a/rss"), poll, clock)
    assert result.moved_to == feed_server.url("/c")


async def test_redirect_to_304_keeps_moved_to(feed_server, client, poll, clock):
    feed_server.route("/old", Route(status=308, redirect="/new"))
    feed_server.route("/new", Route(body=FEED, etag='"x"'))
    result = await get(client, feed_server.url("/old"), poll, clock, Validators('"x"'))
    assert isinstance(result, NotModified)
    assert result.moved_to == feed_server.url("/new")
    # the conditional header goes to every hop
    assert feed_server.requests_to("/new")[0].header("If-None-Match") == '"x"'


def chain(server: FeedServer, hops: int) -> None:
    for i in range(hops):
        server.route(f"/r{i}", Route(status=301, redirect=f"/r{i + 1}"))
    server.route(f"/r{hops}", Route(body=FEED))


async def test_five_hops_are_followed(feed_server, client, poll, clock):
    chain(feed_server, 5)
    result = await get(client, feed_server.url("/r0"), poll, clock)
    assert result.moved_to == feed_server.url("/r5")


async def test_six_hops_are_too_many(feed_server, client, poll, clock):
    chain(feed_server, 6)
    with pytest.raises(RedirectError, match="more than 5 redirects") as caught:
        await get(client, feed_server.url("/r0"), poll, clock)
    assert caught.value.error_class == "redirect"
    assert len(feed_server.requests) == 6
    assert feed_server.requests_to("/r6") == []


async def test_redirect_loop(feed_server, client, poll, clock):
    feed_server.route("/a", Route(status=301, redirect="/b"))
    feed_server.route("/b", Route(status=302, redirect="/a"))
    with pytest.raises(RedirectError, match="loop"):
        await get(client, feed_server.url("/a"), poll, clock)
    assert len(feed_server.requests) == 2


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("ftp://files.example/rss", "unsupported 'ftp' URL"),
        (None, "without a Location"),
    ],
)
async def test_bad_redirects(feed_server, client, poll, clock, location, problem):
    feed_server.route("/a", Route(status=301, redirect=location))
    with pytest.raises(RedirectError, match=problem):
        await get(client, feed_server.url("/a"), poll, clock)


async def test_a_location_that_is_not_a_url(feed_server, client, poll, clock):
    feed_server.route("/a", Route(status=301, redirect="http://ex\u00e4mple..com/"))
    with pytest.raises(NetworkError, match="malformed or incomplete") as caught:
        await get(client, feed_server.url("/a"), poll, clock)
    assert "location" in str(caught.value).lower()


# --- statuses ------------------------------------------------------------------


async def test_410_is_feed_gone(feed_server, client, poll, clock):
    feed_server.route("/rss", Route(status=410))
    with pytest.raises(FeedGone) as caught:
        await get(client, feed_server.url("/rss"), poll, clock)
    assert caught.value.status == 410
    assert caught.value.member_id == "yokosuka"
    assert caught.value.url == feed_server.url("/rss")


async def test_404_is_http_status_error(feed_server, client, poll, clock):
    with pytest.raises(HTTPStatusError) as caught:
        await get(client, feed_server.url("/nothing-here"), poll, clock)
    assert caught.value.status == 404
    assert type(caught.value) is HTTPStatusError
    assert "HTTP 404" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, "120", datetime(2026, 12, 1, 3, 2, tzinfo=UTC)),
        (429, "Tue, 01 Dec 2026 05:00:00 GMT", datetime(2026, 12, 1, 5, tzinfo=UTC)),
        (429, "soon, please", None),
        (429, None, None),
        (503, "3600", datetime(2026, 12, 1, 4, 0, tzinfo=UTC)),
        (503, None, None),
    ],
)
async def test_rate_limited_with_retry_after(
    feed_server, client, poll, clock, status, retry_after, expected
):
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    feed_server.route("/rss", Route(status=status, headers=headers))
    with pytest.raises(RateLimited) as caught:
        await get(client, feed_server.url("/rss"), poll, clock)
    assert caught.value.status == status
    assert caught.value.retry_after == expected


async def test_script_503_then_200(feed_server, client, poll, clock):
    feed_server.route(
        "/rss", Route(script=(Route(status=503), Route(body=FEED, etag='"1"')))
    )
    url = feed_server.url("/rss")
    with pytest.raises(RateLimited):
        await get(client, url, poll, clock)
    for _ in range(2):  # the last scripted response repeats
        result = await get(client, url, poll, clock)
        assert isinstance(result, Fetched)
        assert result.validators.etag == '"1"'


# --- timeouts, size, broken transfers ------------------------------------------


async def test_slow_headers_time_out(feed_server, fast_poll, clock):
    feed_server.route("/rss", Route(body=FEED, delay=1.5))
    began = time.perf_counter()
    async with build_client(fast_poll, SITE) as client:
        with pytest.raises(FetchTimeout, match=r"timed out after 0\.5 s"):
            await get(client, feed_server.url("/rss"), fast_poll, clock)
    assert time.perf_counter() - began < 2.0


async def test_slow_drip_past_the_deadline_times_out(feed_server, fast_poll, clock):
    # Each chunk arrives well inside the read timeout; only the deadline stops it.
    drip = Drip(chunk=len(FEED) // 20, pause=0.1)
    feed_server.route("/rss", Route(body=FEED, drip=drip))
    began = time.perf_counter()
    async with build_client(fast_poll, SITE) as client:
        with pytest.raises(FetchTimeout) as caught:
            await get(client, feed_server.url("/rss"), fast_poll, clock)
    assert 0.4 < time.perf_counter() - began < 1.5
    assert caught.value.error_class == "timeout"


async def test_deadline_spans_redirect_hops(feed_server, fast_poll, clock):
    feed_server.route("/a", Route(status=302, redirect="/b", delay=0.3))
    feed_server.route("/b", Route(body=FEED, delay=0.3))
    async with build_client(fast_poll, SITE) as client:
        with pytest.raises(FetchTimeout) as caught:
            await get(client, feed_server.url("/a"), fast_poll, clock)
    assert caught.value.url == feed_server.url("/b")


async def test_body_over_the_cap_is_refused_from_content_length(
    feed_server, client, poll, clock
):
    feed_server.route("/big", Route(body=b"x" * (CAP + 1)))
    with pytest.raises(FetchTooLarge, match=f"larger than {CAP} bytes"):
        await get(client, feed_server.url("/big"), poll, clock)


async def test_chunked_body_over_the_cap_is_refused(feed_server, client, poll, clock):
    feed_server.route("/big", Route(body=b"x" * (CAP + 1), chunked=True))
    with pytest.raises(FetchTooLarge):
        await get(client, feed_server.url("/big"), poll, clock)
    assert feed_server.requests_to("/big")[0].header("Content-Length") is None


async def test_body_at_the_cap_is_accepted(feed_server, client, poll, clock):
    feed_server.route("/big", Route(body=b"x" * CAP, chunked=True))
    result = await get(client, feed_server.url("/big"), poll, clock)
    assert isinstance(result, Fetched)
    assert len(result.body) == CAP


async def test_gzip_bomb_stops_at_the_cap(feed_server, client, poll, clock):
    bomb = Route(body=bytes(50 * 1024 * 1024), gzip=True)
    assert len(bomb.gzipped) < CAP  # so only the decoded size can trip the cap
    feed_server.route("/bomb", bomb)
    began = time.perf_counter()
    with pytest.raises(FetchTooLarge):
        await get(client, feed_server.url("/bomb"), poll, clock)
    assert time.perf_counter() - began < 2.0


async def test_gzip_response_is_decoded(feed_server, client, poll, clock):
    feed_server.route("/rss", Route(body=FEED * 50, gzip=True))
    result = await get(client, feed_server.url("/rss"), poll, clock)
    assert isinstance(result, Fetched)
    assert result.body == FEED * 50
    assert "gzip" in (feed_server.requests[0].header("Accept-Encoding") or "")
    raw = await client.get(feed_server.url("/rss"))
    assert raw.headers["Content-Encoding"] == "gzip"
    assert int(raw.headers["Content-Length"]) < len(FEED * 50)


async def test_truncated_body_is_a_network_error(feed_server, client, poll, clock):
    feed_server.route("/rss", Route(body=FEED, truncate=True))
    with pytest.raises(NetworkError, match="malformed or incomplete response") as e:
        await get(client, feed_server.url("/rss"), poll, clock)
    assert isinstance(e.value.__cause__, httpx.RemoteProtocolError)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_connection_refused_is_a_network_error(client, poll, clock, closed_port):
    url = f"http://127.0.0.1:{closed_port}/rss"
    with pytest.raises(NetworkError, match="could not connect") as caught:
        await get(client, url, poll, clock)
    assert caught.value.error_class == "network"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_tls_to_a_plain_http_server_is_a_tls_error(
    feed_server, client, poll, clock
):
    feed_server.route("/rss", Route(body=FEED))
    url = feed_server.url("/rss").replace("http://", "https://")
    with pytest.raises(TLSError) as caught:
        await get(client, url, poll, clock)
    assert caught.value.error_class == "tls"


# --- politeness ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "per_host", "observed"), [(10, 2, 2), (1, 6, 1), (10, 6, 6)]
)
async def test_host_limits_are_enforced(
    feed_server, client, poll, clock, total, per_host, observed
):
    feed_server.route("/slow", Route(body=FEED, delay=0.15))
    limits = HostLimits(total=total, per_host=per_host)
    url = feed_server.url("/slow")
    results = await asyncio.gather(
        *(get(client, url, poll, clock, limits=limits) for _ in range(6))
    )
    assert all(isinstance(r, Fetched) for r in results)
    assert feed_server.max_in_flight("127.0.0.1") == observed


async def test_connections_are_reused_after_304_redirect_and_error(
    feed_server, client, poll, clock
):
    feed_server.route("/rss", Route(body=FEED, etag='"1"'))
    feed_server.route("/old", Route(status=301, redirect="/rss", body=b"moved\n"))
    feed_server.route("/gone", Route(status=410, body=b"gone\n" * 100))
    fresh = Validators('"1"')
    assert isinstance(await get(client, feed_server.url("/rss"), poll, clock), Fetched)
    for _ in range(2):
        await get(client, feed_server.url("/rss"), poll, clock, fresh)
        await get(client, feed_server.url("/old"), poll, clock, fresh)
    with pytest.raises(FeedGone):
        await get(client, feed_server.url("/gone"), poll, clock)
    await get(client, feed_server.url("/rss"), poll, clock, fresh)
    assert len(feed_server.requests) == 9  # 200, 2 * (304, 301, 304), 410, 304
    assert len({r.peer for r in feed_server.requests}) == 1


async def test_user_agent_and_accept_are_sent(feed_server, client, poll, clock):
    feed_server.route("/rss", Route(body=FEED))
    await get(client, feed_server.url("/rss"), poll, clock)
    sent = feed_server.requests[0]
    assert sent.header("User-Agent") == f"Kairan/{__version__} (+ops@kairan.example)"
    assert (sent.header("Accept") or "").startswith("application/atom+xml")


def test_user_agent_falls_back_to_base_url_and_honours_config():
    site = SiteSettings(base_url="https://portal.example/")
    assert user_agent(PollSettings(), site) == (
        f"Kairan/{__version__} (+https://portal.example/)"
    )
    configured = PollSettings(user_agent="MyBot/1 (+https://me.example/)")
    assert user_agent(configured, site) == "MyBot/1 (+https://me.example/)"


async def test_elapsed_comes_from_the_clock(feed_server, client, poll):
    class TickingClock(FixedClock):
        def monotonic(self) -> float:
            self.advance(0.25)
            return super().monotonic()

    feed_server.route("/rss", Route(body=FEED))
    ticking = TickingClock(datetime(2026, 12, 1, tzinfo=UTC))
    result = await get(client, feed_server.url("/rss"), poll, ticking)
    assert result.elapsed == pytest.approx(0.25)


# --- the directory server process (the bench's) --------------------------------


@pytest.fixture
def directory_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    (tmp_path / "feed-0001.xml").write_bytes(FEED)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "feed.json").write_bytes(b'{"version": "x"}')
    (tmp_path / "feed two.xml").write_bytes(FEED)
    command = [
        sys.executable,
        "-m",
        "aggregator.sandbox.feed_server",
        "--dir",
        str(tmp_path),
        "--latency",
        "20",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE)  # noqa: S603 (our own module)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().decode().strip()
        yield process, base_url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


async def test_directory_server_serves_files_conditionally(
    directory_server, client, poll, clock
):
    _, base_url = directory_server
    assert base_url.startswith("http://127.0.0.1:")
    first = await get(client, base_url + "/feed-0001.xml", poll, clock)
    assert isinstance(first, Fetched)
    assert first.body == FEED
    assert first.validators.etag is not None
    assert first.validators.last_modified is not None
    assert first.content_type == "application/xml"
    again = await get(
        client, base_url + "/feed-0001.xml", poll, clock, first.validators
    )
    assert isinstance(again, NotModified)
    nested = await get(client, base_url + "/sub/feed.json", poll, clock)
    assert isinstance(nested, Fetched)
    assert nested.content_type == "application/feed+json"
    spaced = await get(client, base_url + "/feed two.xml", poll, clock)
    assert isinstance(spaced, Fetched)


def test_directory_server_exits_on_sigterm(directory_server):
    process, _ = directory_server
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0


async def test_static_route_etag_follows_the_body(feed_server, client, poll, clock):
    feed_server.route("/rss", static_route(FEED))
    url = feed_server.url("/rss")
    first = await get(client, url, poll, clock)
    assert isinstance(first, Fetched)
    assert first.validators.last_modified is None
    same = await get(client, url, poll, clock, first.validators)
    assert isinstance(same, NotModified)
    feed_server.route("/rss", static_route(FEED + b"\n"))
    changed = await get(client, url, poll, clock, first.validators)
    assert isinstance(changed, Fetched)
    assert changed.validators.etag != first.validators.etag


def test_feed_server_lifecycle():
    server = FeedServer()
    try:
        server.start()
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
    finally:
        server.stop()
    server.stop()  # stopping twice is harmless
    with pytest.raises(RuntimeError, match="not running"):
        server.url("/rss")
    with server:  # and it starts again, as a context manager
        server.route("/rss", Route(body=FEED))
        response = httpx.get(server.url("/rss"), trust_env=False)
        assert response.content == FEED
