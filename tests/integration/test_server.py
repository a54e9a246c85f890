"""The follower endpoints over real HTTP: uvicorn on 127.0.0.1:0, a real database."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import re
import signal
import socket
import ssl
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from aggregator import optin, outbox, subscribers, tokens
from aggregator.cli.serve import serve_until_signalled
from aggregator.db import unit_of_work
from aggregator.errors import UsageError
from aggregator.models import Cadence, Subscriber, SubscriberKind, SubscriberState
from aggregator.runtime import Runtime, open_runtime
from aggregator.server import SUBSCRIBE_LIMIT, SUBSCRIBE_WINDOW, Server, build_app
from aggregator.settings import SiteSettings
from notifiers.render import templates_dir
from tests.support.builders import member, settings
from tests.support.clock import FixedClock
from tests.support.followers import add_subscriber, states

BASE_URL = "https://kairan.example.jp/"
CONTACT = "https://example.jp/contact"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
# One context for every client: building one costs ~50 ms (the servers are plain
# HTTP on 127.0.0.1; it is never used).
TLS = ssl.create_default_context()


@dataclass
class Site:
    rt: Runtime
    client: httpx.AsyncClient
    clock: FixedClock

    def subscriber(self, address: str, **options: Any) -> Subscriber:
        return add_subscriber(
            self.rt.db, address, self.clock.now(), key=self.rt.key, **options
        )

    def unsubscribe_path(self, subscriber: Subscriber) -> str:
        token = subscribers.unsubscribe_url_token(self.rt.key, subscriber)
        return f"/unsubscribe/{token}"

    def pending_delivery(self, subscriber: Subscriber) -> None:
        with unit_of_work(self.rt.db):
            outbox.enqueue_confirmation(self.rt.db, subscriber.id, self.clock.now())

    def confirm_path(self, subscriber: Subscriber) -> str:
        ttl = timedelta(seconds=self.rt.settings.email.confirm_ttl)
        with unit_of_work(self.rt.db):
            optin.issue_confirmation(
                self.rt.db, subscriber.id, self.rt.key, self.clock.now(), ttl
            )
        return self.sent_confirm_path(subscriber)

    def sent_confirm_path(self, subscriber: Subscriber) -> str:
        """The link of the confirmation mail last issued to `subscriber`."""
        live = optin.confirmation_link_token(self.rt.db, subscriber.id, self.rt.key)
        assert live is not None
        return f"/confirm/{live[0]}"

    def unsubscribe_hash(self, subscriber: Subscriber) -> str:
        row = self.rt.db.execute(
            "SELECT unsubscribe_token_hash FROM subscribers WHERE id = ?",
            [subscriber.id],
        ).fetchone()
        return str(row[0])

    def suppressed(self, address: str) -> bool:
        return subscribers.is_suppressed(self.rt.db, address) is not None

    def get(self, subscriber: Subscriber) -> Subscriber:
        return subscribers.get(self.rt.db, subscriber.id)

    def find(self, address: str) -> Subscriber | None:
        return subscribers.find_by_address(self.rt.db, SubscriberKind.EMAIL, address)


@pytest.fixture
async def site(tmp_path: Path, clock: FixedClock) -> AsyncIterator[Site]:
    kobe = member("kobe", "http://127.0.0.1:9/kobe", name="神戸市", prefecture="兵庫県")
    base = settings(tmp_path, (kobe,))
    configured = dataclasses.replace(
        base,
        site=SiteSettings(title="回覧板テスト", base_url=BASE_URL, contact=CONTACT),
    )
    with open_runtime(configured, clock=clock) as rt:
        server = Server(build_app(rt), "127.0.0.1", 0)
        async with (
            server.running(),
            httpx.AsyncClient(base_url=server.url, verify=TLS) as client,
        ):
            yield Site(rt, client, clock)


# --- unsubscribe -------------------------------------------------------------------


async def test_get_unsubscribe_shows_a_button_and_changes_nothing(site: Site) -> None:
    taro = site.subscriber("taro@example.jp")
    alice = site.subscriber("alice@example.com", language="en")
    site.pending_delivery(taro)
    path = site.unsubscribe_path(taro)

    page = await site.client.get(path)
    head = await site.client.head(path)
    english = await site.client.get(site.unsubscribe_path(alice))

    assert (page.status_code, head.status_code, english.status_code) == (200,) * 3
    assert '<form method="post">' in page.text
    assert "taro@example.jp" in page.text
    assert '<html lang="en">' in english.text  # the subscriber's language
    assert '<button type="submit">Unsubscribe</button>' in english.text
    assert site.get(taro).state is SubscriberState.ACTIVE
    assert site.get(alice).state is SubscriberState.ACTIVE
    assert states(site.rt.db) == [("taro@example.jp", None, "pending")]


def multipart(fields: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body without files (RFC 8058 §3.2's SHOULD)."""
    boundary = "kairan-test-boundary"
    parts = [
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    body = "".join(parts) + f"--{boundary}--\r\n"
    return body.encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def test_one_click_post_unsubscribes_and_cancels_pending_deliveries(
    site: Site,
) -> None:
    taro = site.subscriber("taro@example.jp")
    jiro = site.subscriber("jiro@example.jp")
    hanako = site.subscriber("hanako@example.jp")
    for someone in (taro, jiro, hanako):
        site.pending_delivery(someone)
    body, multipart_headers = multipart(ONE_CLICK)

    urlencoded = await site.client.post(site.unsubscribe_path(taro), data=ONE_CLICK)
    as_multipart = await site.client.post(
        site.unsubscribe_path(jiro), content=body, headers=multipart_headers
    )

    for response in (urlencoded, as_multipart):
        assert response.status_code == 200  # RFC 8058 §3.2: never a redirect
        assert "配信を停止しました" in response.text
    for gone in (taro, jiro):
        assert site.get(gone).state is SubscriberState.UNSUBSCRIBED
        assert site.get(gone).state_reason == "one-click unsubscribe"
    assert states(site.rt.db) == [
        ("taro@example.jp", None, "cancelled"),
        ("jiro@example.jp", None, "cancelled"),
        ("hanako@example.jp", None, "pending"),
    ]
    assert site.get(hanako).state is SubscriberState.ACTIVE


async def test_the_page_button_unsubscribes_and_a_repeat_changes_nothing(
    site: Site,
) -> None:
    taro = site.subscriber("taro@example.jp")
    path = site.unsubscribe_path(taro)

    first = await site.client.post(path)  # the button: an empty form, no cookie
    stamp = site.rt.db.execute(
        "SELECT state_changed_at FROM subscribers WHERE id = ?", [taro.id]
    ).fetchone()
    site.clock.advance(60)
    again = await site.client.post(path, data=ONE_CLICK)
    page = await site.client.get(path)

    assert (first.status_code, again.status_code, page.status_code) == (200, 200, 200)
    assert again.text == first.text
    assert "<form" not in page.text  # already stopped: no button to press again
    after = site.get(taro)
    assert after.state is SubscriberState.UNSUBSCRIBED
    assert after.state_reason == "unsubscribe page"
    assert (
        site.rt.db.execute(
            "SELECT state_changed_at FROM subscribers WHERE id = ?", [taro.id]
        ).fetchone()
        == stamp
    )


async def test_a_malformed_token_is_400_and_changes_nothing(site: Site) -> None:
    taro = site.subscriber("taro@example.jp")
    site.pending_delivery(taro)

    for token in ("short", "A" * 42 + "B", "A" * 44, "%00" * 43):
        got = await site.client.get(f"/unsubscribe/{token}")
        posted = await site.client.post(f"/unsubscribe/{token}", data=ONE_CLICK)
        confirmed = await site.client.get(f"/confirm/{token}")
        statuses = (got.status_code, posted.status_code, confirmed.status_code)
        assert statuses == (400, 400, 400), token

    assert site.get(taro).state is SubscriberState.ACTIVE
    assert states(site.rt.db) == [("taro@example.jp", None, "pending")]


async def test_a_forged_well_formed_token_is_404_and_changes_nothing(
    site: Site,
) -> None:
    taro = site.subscriber("taro@example.jp")
    site.pending_delivery(taro)
    forged = tokens.unsubscribe_token(b"x" * 32, taro.id, taro.token_generation)
    assert tokens.looks_like_token(forged)

    got = await site.client.get(f"/unsubscribe/{forged}")
    posted = await site.client.post(f"/unsubscribe/{forged}", data=ONE_CLICK)
    confirmed = await site.client.get(f"/confirm/{forged}")

    assert (got.status_code, posted.status_code, confirmed.status_code) == (404,) * 3
    assert site.get(taro).state is SubscriberState.ACTIVE
    assert states(site.rt.db) == [("taro@example.jp", None, "pending")]


# --- confirm -----------------------------------------------------------------------


async def test_confirm_activates_a_pending_subscriber(site: Site) -> None:
    hanako = site.subscriber("hanako@example.jp", confirmed=False)
    path = site.confirm_path(hanako)
    site.clock.advance(3600)

    probe = await site.client.head(path)  # link checkers probe with HEAD
    assert probe.status_code == 200
    assert site.get(hanako).state is SubscriberState.PENDING
    response = await site.client.get(path)

    assert response.status_code == 200
    assert "登録が完了しました" in response.text
    after = site.get(hanako)
    assert after.state is SubscriberState.ACTIVE
    assert after.notify_since == site.clock.now()
    assert after.confirmed_at == site.clock.now()


async def test_a_reused_confirm_link_says_already_confirmed(site: Site) -> None:
    hanako = site.subscriber("hanako@example.jp", confirmed=False)
    path = site.confirm_path(hanako)
    await site.client.get(path)
    confirmed_at = site.get(hanako).confirmed_at
    site.clock.advance(60)

    again = await site.client.get(path)

    assert again.status_code == 200
    assert "登録はすでに完了しています" in again.text
    assert site.get(hanako).confirmed_at == confirmed_at


async def test_a_confirm_link_after_unsubscribing_is_no_longer_usable(
    site: Site,
) -> None:
    hanako = site.subscriber("hanako@example.jp", confirmed=False)
    path = site.confirm_path(hanako)
    await site.client.post(site.unsubscribe_path(hanako))

    response = await site.client.get(path)

    assert response.status_code == 410
    assert "このリンクは使用できません" in response.text
    assert f'href="{BASE_URL}subscribe"' in response.text
    assert site.get(hanako).state is SubscriberState.UNSUBSCRIBED


async def test_an_expired_confirm_link_says_so_and_stays_pending(site: Site) -> None:
    hanako = site.subscriber("hanako@example.jp", confirmed=False)
    path = site.confirm_path(hanako)
    site.clock.advance(site.rt.settings.email.confirm_ttl + 1)

    response = await site.client.get(path)

    assert response.status_code == 410
    assert "有効期限が切れています" in response.text
    assert f'href="{BASE_URL}subscribe"' in response.text  # how to sign up again
    assert site.get(hanako).state is SubscriberState.PENDING


# --- subscribe ---------------------------------------------------------------------


def signup(email: str, **fields: Any) -> dict[str, Any]:
    return {"email": email, "schedule": "daily", "members": ["kobe"], **fields}


async def test_subscribe_creates_a_pending_subscriber_and_queues_its_mail(
    site: Site,
) -> None:
    response = await site.client.post("/subscribe", data=signup(" Taro@Example.JP "))

    assert response.status_code == 200
    assert "確認メールをお送りします" in response.text
    assert "7日以内" in response.text
    taro = site.find("Taro@example.jp")
    assert taro is not None
    assert taro.state is SubscriberState.PENDING
    assert taro.schedule.cadence is Cadence.DAILY
    assert taro.filters.members == ("kobe",)
    assert (taro.language, taro.timezone) == ("ja", "Asia/Tokyo")
    assert taro.consent_source == "web"
    assert taro.consent_origin == "web:127.0.0.1"
    assert taro.consent_at == site.clock.now()
    assert optin.confirmation_link_token(site.rt.db, taro.id, site.rt.key)
    assert states(site.rt.db) == [("Taro@example.jp", None, "pending")]


async def test_subscribe_answers_the_same_whether_or_not_the_address_exists(
    site: Site,
) -> None:
    site.subscriber("active@example.jp")
    pending = await site.client.post("/subscribe", data=signup("pending@example.jp"))
    site.clock.advance(60)

    fresh = await site.client.post("/subscribe", data=signup("new@example.jp"))
    active = await site.client.post("/subscribe", data=signup("active@example.jp"))
    again = await site.client.post("/subscribe", data=signup("pending@example.jp"))

    assert pending.status_code == fresh.status_code == active.status_code == 200
    assert again.status_code == 200
    assert fresh.text == active.text == again.text == pending.text
    # the active subscriber gets nothing; the pending one no second mail so soon
    assert states(site.rt.db) == [
        ("pending@example.jp", None, "pending"),
        ("new@example.jp", None, "pending"),
    ]


async def test_a_pending_address_gets_a_new_mail_after_ten_minutes(site: Site) -> None:
    await site.client.post("/subscribe", data=signup("taro@example.jp"))
    site.clock.advance(11 * 60)

    await site.client.post(
        "/subscribe", data=signup("taro@example.jp", schedule="weekly")
    )

    taro = site.find("taro@example.jp")
    assert taro is not None
    assert taro.schedule.cadence is Cadence.WEEKLY  # the choices asked for last
    assert [s for _, _, s in states(site.rt.db)] == ["pending", "pending"]


async def test_an_unsubscribed_address_can_sign_up_again(site: Site) -> None:
    taro = site.subscriber("taro@example.jp")
    old_hash, old_link = site.unsubscribe_hash(taro), site.unsubscribe_path(taro)
    await site.client.post(old_link, data=ONE_CLICK)
    site.clock.advance(3600)

    response = await site.client.post("/subscribe", data=signup("taro@example.jp"))

    assert response.status_code == 200
    again = site.get(taro)
    assert again.state is SubscriberState.PENDING
    assert again.consent_source == "web"  # the new consent, not the operator's
    assert again.consent_origin == "web:127.0.0.1"
    assert again.consent_at == site.clock.now() > taro.consent_at
    assert (again.confirmed_at, again.notify_since) == (None, None)
    assert states(site.rt.db) == [("taro@example.jp", None, "pending")]
    # an old mail's unsubscribe link no longer finds them; the new one does
    assert site.unsubscribe_hash(again) != old_hash
    assert (await site.client.get(old_link)).status_code == 404
    assert (await site.client.post(old_link, data=ONE_CLICK)).status_code == 404
    assert (await site.client.get(site.unsubscribe_path(again))).status_code == 200
    assert site.get(taro).state is SubscriberState.PENDING

    site.clock.advance(60)
    confirmed = await site.client.get(site.sent_confirm_path(again))

    assert confirmed.status_code == 200
    after = site.get(taro)
    assert after.state is SubscriberState.ACTIVE
    assert after.notify_since == after.confirmed_at == site.clock.now()
    # the first subscription's start is gone: nothing from before is sent
    assert taro.notify_since is not None
    assert taro.notify_since < site.clock.now()


async def test_a_forgotten_address_can_sign_up_again_itself(site: Site) -> None:
    taro = site.subscriber("taro@example.jp")
    with unit_of_work(site.rt.db):
        subscribers.forget(site.rt.db, taro.id, site.clock.now())

    response = await site.client.post("/subscribe", data=signup("taro@example.jp"))

    assert response.status_code == 200
    again = site.find("taro@example.jp")
    assert again is not None
    assert again.state is SubscriberState.PENDING
    assert again.consent_source == "web"
    assert states(site.rt.db) == [("taro@example.jp", None, "pending")]
    # still suppressed until the person follows the link (double opt-in)
    assert site.suppressed("taro@example.jp")

    confirmed = await site.client.get(site.sent_confirm_path(again))

    assert confirmed.status_code == 200
    assert site.get(again).state is SubscriberState.ACTIVE
    assert not site.suppressed("taro@example.jp")


INVALID = [
    (signup("taro@@example.jp"), "メールアドレスを確認してください"),
    (signup("taro@example.jp\r\nBcc: x@example.jp"), "line break"),
    (signup("ｔａｒｏ@example.jp"), "full-width"),
    (signup("taro@example.jp", schedule="hourly"), "受け取り方を選んでください"),
    (signup("taro@example.jp", members=["nowhere"]), "発信元が見つかりません"),
    (signup("taro@example.jp", language="fr"), "言語を選んでください"),
]


async def test_an_invalid_form_is_400_with_the_reason(site: Site) -> None:
    for form, reason in INVALID:
        site.clock.advance(SUBSCRIBE_WINDOW)  # refused posts count towards the limit
        response = await site.client.post("/subscribe", data=form)

        assert response.status_code == 400, reason
        assert reason in response.text
        assert 'role="alert"' in response.text

    assert subscribers.list_subscribers(site.rt.db) == []
    assert states(site.rt.db) == []


async def test_subscribe_is_rate_limited_per_client_address(site: Site) -> None:
    for n in range(SUBSCRIBE_LIMIT):
        accepted = await site.client.post("/subscribe", data=signup(f"u{n}@example.jp"))
        assert accepted.status_code == 200

    refused = await site.client.post("/subscribe", data=signup("late@example.jp"))
    site.clock.advance(SUBSCRIBE_WINDOW)
    later = await site.client.post("/subscribe", data=signup("later@example.jp"))

    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= SUBSCRIBE_WINDOW
    assert site.find("late@example.jp") is None
    assert later.status_code == 200


async def test_get_subscribe_shows_a_labelled_form(site: Site) -> None:
    response = await site.client.get("/subscribe")

    assert response.status_code == 200
    assert '<label for="email">' in response.text
    assert 'id="email" name="email"' in response.text
    assert 'value="kobe">神戸市（兵庫県）</label>' in response.text
    assert response.text.count("<legend>") == 3


# --- every page --------------------------------------------------------------------


async def every_page(site: Site) -> list[httpx.Response]:
    taro = site.subscriber("taro@example.jp")
    hanako = site.subscriber("hanako@example.jp", confirmed=False)
    client = site.client
    return [
        await client.get(site.unsubscribe_path(taro)),
        await client.post(site.unsubscribe_path(taro), data=ONE_CLICK),
        await client.get(site.confirm_path(hanako)),
        await client.get("/confirm/" + "A" * 43),
        await client.get("/unsubscribe/nope"),
        await client.get("/subscribe"),
        await client.post("/subscribe", data=signup("bad@")),
        await client.post("/subscribe", data=signup("new@example.jp")),
        await client.get("/no/such/page"),
        await client.delete("/subscribe"),
    ]


async def test_every_page_is_self_contained_with_the_security_headers(
    site: Site,
) -> None:
    pages = await every_page(site)
    health = await site.client.get("/healthz")

    assert [p.status_code for p in pages] == [
        200, 200, 200, 404, 400, 200, 400, 200, 404, 405,
    ]  # fmt: skip
    assert pages[-1].headers["Allow"]
    for page in [*pages, health]:
        headers = page.headers
        assert headers["Content-Type"].endswith("; charset=utf-8"), page.url
        assert headers["Cache-Control"] == "no-store"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff"
        policy = headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "form-action 'self'" in policy
        assert "location" not in headers
    for page in pages:
        assert_self_contained(page)
    assert health.text == "ok\n"


def assert_self_contained(page: httpx.Response) -> None:
    """Nothing loaded from anywhere, links only to the site, accessible bones."""
    html = page.text
    assert re.search(r"<(script|img|link|iframe)\b", html) is None, page.url
    assert " src=" not in html
    for href in re.findall(r'href="([^"]*)"', html):
        if href.startswith(("http:", "https:", "//")):
            assert href.startswith(BASE_URL) or href == CONTACT, href
    # the inline style is the one the policy allows, byte for byte
    style = re.search(r"<style>(.*?)</style>", html, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style[1].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.headers["Content-Security-Policy"]
    assert re.search(r'<html lang="(ja|en)">', html)
    assert html.count("<h1>") == 1
    assert "<main>" in html


def keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for name, value in table.items():
        found.add(prefix + name)
        if isinstance(value, dict):
            found |= keys(value, f"{prefix}{name}.")
    return found


def test_every_page_text_exists_in_every_language() -> None:
    with (templates_dir() / "pages" / "text.toml").open("rb") as f:
        text = tomllib.load(f)

    assert set(text) == {"ja", "en"}
    assert keys(text["ja"]) == keys(text["en"])


# --- the server itself -------------------------------------------------------------


class Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_log() -> Iterator[list[logging.LogRecord]]:
    """What the server logs, whatever an earlier CLI test did to the "kairan"
    logger (logs.setup stops propagation, so caplog would see nothing)."""
    logger = logging.getLogger("kairan.server")
    recorder, level = Recorder(), logger.level
    logger.addHandler(recorder)
    logger.setLevel(logging.INFO)
    try:
        yield recorder.records
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)


async def test_the_server_logs_through_ours_and_stops_cleanly(
    tmp_path: Path,
    server_log: list[logging.LogRecord],
    capfd: pytest.CaptureFixture[str],
) -> None:
    with open_runtime(settings(tmp_path)) as rt:
        server = Server(build_app(rt), "127.0.0.1", 0)
        async with (
            server.running(),
            httpx.AsyncClient(base_url=server.url, verify=TLS) as c,
        ):
            assert (await c.get("/healthz")).status_code == 200
        async with httpx.AsyncClient(verify=TLS) as late:
            with pytest.raises(httpx.ConnectError):
                await late.get(server.url + "healthz")

    events = [r.getMessage() for r in server_log]
    assert events == ["server.started", "server.stopped"]
    out, err = capfd.readouterr()
    assert "uvicorn" not in (out + err).lower()  # no banner of its own


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with open_runtime(settings(tmp_path)) as rt:
            app = build_app(rt)
            with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}"):
                Server(app, "127.0.0.1", port)


async def test_added_routes_get_the_default_headers_and_errors_a_page(
    tmp_path: Path, server_log: list[logging.LogRecord]
) -> None:
    async def published(request: Request) -> Response:
        return PlainTextResponse("feed", headers={"Cache-Control": "max-age=300"})

    async def broken(request: Request) -> Response:
        raise RuntimeError("a bug")

    routes = [Route("/feed.atom", published), Route("/broken", broken)]
    with open_runtime(settings(tmp_path)) as rt:
        server = Server(build_app(rt, routes=routes), "127.0.0.1", 0)
        async with (
            server.running(),
            httpx.AsyncClient(base_url=server.url, verify=TLS) as c,
        ):
            feed = await c.get("/feed.atom")
            failed = await c.get("/broken")

    assert feed.headers["Cache-Control"] == "max-age=300"  # its own, kept
    assert feed.headers["X-Content-Type-Options"] == "nosniff"
    assert failed.status_code == 500
    assert "エラーが発生しました" in failed.text
    assert failed.headers["Referrer-Policy"] == "no-referrer"
    assert "Content-Security-Policy" in failed.headers
    logged = [r for r in server_log if r.getMessage() == "server.uvicorn"]
    assert logged
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[1] is not None
    assert str(logged[0].exc_info[1]) == "a bug"


async def test_kairan_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with open_runtime(settings(tmp_path)) as rt:
        server = Server(build_app(rt), "127.0.0.1", 0)
        serving = asyncio.create_task(serve_until_signalled(server))
        async with httpx.AsyncClient(base_url=server.url, verify=TLS) as c:
            assert (await c.get("/healthz")).status_code == 200
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(serving, timeout=5)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
