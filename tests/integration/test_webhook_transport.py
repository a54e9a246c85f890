"""WebhookTransport.post against a real HTTP(S) receiver on 127.0.0.1.

The receiver is a few lines of HTTP/1.1 on asyncio.start_server, in the test's own
event loop: it verifies every request with the standardwebhooks library (401 when
that fails) and answers as each path is scripted.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus

import pytest
import trustme
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from aggregator.clock import SystemClock
from aggregator.settings import WebhookSettings
from notifiers.errors import (
    EndpointGone,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from notifiers.netguard import UnsafeDestination
from notifiers.webhook import MAX_RESPONSE_BYTES, WebhookResponse, WebhookTransport

SECRET = "whsec_" + "cmVjZWl2ZXItc2VjcmV0LXJlY2VpdmVyLXNlY3JldA=="
BODY = '{"type":"ping","data":{"message":"回覧板"}}'.encode()
UA = "Kairan/test"
SETTINGS = WebhookSettings(timeout=5.0, allow_private_addresses=True)


@dataclass(frozen=True)
class Route:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    filler: int = 0  # send this many bytes instead of `body`
    drip: float = 0.0  # seconds between the body's bytes
    stall: bool = False  # read the request, never answer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.received: list[Received] = []
        self.connections = 0
        self.answered: list[str] = []  # paths whose whole answer was written
        self.port = 0
        self._tls = tls
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self._tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await self.idle()
        await self._server.wait_closed()

    async def idle(self) -> None:
        """Wait for the open connections to end."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client hung up: expected after a capped read or a deadline
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Requests on one connection, kept alive unless the client says close."""
        keep_alive = True
        while keep_alive:
            request = await read_request(reader)
            self.received.append(request)
            try:
                Webhook(SECRET).verify(request.body, request.headers, json_parse=False)
            except WebhookVerificationError:
                route = Route(401, body=b"bad signature")
            else:
                route = self.routes.get(request.path, Route())
            keep_alive = request.headers.get("connection") != "close"
            await answer(route, writer, keep_alive)
            self.answered.append(request.path)


async def read_request(reader: asyncio.StreamReader) -> Received:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    request_line, *lines = head.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(request_line.split(" ")[1], headers, body)


async def answer(route: Route, writer: asyncio.StreamWriter, keep_alive: bool) -> None:
    if route.stall:
        await asyncio.Event().wait()  # until stop() cancels it
    size = route.filler or len(route.body)
    lines = [f"HTTP/1.1 {route.status} {HTTPStatus(route.status).phrase}"]
    lines += [f"{name}: {value}" for name, value in route.headers]
    connection = "keep-alive" if keep_alive else "close"
    lines += [f"content-length: {size}", f"connection: {connection}", "", ""]
    writer.write("\r\n".join(lines).encode("latin-1"))
    if route.filler:
        chunk = b"x" * 65536
        for _ in range(route.filler // len(chunk)):
            writer.write(chunk)
            await writer.drain()
    elif route.drip:
        for byte in route.body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(route.drip)
    else:
        writer.write(route.body)
    await writer.drain()


class ScriptedResolver:
    """Answers each lookup with the next list of addresses (the last one repeats)."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def transport() -> AsyncIterator[WebhookTransport]:
    async with WebhookTransport(SETTINGS, UA) as client:
        yield client


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def dead_port() -> int:
    """A port nothing listens on: bound then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def now() -> datetime:
    # The receiver's library checks webhook-timestamp against the real clock.
    return SystemClock().now()


async def post(
    transport: WebhookTransport, url: str, sent_at: datetime | None = None
) -> WebhookResponse:
    return await transport.post(url, "dlv_1", BODY, [SECRET], sent_at or now())


async def test_2xx_is_delivered_and_verified_by_the_receiver(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    receiver.routes["/hook"] = Route(202, body=b"queued")
    response = await post(transport, receiver.url())
    assert response.status == 202
    assert response.body == b"queued"
    assert 0 < response.seconds < 5
    [request] = receiver.received
    assert request.body == BODY
    assert request.headers["webhook-id"] == "dlv_1"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == UA
    assert Webhook(SECRET).verify(request.body, request.headers) == {
        "type": "ping",
        "data": {"message": "回覧板"},
    }


async def test_a_retry_sends_the_same_id_and_bytes_freshly_signed(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    first_at = now()
    await post(transport, receiver.url(), first_at)
    await post(transport, receiver.url(), first_at + timedelta(seconds=3))
    first, retry = receiver.received
    assert retry.body == first.body == BODY
    assert retry.headers["webhook-id"] == first.headers["webhook-id"]
    assert retry.headers["webhook-signature"] != first.headers["webhook-signature"]
    assert receiver.connections == 1  # plain http keeps its connection alive


async def test_a_wrong_signature_is_refused_by_the_receiver(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    other = "whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC1vdGhlcg=="
    with pytest.raises(PermanentDeliveryError, match="HTTP 401: bad signature"):
        await transport.post(receiver.url(), "dlv_1", BODY, [other], now())


async def test_500_is_transient_with_the_body_excerpt(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    receiver.routes["/hook"] = Route(500, body=b"database\r\n\x00down " + b"!" * 500)
    with pytest.raises(TransientDeliveryError) as caught:
        await post(transport, receiver.url())
    message = str(caught.value)
    assert message.startswith("HTTP 500: database down !!!")
    assert len(message) <= 220
    assert "\n" not in message
    assert "\x00" not in message
    assert SECRET not in message
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [
        (429, "120", 120.0),
        (503, "0", 0.0),
        (429, "in a while", None),
        (408, "-5", 0.0),
        (429, "http-date +90 s", 90.0),
        (503, "http-date -90 s", 0.0),
    ],
)
async def test_retry_after_is_honoured(
    receiver: Receiver,
    transport: WebhookTransport,
    status: int,
    value: str,
    expected: float | None,
) -> None:
    sent_at = now().replace(microsecond=0)
    if value.startswith("http-date"):
        offset = int(value.split()[1])
        value = format_datetime(sent_at + timedelta(seconds=offset), usegmt=True)
    receiver.routes["/hook"] = Route(status, headers=(("Retry-After", value),))
    with pytest.raises(TransientDeliveryError, match=f"HTTP {status}") as caught:
        await post(transport, receiver.url(), sent_at)
    assert caught.value.retry_after == expected


async def test_410_means_the_endpoint_is_gone(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    receiver.routes["/hook"] = Route(410, body=b"unsubscribed")
    with pytest.raises(EndpointGone, match="HTTP 410: unsubscribed") as caught:
        await post(transport, receiver.url())
    assert isinstance(caught.value, PermanentDeliveryError)


async def test_other_4xx_is_permanent(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    receiver.routes["/hook"] = Route(404, body=b"")
    with pytest.raises(PermanentDeliveryError, match=r"^HTTP 404$") as caught:
        await post(transport, receiver.url())
    assert not isinstance(caught.value, EndpointGone)


async def test_a_redirect_is_not_followed_and_is_transient(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    elsewhere = receiver.url("/elsewhere")
    receiver.routes["/hook"] = Route(302, headers=(("Location", elsewhere),))
    with pytest.raises(TransientDeliveryError) as caught:
        await post(transport, receiver.url())
    assert str(caught.value) == f"HTTP 302: redirect to {elsewhere} not followed"
    assert [r.path for r in receiver.received] == ["/hook"]


async def test_a_huge_response_body_is_not_read(
    receiver: Receiver, transport: WebhookTransport
) -> None:
    receiver.routes["/hook"] = Route(200, filler=10 * 1024 * 1024)
    response = await post(transport, receiver.url())
    assert response.body == b"x" * MAX_RESPONSE_BYTES
    assert response.seconds < 2
    # The client hung up: the receiver could not write the rest.
    await asyncio.wait_for(receiver.idle(), 2)
    assert receiver.answered == []


@pytest.mark.parametrize(
    "route",
    [Route(stall=True), Route(body=b"x" * 100, drip=0.05)],
    ids=["stalled", "slow-drip"],
)
async def test_the_whole_request_has_one_deadline(
    receiver: Receiver, route: Route
) -> None:
    receiver.routes["/hook"] = route
    settings = WebhookSettings(timeout=0.5, allow_private_addresses=True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with WebhookTransport(settings, UA) as transport:
        with pytest.raises(TransientDeliveryError, match=r"^timed out after 0.5 s$"):
            await post(transport, receiver.url())
    assert loop.time() - started < 2
    assert len(receiver.received) == 1


async def test_a_refused_connection_is_transient(
    transport: WebhookTransport, dead_port: int
) -> None:
    with pytest.raises(TransientDeliveryError, match=r"cannot connect to 127\.0\.0\.1"):
        await post(transport, f"http://127.0.0.1:{dead_port}/hook")


async def test_the_next_address_is_tried_when_one_refuses(
    receiver: Receiver,
) -> None:
    # 127.0.0.2 is loopback too, but the receiver listens on 127.0.0.1 only.
    resolver = ScriptedResolver(["127.0.0.2", "127.0.0.1"])
    async with WebhookTransport(SETTINGS, UA, resolver=resolver) as transport:
        response = await post(transport, f"http://hook.example:{receiver.port}/hook")
    assert response.status == 200
    assert len(receiver.received) == 1


async def test_a_private_address_is_refused_before_any_request(
    receiver: Receiver,
) -> None:
    settings = WebhookSettings(allow_private_addresses=False)
    async with WebhookTransport(settings, UA) as transport:
        with pytest.raises(UnsafeDestination, match="loopback"):
            await post(transport, receiver.url())
    assert receiver.connections == 0


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://user:pw@127.0.0.1:{port}/hook", "credentials"),
        ("ftp://127.0.0.1:{port}/hook", "only http and https"),
    ],
)
async def test_urls_check_url_refuses_never_connect(
    receiver: Receiver, transport: WebhookTransport, url: str, reason: str
) -> None:
    with pytest.raises(UnsafeDestination, match=reason):
        await post(transport, url.format(port=receiver.port))
    assert receiver.connections == 0


async def test_a_name_resolving_to_loopback_is_refused_at_connect_time(
    receiver: Receiver,
) -> None:
    resolver = ScriptedResolver(["127.0.0.1"])
    settings = WebhookSettings(allow_private_addresses=False)
    async with WebhookTransport(settings, UA, resolver=resolver) as transport:
        with pytest.raises(UnsafeDestination, match=r"hook\.example: resolved address"):
            await post(transport, f"http://hook.example:{receiver.port}/hook")
    assert resolver.calls == [("hook.example", receiver.port)]
    assert receiver.connections == 0


async def test_the_name_is_resolved_once_and_its_address_used(
    receiver: Receiver,
) -> None:
    # A rebinding resolver: were the name looked up again (by httpx, at connect
    # time), the second answer would be used, and hook.example has no real DNS.
    resolver = ScriptedResolver(["127.0.0.1"], ["192.0.2.1"])
    async with WebhookTransport(SETTINGS, UA, resolver=resolver) as transport:
        response = await post(transport, f"http://hook.example:{receiver.port}/hook")
    assert response.status == 200
    assert resolver.calls == [("hook.example", receiver.port)]
    [request] = receiver.received
    assert request.headers["host"] == f"hook.example:{receiver.port}"


async def test_https_checks_the_certificate_of_the_name_not_the_address(
    ca: trustme.CA,
) -> None:
    names: list[str | None] = []
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hook.example").configure_cert(server_tls)
    server_tls.sni_callback = lambda _sock, name, _ctx: names.append(name)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    server = Receiver(server_tls)
    await server.start()
    resolver = ScriptedResolver(["127.0.0.1"])
    try:
        async with WebhookTransport(
            SETTINGS, UA, resolver=resolver, verify=client_tls
        ) as transport:
            response = await post(transport, f"https://hook.example:{server.port}/x")
            with pytest.raises(TransientDeliveryError, match="certificate"):
                await post(transport, f"https://other.example:{server.port}/x")
    finally:
        await server.stop()
    assert response.status == 200
    assert names == ["hook.example", "other.example"]
    [request] = server.received
    assert request.headers["host"] == f"hook.example:{server.port}"


async def test_proxies_from_the_environment_are_ignored(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, dead_port: int
) -> None:
    proxy = f"http://127.0.0.1:{dead_port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy"):
        monkeypatch.setenv(name, proxy)
    async with WebhookTransport(SETTINGS, UA) as transport:
        response = await post(transport, receiver.url())
    assert response.status == 200
    assert len(receiver.received) == 1
