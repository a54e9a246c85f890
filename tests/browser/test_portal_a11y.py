"""The portal in headless Chromium: axe-core finds no WCAG 2.1 A/AA violation.

Pages are served from 127.0.0.1 (the sandbox FeedServer) with the CSP the
daemon sends, thumbnails included, so nothing leaves the machine and a page that
needed an inline style or a foreign resource would show up as a console error.
Screenshots at phone and desktop widths are kept (their paths are printed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page

from aggregator.sandbox.feed_server import FeedServer, Route
from notifiers.portal import build_portal
from notifiers.published import Snapshot
from tests.support.published import article, member, snapshot

if TYPE_CHECKING:
    from tests.browser.conftest import Axe

pytestmark = pytest.mark.browser

CSP = "default-src 'self'; img-src 'self' https:; style-src 'self'"  # the daemon's
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PHONE, DESKTOP = (360, 740), (1280, 800)
AXE_PATH = "/axe/axe.min.js"
Scheme = Literal["light", "dark"]
PAGES = {
    "index": "index.html",
    "member": "members/yokosuka.html",
    "tag": f"tags/{quote('防災')}.html",
}
THUMBNAIL = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="640" height="360">'
    b'<rect width="640" height="360" fill="#5b7fa6"/></svg>'
)
# an unbroken string wider than a phone: it must wrap, not scroll sideways
LONG_WORD = "https://www.city.example.jp/" + "kurashi" * 20


@dataclass(frozen=True, slots=True)
class Portal:
    base_url: str  # the server's root, ending with "/"

    def url(self, language: str, page: str) -> str:
        return f"{self.base_url}{language}/{PAGES[page]}"


def sample(base_url: str, language: str) -> Snapshot:
    """What a real portal holds: cards with and without thumbnails, a failing
    member, prefectures and tags, hostile and very long feed text, the form."""
    members = [
        member(
            "yokosuka",
            name="横須賀市",
            prefecture="神奈川県",
            tags=("中核市",),
            articles=3,
            last_article=article(4).published,
        ),
        member(
            "kobe",
            name="神戸市",
            prefecture="兵庫県",
            articles=1,
            last_article=article(2).published,
            failing="gone",
        ),
        member("shiki", name="志木市", prefecture="埼玉県"),
    ]
    articles = [
        article(1, tags=("防災",), thumbnail=f"{base_url}thumbs/1.svg"),
        article(2, member_id="kobe", tags=("防災", "子育て"), thumbnail=None),
        article(
            3, title=LONG_WORD, tags=("防災",), thumbnail=f"{base_url}thumbs/3.svg"
        ),
        article(
            4,
            title='<script>alert("x")</script> 防災訓練のお知らせ',
            summary_html="<p>" + "市内全域で防災訓練を行います。" * 12 + "</p>",
            tags=("防災",),
            thumbnail=f"{base_url}thumbs/4.svg",
        ),
    ]
    return snapshot(
        articles,
        members,
        language=language,
        base_url=f"{base_url}{language}/",
        subscribe_url=f"{base_url}subscribe",
    )


@pytest.fixture(scope="module")
def portal(axe: Axe) -> Iterator[Portal]:
    """Both languages' pages under /ja/ and /en/, the thumbnails and axe-core, on
    one server: every test's page, image and script is on 127.0.0.1."""
    server = FeedServer(record=False)
    server.start()
    try:
        base_url = server.base_url + "/"
        routes = {
            f"/thumbs/{n}.svg": Route(body=THUMBNAIL, content_type="image/svg+xml")
            for n in (1, 3, 4)
        }
        # a same-origin script, which the CSP admits (script-src falls back to
        # 'self'); cached, so each page compiles it from the browser's code cache
        routes[AXE_PATH] = Route(
            body=axe.source.encode("utf-8"),
            content_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "max-age=3600"},
        )
        # the browser asks every origin for one; no content is not an error
        routes["/favicon.ico"] = Route(status=204, content_type=None)
        for language in ("ja", "en"):
            for artefact in build_portal(sample(base_url, language), 50):
                routes[f"/{language}/{artefact.path}"] = Route(
                    body=artefact.body,
                    content_type=artefact.media_type,
                    headers={"Content-Security-Policy": CSP},
                )
        server.routes(routes)
        yield Portal(base_url)
    finally:
        server.stop()


@dataclass
class Tab:
    """One browser tab at one viewport and colour scheme, reused across tests."""

    page: Page
    errors: list[str]  # since the last visit: console errors (a CSP refusal is
    # one) and uncaught page errors


class Tabs:
    """A tab per viewport: a new browser context costs more than a visit."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.tabs: dict[tuple[int, int], Tab] = {}

    def visit(
        self, url: str, viewport: tuple[int, int], scheme: Scheme = "light"
    ) -> Tab:
        tab = self.tabs.get(viewport) or self._open(viewport)
        tab.errors.clear()
        tab.page.emulate_media(color_scheme=scheme)
        response = tab.page.goto(url, wait_until="load")
        assert response is not None
        assert response.status == 200, url
        return tab

    def _open(self, viewport: tuple[int, int]) -> Tab:
        width, height = viewport
        context = self.browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        tab = self.tabs[viewport] = Tab(page, [])
        page.on(
            "console",
            lambda m: tab.errors.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: tab.errors.append(str(e)))
        return tab

    def close(self) -> None:
        for tab in self.tabs.values():
            tab.page.context.close()


@pytest.fixture(scope="module")
def tabs(chromium: Browser) -> Iterator[Tabs]:
    opened = Tabs(chromium)
    try:
        yield opened
    finally:
        opened.close()


def axe_violations(portal: Portal, page: Page) -> tuple[list[str], int]:
    """axe-core's WCAG 2.1 A/AA violations, one line each, and how many rules passed."""
    page.add_script_tag(url=portal.base_url + AXE_PATH.lstrip("/"))
    result = page.evaluate(
        """async (tags) => {
            const r = await axe.run(document, {
                runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
            return {
                passes: r.passes.length,
                violations: r.violations.map(v =>
                    `${v.id} (${v.impact}): ${v.help} at ` +
                    v.nodes.map(n => n.target.join(" ")).join(", ")),
            };
        }""",
        WCAG_21_AA,
    )
    return list(result["violations"]), int(result["passes"])


def layout(page: Page) -> dict[str, Any]:
    facts: dict[str, Any] = page.evaluate(
        """() => ({
            scrollWidth: document.scrollingElement.scrollWidth,
            innerWidth: window.innerWidth,
            styled: getComputedStyle(document.querySelector(".skip")).position,
            cardColumns: (() => {
                const grid = document.querySelector(".cards");
                return grid ? getComputedStyle(grid).gridTemplateColumns
                    .split(" ").length : 0;
            })(),
            brokenImages: [...document.images]
                .filter(i => i.getBoundingClientRect().top < window.innerHeight)
                .filter(i => !(i.complete && i.naturalWidth > 0))
                .map(i => i.src),
            imagesInView: [...document.images]
                .filter(i => i.getBoundingClientRect().top < window.innerHeight)
                .length,
        })"""
    )
    return facts


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("name", list(PAGES))
def test_no_wcag_violation_and_no_sideways_scrolling(
    portal: Portal,
    tabs: Tabs,
    axe: Axe,
    screenshot: Callable[[Page, str], Path],
    name: str,
    language: str,
    viewport: tuple[int, int],
) -> None:
    tab = tabs.visit(portal.url(language, name), viewport)
    page = tab.page

    violations, passes = axe_violations(portal, page)
    facts = layout(page)
    screenshot(page, f"{language}-{name}-{viewport[0]}x{viewport[1]}")

    assert violations == [], f"axe-core {axe.version}"
    assert passes >= 10  # axe ran its rules on a real page
    assert tab.errors == []  # no CSP refusal, no missing file
    assert facts["styled"] == "absolute"  # portal.css was loaded and applied
    assert facts["scrollWidth"] <= facts["innerWidth"], facts
    assert facts["brokenImages"] == []
    if name != "member":  # the member's newest article has a thumbnail …
        return
    assert facts["imagesInView"] >= 1  # … shown at the top of its page
    if viewport == PHONE:
        assert facts["cardColumns"] == 1
    else:
        assert facts["cardColumns"] >= 3


def test_dark_scheme_keeps_contrast(
    portal: Portal, tabs: Tabs, screenshot: Callable[[Page, str], Path]
) -> None:
    # colours do not depend on the language: one page in the dark palette
    tab = tabs.visit(portal.url("ja", "index"), DESKTOP, scheme="dark")

    violations, _ = axe_violations(portal, tab.page)
    screenshot(tab.page, "ja-index-dark")

    assert violations == []
    assert tab.errors == []
    background = tab.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 24, 39)"  # the dark palette is the one checked


def test_the_skip_link_is_the_first_stop_and_shows_where_focus_is(
    portal: Portal, tabs: Tabs
) -> None:
    page = tabs.visit(portal.url("ja", "index"), PHONE).page

    page.keyboard.press("Tab")
    focused = page.evaluate(
        """() => {
            const e = document.activeElement, s = getComputedStyle(e);
            const box = e.getBoundingClientRect();
            return {text: e.textContent, href: e.getAttribute("href"),
                    outline: s.outlineStyle, width: s.outlineWidth, top: box.top};
        }"""
    )
    top = focused.pop("top")
    assert focused == {
        "text": "本文へ移動",
        "href": "#main",
        "outline": "solid",
        "width": "3px",
    }
    assert 0 <= top < PHONE[1]  # moved into view when focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
