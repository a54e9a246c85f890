"""fetch.fetch turns every httpx failure into the right FetchError, raised from it."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from aggregator.errors import (
    DNSError,
    FetchError,
    FetchTimeout,
    NetworkError,
    RateLimited,
    TLSError,
)
from aggregator.fetch import fetch
from aggregator.hostlimits import HostLimits
from aggregator.models import Fetched, FetchRequest, NotModified
from aggregator.settings import PollSettings
from tests.support.clock import FixedClock

URL = "https://feeds.example/rss"
NO_SUCH_NAME = socket.gaierror(-2, "Name or service not known")
POLL = PollSettings(connect_timeout=2.0, timeout=30.0)

Handler = Callable[[httpx.Request], httpx.Response]


async def fetch_with(
    handler: Handler, clock: FixedClock, url: str = URL
) -> Fetched | NotModified:
    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport) as client:
        request = FetchRequest("yokosuka", url)
        return await fetch(client, HostLimits(1, 1), request, POLL, clock)


def raising(make: Callable[[httpx.Request], Exception]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise make(request)

    return handler


def caused(outer: type[httpx.RequestError], inner: BaseException) -> Handler:
    """A handler raising ``outer`` from ``inner``, as httpcore chains them."""

    def handler(request: httpx.Request) -> httpx.Response:
        try:
            raise inner
        except type(inner) as e:
            raise outer(str(e), request=request) from e

    return handler


@pytest.mark.parametrize(
    ("handler", "kind", "error_class", "problem"),
    [
        (
            caused(
                httpx.ConnectError, socket.gaierror(-2, "Name or service not known")
            ),
            DNSError,
            "dns",
            "could not resolve feeds.example",
        ),
        (
            caused(httpx.ConnectError, ssl.SSLCertVerificationError("bad cert")),
            TLSError,
            "tls",
            "tls handshake failed",
        ),
        (
            raising(lambda r: httpx.ConnectTimeout("", request=r)),
            FetchTimeout,
            "timeout",
            "connect timed out after 2 s",
        ),
        (
            raising(lambda r: httpx.ReadTimeout("", request=r)),
            FetchTimeout,
            "timeout",
            "timed out after 30 s",
        ),
        (
            raising(lambda r: httpx.PoolTimeout("", request=r)),
            FetchTimeout,
            "timeout",
            "timed out after 30 s",
        ),
        (
            caused(httpx.ConnectError, ConnectionRefusedError(111, "refused")),
            NetworkError,
            "network",
            "could not connect",
        ),
        (
            raising(lambda r: httpx.RemoteProtocolError("peer closed", request=r)),
            NetworkError,
            "network",
            "malformed or incomplete response",
        ),
        (
            raising(lambda r: httpx.ReadError("reset by peer", request=r)),
            NetworkError,
            "network",
            "request failed",
        ),
        (
            lambda r: httpx.Response(
                200, headers={"Content-Encoding": "gzip"}, content=b"not gzip"
            ),
            NetworkError,
            "network",
            "could not decode the response body",
        ),
    ],
)
async def test_transport_failures_map_to_fetch_errors(
    clock, handler, kind, error_class, problem
):
    with pytest.raises(kind) as caught:
        await fetch_with(handler, clock)
    error = caught.value
    assert error.error_class == error_class
    assert error.problem == problem
    assert error.member_id == "yokosuka"
    assert error.url == URL
    assert isinstance(error.__cause__, httpx.HTTPError)  # raised `from` the original
    assert str(error).startswith(f"member yokosuka: {URL}: {problem}")


async def test_the_underlying_reason_is_kept_in_the_message(clock):
    handler = caused(
        httpx.ConnectError, socket.gaierror(-2, "Name or service not known")
    )
    with pytest.raises(DNSError) as caught:
        await fetch_with(handler, clock)
    assert str(caught.value).endswith("Name or service not known")


async def test_an_invalid_url_is_a_network_error(clock):
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    with pytest.raises(NetworkError, match="invalid url") as caught:
        await fetch_with(never, clock, url="http://ex\u00e4mple..com/rss")
    assert isinstance(caught.value.__cause__, httpx.InvalidURL)


async def test_only_fetch_errors_escape(clock):
    handler = raising(lambda r: httpx.WriteError("broken pipe", request=r))
    with pytest.raises(FetchError):
        await fetch_with(handler, clock)


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        ("0", timedelta(0)),
        (" 30 ", timedelta(seconds=30)),
        ("99999999999999999999999", timedelta(days=365)),  # kept inside datetime
        ("9" * 5000, timedelta(days=365)),  # past int()'s digit limit
        ("-5", None),
        ("1.5", None),
        ("\u00b2", None),  # a Unicode digit that int() refuses
        ("", None),
        ("Tue, 01 Dec 2026 05:00:00 -0000", timedelta(hours=2)),  # naive means GMT
        ("Tue, 32 Dec 2026 05:00:00 GMT", None),  # a date that does not exist
    ],
)
async def test_retry_after_values(clock, value, wait):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value.encode("latin-1")})

    with pytest.raises(RateLimited) as caught:
        await fetch_with(handler, clock)
    expected = None if wait is None else clock.now() + wait
    assert caught.value.retry_after == expected
