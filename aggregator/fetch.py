"""Async httpx GET of one feed: conditional headers, redirects, byte cap, deadline.

The only module that talks to feed servers and the only one that catches httpx's
exceptions: each becomes a FetchError subclass raised ``from`` the original.

```
httpx / asyncio exception                        FetchError
TimeoutError (the deadline), TimeoutException  → FetchTimeout
ConnectError caused by socket.gaierror         → DNSError
ConnectError caused by ssl.SSLError            → TLSError
any other HTTPError, InvalidURL                → NetworkError (refused, truncated…)
```

Responses that are not errors of the transport map as: 304 → NotModified,
2xx → Fetched, 410 → FeedGone, 429/503 → RateLimited, other ≥ 300 → HTTPStatusError;
301/302/303/307/308 are followed here, by hand, so that the chain can be judged.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import httpx

from aggregator import __version__
from aggregator.clock import Clock
from aggregator.errors import (
    DNSError,
    FeedGone,
    FetchError,
    FetchTimeout,
    FetchTooLarge,
    HTTPStatusError,
    NetworkError,
    RateLimited,
    RedirectError,
    TLSError,
)
from aggregator.hostlimits import HostLimits
from aggregator.models import (
    CachingHints,
    Fetched,
    FetchRequest,
    NotModified,
    Validators,
)
from aggregator.settings import PollSettings, SiteSettings

ACCEPT = (
    "application/atom+xml, application/rss+xml, application/feed+json, "
    "application/xml;q=0.9, */*;q=0.8"
)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})  # RFC 9110 §15.4: only these move the resource
_RATE_LIMITED = frozenset({429, 503})
# Longer than any max_backoff; keeps an absurd delta-seconds inside datetime's range.
_MAX_RETRY_AFTER = 365 * 24 * 3600
_MAX_DIGITS = 18
_DRAIN_LIMIT = 64 * 1024  # bytes of a 304/3xx/error body worth reading for reuse
_CAUSE_DEPTH = 8  # how far down __cause__/__context__ to look for the root error


def user_agent(poll: PollSettings, site: SiteSettings) -> str:
    """The configured User-Agent, else Kairan's with the operator's contact."""
    if poll.user_agent:
        return poll.user_agent
    return f"Kairan/{__version__} (+{site.contact or site.base_url})"


def build_client(
    poll: PollSettings, site: SiteSettings, connections: int | None = None
) -> httpx.AsyncClient:
    """A client for feeds; `fetch` follows redirects itself."""
    size = connections or poll.concurrency
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,  # a feed poller must not pick up the environment's proxies
        timeout=httpx.Timeout(poll.timeout, connect=poll.connect_timeout),
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        headers={
            "User-Agent": user_agent(poll, site),
            "Accept": ACCEPT,
            "Accept-Encoding": _accept_encoding(),
        },
    )


# httpcore's connection pool spends CPU in proportion to its size on every request:
# one pool of 50 connections costs ~4x the CPU of ten pools of 5 for the same 1,000
# requests (bench/README.md, "Where the time goes"). So the process keeps a few
# small pools, and each member always uses the same one (its keep-alive connection
# survives from one cycle to the next).
POOL_CONNECTIONS = 5


class Clients:
    """The process's HTTP clients for feeds: small pools, one chosen per member."""

    def __init__(self, poll: PollSettings, site: SiteSettings) -> None:
        pools = max(1, math.ceil(poll.concurrency / POOL_CONNECTIONS))
        size = math.ceil(poll.concurrency / pools)
        self._clients = [build_client(poll, site, size) for _ in range(pools)]

    def for_key(self, key: str) -> httpx.AsyncClient:
        return self._clients[zlib.crc32(key.encode()) % len(self._clients)]

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _accept_encoding() -> str:
    # httpx decodes br only when a brotli binding is importable; never offer what
    # we could not decode.
    brotli = any(importlib.util.find_spec(m) for m in ("brotli", "brotlicffi"))
    return "gzip, deflate, br" if brotli else "gzip, deflate"


@dataclass(frozen=True, slots=True)
class _Reply:
    """One hop's answer: the status, its headers and (for 2xx only) the body.

    ``location`` is where a redirect points, resolved by httpx, which builds the
    next request even when it does not follow it (a relative Location joined to
    the request URL, RFC 9110 §10.2.2; one that is not a URL refused).
    """

    status: int
    headers: httpx.Headers
    body: bytes = b""
    location: httpx.URL | None = None


async def fetch(
    client: httpx.AsyncClient,
    limits: HostLimits,
    request: FetchRequest,
    poll: PollSettings,
    clock: Clock,
) -> Fetched | NotModified:
    """GET ``request.url`` conditionally, following at most ``poll.max_redirects`` hops.

    The ``poll.timeout`` deadline covers every hop's connect, headers and body, but
    not the wait for a HostLimits slot: a queued request has not started yet. Errors
    name the URL of the hop that failed.
    """
    started = clock.monotonic()
    budget = _Budget(poll.timeout)
    url = request.url
    visited = {url}
    permanent = True
    for hop in range(poll.max_redirects + 1):
        async with limits.slot(url):
            with _translated(request.member_id, url, poll):
                async with budget.spend():
                    reply = await _exchange(client, request, url, poll)
        if reply.status not in _REDIRECTS:
            moved_to = url if permanent and hop > 0 else None
            elapsed = clock.monotonic() - started
            return _conclude(reply, request, url, moved_to, elapsed, clock)
        permanent = permanent and reply.status in _PERMANENT
        url = _redirect_target(request, url, reply, visited)
    raise RedirectError(
        request.member_id, url, f"more than {poll.max_redirects} redirects"
    )


class _Budget:
    """What is left of the whole-fetch deadline, spent only while a hop runs.

    Measured on the event loop's clock because that is the clock asyncio.timeout
    uses; the injected Clock only reports ``elapsed``.
    """

    def __init__(self, seconds: float) -> None:
        self._left = seconds

    @asynccontextmanager
    async def spend(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            async with asyncio.timeout(self._left):
                yield
        finally:
            self._left -= loop.time() - began


async def _exchange(
    client: httpx.AsyncClient, request: FetchRequest, url: str, poll: PollSettings
) -> _Reply:
    headers = _conditional_headers(request.validators)
    async with client.stream("GET", url, headers=headers) as response:
        if not response.is_success:
            # 304s, redirects and errors are judged on their headers alone.
            await _drain(response)
            location = response.next_request.url if response.next_request else None
            return _Reply(response.status_code, response.headers, location=location)
        body = await _read_capped(response, request, url, poll.max_bytes)
        return _Reply(response.status_code, response.headers, body)


async def _drain(response: httpx.Response) -> None:
    """Read a small unwanted body, so that the connection goes back to the pool.

    httpcore closes a connection whose response was not read to the end; with
    every warm poll a 304, that would be a new TCP (and TLS) handshake per feed.
    A body past _DRAIN_LIMIT costs its connection instead, and a broken one is
    ignored: the status has already said what happened.
    """
    if response.is_stream_consumed:  # a transport that handed over the whole body
        return
    read = 0
    with suppress(httpx.TransportError):
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > _DRAIN_LIMIT:
                return


def _conditional_headers(validators: Validators) -> dict[bytes, bytes]:
    """If-None-Match / If-Modified-Since, byte for byte as the server sent them.

    Validators are read as latin-1 (see `_raw_header`), so encoding them back as
    latin-1 restores the exact bytes, obs-text included (RFC 9110 §8.8.3). A value
    that cannot be encoded did not come from a server; it is left out, which only
    makes the request unconditional.
    """
    pairs = (
        (b"If-None-Match", validators.etag),
        (b"If-Modified-Since", validators.last_modified),
    )
    headers: dict[bytes, bytes] = {}
    for name, value in pairs:
        if value:
            try:
                headers[name] = value.encode("latin-1")
            except UnicodeEncodeError:
                continue
    return headers


async def _read_capped(
    response: httpx.Response, request: FetchRequest, url: str, cap: int
) -> bytes:
    """The decoded body, refused as soon as it passes ``cap`` bytes.

    Counting decoded bytes chunk by chunk stops a gzip bomb near the cap instead of
    after inflating it (miniflux's MaxBytesReader does the same).
    """
    problem = f"body larger than {cap} bytes"
    declared = _digits(response.headers.get("content-length"))
    if declared is not None and declared > cap:
        raise FetchTooLarge(request.member_id, url, problem)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise FetchTooLarge(request.member_id, url, problem)
        chunks.append(chunk)
    return b"".join(chunks)


def _redirect_target(
    request: FetchRequest, url: str, reply: _Reply, visited: set[str]
) -> str:
    """The absolute URL a redirect points to; a loop or a non-HTTP target is refused."""
    target = reply.location
    if target is None:
        raise RedirectError(
            request.member_id, url, f"HTTP {reply.status} without a Location"
        )
    if target.scheme not in ("http", "https"):
        problem = f"redirect to an unsupported {target.scheme!r} URL"
        raise RedirectError(request.member_id, url, problem)
    text = str(target)
    if text in visited:
        raise RedirectError(request.member_id, url, f"redirect loop back to {text}")
    visited.add(text)
    return text


def _conclude(
    reply: _Reply,
    request: FetchRequest,
    url: str,
    moved_to: str | None,
    elapsed: float,
    clock: Clock,
) -> Fetched | NotModified:
    caching = _caching_hints(reply.headers)
    received = Validators(
        etag=_raw_header(reply.headers, b"etag"),
        last_modified=_raw_header(reply.headers, b"last-modified"),
    )
    if reply.status == 304:
        # RFC 9111 §4.3.4: a 304's headers update the stored ones, field by field.
        stored = request.validators
        merged = Validators(
            etag=received.etag or stored.etag,
            last_modified=received.last_modified or stored.last_modified,
        )
        return NotModified(url, merged, caching, moved_to, elapsed)
    if 200 <= reply.status < 300:
        return Fetched(
            url=url,
            status=reply.status,
            body=reply.body,
            content_type=reply.headers.get("content-type"),
            validators=received,
            caching=caching,
            moved_to=moved_to,
            elapsed=elapsed,
        )
    raise _status_error(request.member_id, url, reply, clock.now())


def _status_error(
    member_id: str, url: str, reply: _Reply, now: datetime
) -> HTTPStatusError:
    if reply.status == 410:
        return FeedGone(member_id, url, 410, "HTTP 410 gone")
    if reply.status in _RATE_LIMITED:
        retry_after = _retry_after(reply.headers.get("retry-after"), now)
        return RateLimited(member_id, url, reply.status, retry_after)
    return HTTPStatusError(member_id, url, reply.status)


def _raw_header(headers: httpx.Headers, name: bytes) -> str | None:
    """The first ``name`` header decoded as latin-1, which maps bytes 1:1 to str."""
    for key, value in headers.raw:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _caching_hints(headers: httpx.Headers) -> CachingHints:
    directives = _cache_control(headers.get("cache-control", ""))
    if "no-store" in directives or "no-cache" in directives:
        return CachingHints()
    max_age = _digits(directives.get("max-age"))
    if max_age is not None:
        # RFC 9111 §5.3: with max-age present, Expires is ignored.
        return CachingHints(max_age=max_age)
    return CachingHints(expires=_http_date(headers.get("expires")))


def _cache_control(value: str) -> dict[str, str]:
    """Cache-Control directives, names lower-cased, values unquoted."""
    directives: dict[str, str] = {}
    for part in value.split(","):
        name, _, argument = part.partition("=")
        if name.strip():
            directives[name.strip().lower()] = argument.strip().strip('"')
    return directives


def _retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After (delta-seconds or HTTP-date, RFC 9110 §10.2.3) as a UTC time."""
    seconds = _digits(value)
    if seconds is not None:
        return now + timedelta(seconds=min(seconds, _MAX_RETRY_AFTER))
    return _http_date(value)


def _digits(value: str | None) -> int | None:
    """A header's non-negative integer (ASCII digits only), else None.

    Anything past 18 digits is read as 10**18: no caller tells such values apart,
    and it spares int() a hostile, arbitrarily long digit string.
    """
    if value is None:
        return None
    value = value.strip()
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= _MAX_DIGITS else 10**_MAX_DIGITS


def _http_date(value: str | None) -> datetime | None:
    """An HTTP-date in UTC; anything unparsable (Expires: 0, garbage) is None."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
        # "-0000" parses naive; HTTP-dates are always GMT (RFC 9110 §5.6.7).
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


@contextmanager
def _translated(member_id: str, url: str, poll: PollSettings) -> Iterator[None]:
    """Turn httpx's and the deadline's exceptions into FetchErrors naming ``url``."""
    try:
        yield
    except httpx.ConnectTimeout as e:
        problem = f"connect timed out after {poll.connect_timeout:g} s"
        raise FetchTimeout(member_id, url, problem) from e
    except (TimeoutError, httpx.TimeoutException) as e:
        raise FetchTimeout(member_id, url, f"timed out after {poll.timeout:g} s") from e
    except httpx.HTTPError as e:
        raise _transport_error(member_id, url, e) from e
    except httpx.InvalidURL as e:
        raise NetworkError(member_id, url, "invalid url") from e


def _transport_error(member_id: str, url: str, error: httpx.HTTPError) -> FetchError:
    if _caused_by(error, socket.gaierror):
        host = urlsplit(url).hostname or url
        return DNSError(member_id, url, f"could not resolve {host}")
    if _caused_by(error, ssl.SSLError):
        return TLSError(member_id, url, "tls handshake failed")
    if isinstance(error, httpx.RemoteProtocolError):
        # a truncated body, a dropped connection, or a Location that is not a URL
        return NetworkError(member_id, url, "malformed or incomplete response")
    if isinstance(error, httpx.DecodingError):
        return NetworkError(member_id, url, "could not decode the response body")
    if isinstance(error, httpx.ConnectError):
        return NetworkError(member_id, url, "could not connect")
    return NetworkError(member_id, url, "request failed")


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in the chain httpx and httpcore build with ``raise from``."""
    current: BaseException | None = error
    for _ in range(_CAUSE_DEPTH):
        if current is None:
            return False
        if isinstance(current, kind):
            return True
        current = current.__cause__ or current.__context__
    return False
