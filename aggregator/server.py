"""HTTP server (Starlette + uvicorn): one-click unsubscribe, confirm, subscribe, health.

The follower endpoints of issue 3 §4; published files, /metrics and /readyz join
them through ``build_app(rt, routes=...)``. The server never owns the process:
whoever runs the event loop (``kairan serve``, the daemon) handles the signals
and calls `Server.stop()`.

Handlers use the database synchronously on the event-loop thread, and no
`unit_of_work` spans an ``await``, so they interleave safely with the scheduler's
jobs on the same connection (ARCHITECTURE.md: short transactions on the loop).

Tokens travel in URLs, so uvicorn's access log stays off (it would write every
token into the log), every response says ``Referrer-Policy: no-referrer`` and
``Cache-Control: no-store`` unless it chose otherwise, and log lines name
subscriber ids, never a token or an address.

No CSRF token: nothing here rides on a cookie or session. An unsubscribe POST is
authorised by the unguessable token in its URL alone (RFC 8058 §3.1 forbids
requiring cookies or other context), and a forged cross-site /subscribe can do
no more than the attacker could by posting the form directly: ask for a
confirmation mail, which the owner of the address must act on (double opt-in),
limited per client address.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import socket
from collections.abc import AsyncIterator, Generator, Sequence
from datetime import timedelta

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from aggregator import logs, optin, subscribers, tokens
from aggregator.db import unit_of_work
from aggregator.errors import UsageError
from aggregator.models import Cadence, Schedule, Subscriber, SubscriberState
from aggregator.pages import DefaultHeaders, Pages
from aggregator.public_files import PublicFiles
from aggregator.ratelimit import RateLimiter
from aggregator.runtime import Runtime
from aggregator.signup import (
    LANGUAGES,
    Confirmations,
    SignupForm,
    field,
    parse_signup,
    sign_up,
)

log = logs.get("server")

SUBSCRIBE_LIMIT = 5  # sign-up posts per client address (an IPv6 /64 is one) …
SUBSCRIBE_WINDOW = 600.0  # … per this many seconds
LISTEN_BACKLOG = 2048  # uvicorn's default
FORM_MAX_BYTES = 16 * 1024  # larger (or unsized) form bodies are not read
# RFC 8058 §3.1: the body a mail client's one-click POST carries.
ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"


# --- the follower endpoints ------------------------------------------------------


async def read_form(request: Request) -> FormData | None:
    """The posted form (urlencoded or multipart, RFC 8058 §3.2 allows both), or
    None when it is too large, of no declared size, or unreadable. Never raises."""
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > FORM_MAX_BYTES:
        return None
    try:
        return await request.form(
            max_files=0, max_fields=100, max_part_size=FORM_MAX_BYTES
        )
    except HTTPException:  # Starlette's answer to a malformed body
        return None


def client_address(request: Request) -> str:
    # uvicorn takes it from X-Forwarded-For only when the proxy is trusted
    # (forwarded_allow_ips, 127.0.0.1 by default): a local reverse proxy works.
    return request.client.host if request.client else "unknown"


def rate_key(client: str) -> str:
    """One IPv6 /64 is one client: a single host usually holds the whole prefix."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Followers:
    """The handlers, bound to one Runtime (no globals: tests run several apps)."""

    def __init__(self, rt: Runtime, pages: Pages) -> None:
        self.rt = rt
        self.pages = pages
        self.limiter = RateLimiter(SUBSCRIBE_LIMIT, SUBSCRIBE_WINDOW)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/unsubscribe/{token}", self.unsubscribe_page, methods=["GET"]),
            Route("/unsubscribe/{token}", self.unsubscribe, methods=["POST"]),
            Route("/confirm/{token}", self.confirm, methods=["GET"]),
            Route("/subscribe", self.subscribe_form, methods=["GET"]),
            Route("/subscribe", self.subscribe, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]

    # unsubscribe

    def _bad_token(self, token: str) -> Response | None:
        if tokens.looks_like_token(token):
            return None
        log.info("link.malformed")
        return self.pages.message("bad_link", self.pages.lang(), 400)

    def _unknown_token(self) -> Response:
        log.info("link.unknown")
        return self.pages.message("unknown_link", self.pages.lang(), 404)

    async def unsubscribe_page(self, request: Request) -> Response:
        """Shows a button and changes nothing: mail scanners prefetch links."""
        token = request.path_params["token"]
        if (refused := self._bad_token(token)) is not None:
            return refused
        found = subscribers.by_unsubscribe_token(self.rt.db, token)
        if found is None:
            return self._unknown_token()
        if found.state is SubscriberState.UNSUBSCRIBED:
            return self._unsubscribed(found)
        lang = self.pages.lang(found.language)
        return self.pages.render(
            "unsubscribe.html.j2",
            lang,
            200,
            self.pages.text[lang]["unsubscribe"]["title"],
            intro=self.pages.text[lang]["unsubscribe"]["intro"].format(
                site=self.rt.settings.site.title
            ),
            address=found.address,
        )

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058 one-click POST, or the page's button: stop at once, answer 200.

        RFC 8058 §3.1–3.2: no cookie or other context is needed, the body may be
        multipart or urlencoded and is not required at all (it only names the
        reason logged), and the answer is never a redirect. Idempotent.
        """
        token = request.path_params["token"]
        if (refused := self._bad_token(token)) is not None:
            return refused
        form = await read_form(request) or FormData()
        via = "one-click" if field(form, ONE_CLICK_FIELD) == ONE_CLICK_VALUE else "page"
        with unit_of_work(self.rt.db) as db:
            found = subscribers.by_unsubscribe_token(db, token)
            if found is None:
                return self._unknown_token()
            if found.state is SubscriberState.UNSUBSCRIBED:
                log.info("unsubscribe.repeated", extra=logs.fields(subscriber=found.id))
                return self._unsubscribed(found)
            reason = (
                "one-click unsubscribe" if via == "one-click" else "unsubscribe page"
            )
            subscribers.unsubscribe(db, found.id, self.rt.clock.now(), reason)
        log.info("unsubscribe.done", extra=logs.fields(subscriber=found.id, via=via))
        return self._unsubscribed(found)

    def _unsubscribed(self, found: Subscriber) -> Response:
        lang = self.pages.lang(found.language)
        return self.pages.message(
            "unsubscribed",
            lang,
            200,
            link=self.pages.subscribe_url,
            address=found.address,
        )

    # confirm

    async def confirm(self, request: Request) -> Response:
        """Activates a pending subscriber (issue 3 §4: GET /confirm/{token}).

        A link scanner that GETs the link confirms too; the address is still
        proven to receive our mail, which is what double opt-in checks. HEAD,
        which link checkers use to probe, changes nothing.
        """
        token = request.path_params["token"]
        if (refused := self._bad_token(token)) is not None:
            return refused
        if request.method == "HEAD":
            return HTMLResponse("", headers=self.pages.headers)
        with unit_of_work(self.rt.db) as db:
            result = optin.confirm(db, token, self.rt.clock.now())
        found = result.subscriber
        if found is None:
            return self._unknown_token()
        log.info(f"confirm.{result.outcome}", extra=logs.fields(subscriber=found.id))
        lang = self.pages.lang(found.language)
        if result.outcome == "confirmed":
            return self.pages.message("confirmed", lang, 200, address=found.address)
        if result.outcome == "already" and found.state is SubscriberState.ACTIVE:
            return self.pages.message("already", lang, 200, address=found.address)
        key = "expired" if result.outcome == "expired" else "used"
        return self.pages.message(key, lang, 410, link=self.pages.subscribe_url)

    # subscribe

    async def subscribe_form(self, request: Request) -> Response:
        settings = self.rt.settings
        blank = SignupForm("", str(Cadence.IMMEDIATE), (), settings.site.language)
        return self._form_page(blank, {}, 200)

    async def subscribe(self, request: Request) -> Response:
        lang = self.pages.lang()
        client = client_address(request)
        wait = self.limiter.check(rate_key(client), self.rt.clock.monotonic())
        if wait:
            log.info("subscribe.rate_limited", extra=logs.fields(retry_after=wait))
            return self.pages.message(
                "rate_limited",
                lang,
                429,
                headers={"Retry-After": str(wait)},
                minutes=str(math.ceil(wait / 60)),
            )
        form = await read_form(request)
        if form is None:
            return self.pages.message("bad_request", lang, 400)
        signup, entered, errors = parse_signup(form, self.rt.settings)
        if signup is None:
            log.info("subscribe.invalid", extra=logs.fields(fields=",".join(errors)))
            return self._form_page(entered, errors, 400)
        settings = self.rt.settings
        confirmations = Confirmations(
            self.rt.key,
            self.rt.clock.now(),
            timedelta(seconds=settings.email.confirm_ttl),
        )
        with unit_of_work(self.rt.db) as db:
            outcome, subscriber_id = sign_up(
                db,
                signup,
                confirmations,
                timezone=settings.site.timezone,
                origin=f"web:{client}",
            )
        log.info(f"subscribe.{outcome}", extra=logs.fields(subscriber=subscriber_id))
        ttl = self.pages.duration(lang, settings.email.confirm_ttl)
        return self.pages.message("sent", lang, 200, ttl=ttl)

    def _form_page(
        self, entered: SignupForm, errors: dict[str, tuple[str, str]], status: int
    ) -> Response:
        lang = self.pages.lang()
        words = self.pages.text[lang]["subscribe"]
        settings = self.rt.settings
        hour = Schedule().hour
        return self.pages.render(
            "subscribe.html.j2",
            lang,
            status,
            words["title"],
            intro=words["intro"].format(site=settings.site.title),
            form=entered,
            errors={
                name: words[key].format(detail=detail)
                for name, (key, detail) in errors.items()
            },
            schedules=[(str(c), words[str(c)].format(hour=hour)) for c in Cadence],
            members=settings.members,
            languages=[(code, self.pages.text[code]["name"]) for code in LANGUAGES],
        )


async def healthz(request: Request) -> Response:
    """Alive: the process answers (readiness is /readyz, issue 6)."""
    return PlainTextResponse("ok\n")


def build_app(rt: Runtime, *, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The daemon's ASGI app: the follower endpoints, `routes` (issue 6), then the
    published files (`kairan publish`) for every other path."""
    pages = Pages(rt.settings)
    followers = Followers(rt, pages)
    published = PublicFiles(rt.settings.public_dir)  # last: it takes any path
    return Starlette(
        routes=[*followers.routes(), *routes, published.route()],
        middleware=[Middleware(DefaultHeaders, headers=pages.headers)],
        exception_handlers={HTTPException: pages.http_error, 500: pages.server_error},
    )


# --- running it ----------------------------------------------------------------


class UvicornLogs(logging.Handler):
    """uvicorn's records as our ``server.uvicorn`` events (errors, tracebacks);
    its banner and other info lines fall below the level set on its logger."""

    def emit(self, record: logging.LogRecord) -> None:
        log.log(
            record.levelno,
            "server.uvicorn",
            exc_info=record.exc_info,
            extra=logs.fields(message=record.getMessage()),
        )


def route_uvicorn_logs() -> None:
    """Send uvicorn's loggers through ours (idempotent; logging is process-wide)."""
    logger = logging.getLogger("uvicorn")
    logger.handlers[:] = [UvicornLogs()]
    logger.setLevel(logging.WARNING)
    logger.propagate = False


class QuietUvicorn(uvicorn.Server):
    """uvicorn without signal handlers: the owner of the event loop has them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one. Bound here, not by uvicorn,
    so the port is known at once and a busy port is our error, not its exit()."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and
    # without it each response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


class Server:
    """One HTTP server on `host`:`port`, run by `serve()` until `stop()`."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        route_uvicorn_logs()
        self.host = host
        self._socket = listen(host, port)
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,  # it would log every token in a URL
            server_header=False,
            timeout_graceful_shutdown=5,  # issue 6: the daemon stops within 10 s
        )
        self._uvicorn = QuietUvicorn(config)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def serve(self) -> None:
        """Answer requests until `stop()`; the socket is closed when this returns."""
        log.info("server.started", extra=logs.fields(host=self.host, port=self.port))
        try:
            await self._uvicorn.serve(sockets=[self._socket])
        finally:
            self._socket.close()
            log.info("server.stopped", extra=logs.fields(port=self.port))

    def stop(self) -> None:
        """Stop taking connections and finish the open ones (safe from a signal)."""
        self._uvicorn.should_exit = True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Server]:
        """Serve in a task of the current loop for the block's duration."""
        task = asyncio.create_task(self.serve())
        try:
            yield self
        finally:
            self.stop()
            await task
