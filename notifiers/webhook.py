"""Standard Webhooks signing headers and the SSRF-safe HTTP POST of one delivery.

Headers follow the Standard Webhooks specification ("Signature scheme"):
``webhook-id`` (the delivery id, the same on every retry), ``webhook-timestamp``
(integer Unix seconds of this attempt) and ``webhook-signature``, ``v1,`` + base64
HMAC-SHA256 of ``id.timestamp.body`` per live secret, space-separated, so that a
receiver holding either secret verifies during a rotation overlap. The HMAC is the
``standardwebhooks`` library's, the one receivers use to verify.

`WebhookTransport.post` resolves the host once through netguard.resolve_checked and
connects to the checked address, never to the name, so DNS rebinding cannot swap in
a private address between the check and the connect (issue 5 §4). How its outcomes
map (issue 5 §3):

```
2xx                                   → WebhookResponse (body: first 64 KiB)
410                                   → EndpointGone (permanent)
408, 429, 5xx                         → TransientDeliveryError(retry_after)
3xx (never followed)                  → TransientDeliveryError
other status                          → PermanentDeliveryError
deadline, connect/TLS/DNS/read errors → TransientDeliveryError
unsafe URL or address                 → UnsafeDestination (permanent)
```
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self

import httpx
from standardwebhooks import Webhook

from aggregator.fields import strip_controls
from aggregator.settings import WebhookSettings
from notifiers.errors import (
    EndpointGone,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from notifiers.netguard import Resolver, UnsafeDestination, check_url, resolve_checked

USER_AGENT_PRODUCT = "Kairan"
MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_CHARS = 200  # of a response body or Location in an error message
_TRANSIENT_STATUSES = frozenset({408, 429})
_DELTA_SECONDS = re.compile(r"-?[0-9]{1,18}")  # longer is absurd: read as unparsable


def signature_header(
    message_id: str, sent_at: datetime, body: bytes, secrets: Sequence[str]
) -> str:
    """``v1,<base64>`` per secret (``whsec_`` + base64), space-separated, in order."""
    if not secrets:
        raise ValueError("a webhook needs at least one signing secret")
    # Signed at the very second the webhook-timestamp header carries.
    signed_at = datetime.fromtimestamp(_unix_seconds(sent_at), UTC)
    return " ".join(
        Webhook(secret).sign(message_id, signed_at, body) for secret in secrets
    )


def request_headers(
    message_id: str,
    sent_at: datetime,
    body: bytes,
    secrets: Sequence[str],
    user_agent: str,
) -> dict[str, str]:
    """The headers of one attempt; ``sent_at`` is its wall-clock time (aware)."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(_unix_seconds(sent_at)),
        "webhook-signature": signature_header(message_id, sent_at, body, secrets),
        "user-agent": user_agent,
    }


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    status: int
    body: bytes  # at most MAX_RESPONSE_BYTES; the rest was never read
    seconds: float  # resolve + connect + send + read


@dataclass(frozen=True, slots=True)
class _Target:
    url: httpx.URL
    host: str  # ASCII (IDNA) name or IP, no brackets: resolved, and the TLS SNI
    port: int
    authority: str  # the Host header: host[:port] as the URL has it


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    location: str | None
    retry_after: str | None


class WebhookTransport:
    """POSTs signed webhook bodies; an async context manager owning one httpx client."""

    def __init__(
        self,
        settings: WebhookSettings,
        user_agent: str,
        *,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._settings = settings
        self._user_agent = user_agent
        self._resolver = resolver
        # Parsed and checked once per URL: a pass POSTs to few URLs, many times.
        self._targets: dict[str, _Target] = {}
        self._client = httpx.AsyncClient(
            trust_env=False,  # issue 5 §4: proxies from the environment are ignored
            follow_redirects=False,  # issue 5 §3: a 3xx is a failure, not followed
            verify=verify,
            timeout=httpx.Timeout(settings.timeout),
            # Raw bytes are read and capped: a compressed body could inflate past it.
            headers={"accept-encoding": "identity"},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def post(
        self,
        url: str,
        message_id: str,
        body: bytes,
        secrets: Sequence[str],
        sent_at: datetime,
    ) -> WebhookResponse:
        """POST ``body`` to ``url``, signed for this attempt at ``sent_at``; raise a
        DeliveryError (see the module docstring) unless the receiver answered 2xx."""
        headers = request_headers(message_id, sent_at, body, secrets, self._user_agent)
        allow_private = self._settings.allow_private_addresses
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _target(url, allow_private=allow_private)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # httpx's timeouts are per phase (a body dripping a byte at a time never
        # trips them), so one deadline covers the whole attempt.
        timeout = self._settings.timeout
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve_checked(
                    target.host,
                    target.port,
                    allow_private=allow_private,
                    resolver=self._resolver,
                )
                reply = await self._first_answer(target, addresses, headers, body)
        except TimeoutError as exc:
            raise TransientDeliveryError(f"timed out after {timeout:g} s") from exc
        return _judged(reply, sent_at, loop.time() - started)

    async def _first_answer(
        self,
        target: _Target,
        addresses: Sequence[str],
        headers: dict[str, str],
        body: bytes,
    ) -> _Reply:
        """The reply from the first address that takes the connection (there is at
        least one: resolve_checked never returns none)."""
        try:
            for address in addresses[:-1]:
                with suppress(httpx.ConnectError):  # refused, unreachable, TLS: next
                    return await self._send(target, address, headers, body)
            return await self._send(target, addresses[-1], headers, body)
        except httpx.ConnectError as exc:
            problem = f"cannot connect to {target.host}: {_transport_problem(exc)}"
            raise TransientDeliveryError(problem) from exc
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(_transport_problem(exc)) from exc

    async def _send(
        self, target: _Target, address: str, headers: dict[str, str], body: bytes
    ) -> _Reply:
        https = target.url.scheme == "https"
        extensions = {"sni_hostname": target.host} if https else {}
        headers = {**headers, "host": target.authority}
        if https:
            # httpcore pools connections by scheme, IP and port alone, so a kept-alive
            # TLS connection could carry another name's request without that name's
            # certificate ever being checked: TLS connections are never reused.
            headers["connection"] = "close"
        async with self._client.stream(
            "POST",
            target.url.copy_with(host=address),  # copy_with brackets an IPv6 address
            content=body,
            headers=headers,
            extensions=extensions,
        ) as response:
            capped = await _read_capped(response)
            # Leaving the block closes the connection unread past the cap.
            return _Reply(
                response.status_code,
                capped,
                response.headers.get("location"),
                response.headers.get("retry-after"),
            )


def _target(url: str, *, allow_private: bool) -> _Target:
    """The URL's parts, after check_url (scheme, credentials, IP literals)."""
    check_url(url, allow_private=allow_private)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise UnsafeDestination(url, f"not a valid URL ({exc})") from exc
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return _Target(
        parsed, parsed.raw_host.decode("ascii"), port, parsed.netloc.decode("ascii")
    )


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]


def _judged(reply: _Reply, sent_at: datetime, seconds: float) -> WebhookResponse:
    status = reply.status
    if 200 <= status < 300:
        return WebhookResponse(status, reply.body, seconds)
    problem = _status_problem(reply)
    if status == 410:
        raise EndpointGone(problem)
    if status in _TRANSIENT_STATUSES or 500 <= status < 600:
        raise TransientDeliveryError(problem, _retry_after(reply.retry_after, sent_at))
    if 300 <= status < 400:
        # Counted as a failure and retried (issue 5 §3), so a receiver that moved
        # gets the schedule's time to come back before the delivery fails.
        where = _one_line(reply.location or "") or "nowhere"
        raise TransientDeliveryError(f"HTTP {status}: redirect to {where} not followed")
    raise PermanentDeliveryError(problem)


def _status_problem(reply: _Reply) -> str:
    excerpt = _one_line(reply.body.decode("utf-8", errors="replace"))
    return f"HTTP {reply.status}: {excerpt}" if excerpt else f"HTTP {reply.status}"


def _transport_problem(exc: httpx.HTTPError) -> str:
    detail = _one_line(str(exc))
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _one_line(text: str) -> str:
    """``text`` without controls, whitespace runs as one space, cut to EXCERPT_CHARS."""
    line = " ".join(strip_controls(text).split())
    if len(line) <= EXCERPT_CHARS:
        return line
    return line[: EXCERPT_CHARS - 1] + "…"


def _retry_after(value: str | None, sent_at: datetime) -> float | None:
    """Retry-After in seconds from ``sent_at``: delta-seconds or an HTTP-date
    (RFC 9110 §10.2.3); None when absent or unparsable, 0 when in the past."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return max(0.0, float(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000"; HTTP-dates are always GMT (RFC 9110 §5.6.7)
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - sent_at).total_seconds())


def _unix_seconds(sent_at: datetime) -> int:
    if sent_at.tzinfo is None:
        raise ValueError("sent_at must be timezone-aware")
    return math.floor(sent_at.timestamp())
