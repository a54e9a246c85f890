"""portal: pages, landmarks, headings, links, escaping, notes, the form, dates, bytes.

The same pages in a real browser with axe-core: tests/browser/test_portal_a11y.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from posixpath import dirname, join, normpath
from urllib.parse import unquote, urlsplit

import lxml.html
import pytest
from starlette.datastructures import FormData

from aggregator.models import Cadence
from aggregator.publish import build_artefacts
from aggregator.signup import parse_signup
from notifiers.portal import CSS_TYPE, HTML_TYPE, STYLESHEET, build_portal
from notifiers.published import Artefact, Snapshot, tag_slug
from tests.support import builders
from tests.support.published import article, member, snapshot

SUBSCRIBE = "https://kairan.example.jp/subscribe"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
PREFECTURE = '"><b>県'


def sample(**site: object) -> Snapshot:
    """Two prefectures, a member tag, article tags, a failing member, a thumbnail."""
    members = [
        member(
            "yokosuka",
            name="横須賀市",
            prefecture="神奈川県",
            tags=("中核市",),
            articles=3,
            last_article=article(3).published,
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
        article(1, tags=("防災",)),
        article(2, member_id="kobe", tags=("子育て", "防災")),
        article(3, title="市長の記者会見", thumbnail=None),
    ]
    return snapshot(articles, members, **site)


def pages(snap: Snapshot, feed_size: int = 50) -> dict[str, Artefact]:
    return {a.path: a for a in build_portal(snap, feed_size)}


def tree(artefact: Artefact) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(artefact.body)


def text(element: lxml.html.HtmlElement) -> str:
    return " ".join(element.text_content().split())


def html_pages(built: dict[str, Artefact]) -> Iterator[tuple[str, Artefact]]:
    return ((p, a) for p, a in built.items() if p.endswith(".html"))


# --- what is built -----------------------------------------------------------------


def test_one_page_per_member_tag_and_prefecture_and_a_stylesheet() -> None:
    built = pages(sample())

    slugs = ["神奈川県", "埼玉県", "兵庫県", "中核市", "子育て", "防災"]
    assert sorted(built) == sorted(
        [
            STYLESHEET,
            "index.html",
            "members/yokosuka.html",
            "members/kobe.html",
            "members/shiki.html",
            *(f"tags/{s}.html" for s in slugs),
        ]
    )
    assert built[STYLESHEET].media_type == CSS_TYPE
    assert {a.media_type for _, a in html_pages(built)} == {HTML_TYPE}


def test_the_same_snapshot_gives_the_same_bytes() -> None:
    first = build_portal(sample(subscribe_url=SUBSCRIBE), 50)
    second = build_portal(sample(subscribe_url=SUBSCRIBE), 50)

    assert first == second


def test_unknown_language_timezone_or_feed_size_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        build_portal(sample(language="fr"), 50)
    with pytest.raises(ValueError, match="timezone"):
        build_portal(sample(timezone="Mars/Olympus"), 50)
    with pytest.raises(ValueError, match="feed_size"):
        build_portal(sample(), 0)


# --- accessibility structure -------------------------------------------------------


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_page_has_lang_landmarks_a_skip_link_and_headings_in_order(
    language: str,
) -> None:
    for path, page in html_pages(pages(sample(language=language))):
        doc = tree(page)
        assert doc.get("lang") == language, path
        for landmark in ("header", "nav", "main", "footer"):
            assert len(doc.findall(f".//{landmark}")) == 1, (path, landmark)
        first_link = doc.body.find(".//a")
        assert first_link is not None
        assert first_link.get("href") == "#main", path
        assert doc.find(".//main").get("id") == "main"
        levels = [int(h.tag[1]) for h in doc.iter("h1", "h2", "h3", "h4", "h5", "h6")]
        assert levels[0] == 1, path
        assert levels.count(1) == 1, path
        assert all(b <= a + 1 for a, b in itertools.pairwise(levels)), (path, levels)


def test_every_img_has_alt_and_is_lazy_and_no_page_has_script_or_inline_style() -> None:
    built = pages(sample(subscribe_url=SUBSCRIBE))
    images = 0
    for path, page in html_pages(built):
        doc = tree(page)
        for img in doc.iter("img"):
            images += 1
            # decorative: the card's title names the article (WCAG H67)
            assert img.get("alt") == "", path
            assert img.get("loading") == "lazy"
        assert not list(doc.iter("script", "style", "iframe", "object")), path
        assert doc.xpath("//@style") == [], path
        assert not [a for a in doc.xpath("//@*") if a.attrname.startswith("on")], path
    assert images > 0


def test_nothing_external_but_thumbnails_article_links_member_sites_and_the_form() -> (
    None
):
    snap = sample(subscribe_url=SUBSCRIBE)
    allowed_src = {a.thumbnail for a in snap.articles if a.thumbnail}
    allowed_href = {a.link for a in snap.articles} | {
        m.site for m in snap.members if m.site
    }
    allowed_href.add(SUBSCRIBE)
    for path, page in html_pages(pages(snap)):
        doc = tree(page)
        for link in doc.iter("link"):
            assert not urlsplit(link.get("href")).scheme, (path, link.get("href"))
        for img in doc.iter("img"):
            assert img.get("src") in allowed_src
        for url in doc.xpath("//a/@href | //form/@action"):
            assert not urlsplit(url).scheme or url in allowed_href, (path, url)
    css = pages(snap)[STYLESHEET].body.decode()
    assert "url(" not in css
    assert "@import" not in css


@pytest.mark.parametrize("language", ["ja", "en"])
def test_every_relative_link_reaches_a_published_file(language: str) -> None:
    """Relative links (portal pages, feeds, OPML) resolve, from any directory, to
    a file that `kairan publish` writes: the site works from file:// too."""
    snap = sample(language=language, subscribe_url=SUBSCRIBE)
    published = {a.path: a for a in build_artefacts(snap, 50)}
    for path, page in html_pages(published):
        doc = tree(page)
        ids = set(doc.xpath("//@id"))
        for url in doc.xpath("//a/@href | //link/@href"):
            parts = urlsplit(url)
            if parts.scheme:
                continue
            if not parts.path:  # an in-page link
                assert parts.fragment in ids, (path, url)
                continue
            target = normpath(join(dirname(path), unquote(parts.path)))
            assert target in published, (path, url)
            if parts.fragment:
                assert parts.fragment in tree(published[target]).xpath("//@id")


def test_head_announces_the_feeds_and_each_page_its_own_first() -> None:
    built = pages(sample())

    def alternates(path: str) -> list[tuple[str, str]]:
        return [
            (link.get("type"), link.get("href"))
            for link in tree(built[path]).iter("link")
            if link.get("rel") == "alternate"
        ]

    site_feeds = [
        ("application/atom+xml", "feed.atom"),
        ("application/feed+json", "feed.json"),
    ]
    assert alternates("index.html") == site_feeds
    assert alternates("members/kobe.html") == [
        ("application/atom+xml", "../members/kobe.atom"),
        *((t, f"../{h}") for t, h in site_feeds),
    ]
    assert alternates("tags/防災.html")[0] == (
        "application/atom+xml",
        "../tags/%E9%98%B2%E7%81%BD.atom",
    )
    footer = text(tree(built["index.html"]).find(".//footer"))
    assert "members.opml" in built["index.html"].body.decode()
    assert "Atom" in footer
    assert "JSON Feed" in footer


# --- content -------------------------------------------------------------------------


def test_cards_show_title_link_member_prefecture_date_and_plain_excerpt() -> None:
    snap = sample()
    doc = tree(pages(snap)["index.html"])

    cards = doc.find_class("card")
    assert [text(c.find("h3")) for c in cards] == ["市長の記者会見", "記事 2", "記事 1"]
    newest = cards[0]
    assert newest.find("h3/a").get("href") == snap.articles[0].link
    meta = newest.find_class("meta")[0]
    assert [(a.text, a.get("href")) for a in meta.iter("a")] == [
        ("横須賀市", "members/yokosuka.html"),
        ("神奈川県", "tags/%E7%A5%9E%E5%A5%88%E5%B7%9D%E7%9C%8C.html"),
    ]
    assert text(newest.find_class("excerpt")[0]) == "記事 3 の要約です。"
    assert newest.find("img") is None  # article 3 has no thumbnail
    assert cards[1].find("img").get("src") == "https://assets.example.jp/2.jpg"


def test_dates_are_in_the_site_timezone() -> None:
    # 15:30 UTC on 2 December is 00:30 on 3 December in Tokyo
    late = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)
    one = article(1, published=late, updated=late)
    ja = tree(pages(snapshot([one]))["index.html"])
    en = tree(pages(snapshot([one], language="en"))["index.html"])
    new_york = tree(
        pages(snapshot([one], language="en", timezone="America/New_York"))["index.html"]
    )

    def card_time(doc: lxml.html.HtmlElement) -> tuple[str | None, str]:
        time = doc.find_class("meta")[0].find("time")
        return time.get("datetime"), time.text

    assert card_time(ja) == ("2026-12-03T00:30:00+09:00", "2026年12月3日")
    assert card_time(en) == ("2026-12-03T00:30:00+09:00", "3 Dec 2026")
    assert card_time(new_york) == ("2026-12-02T10:30:00-05:00", "2 Dec 2026")
    # the last update: snapshot.built_at, with the time of day
    assert text(ja.find(".//footer/p")) == "最終更新: 2026年12月3日 00:30"
    assert text(en.find(".//footer/p")) == "Last updated: 3 Dec 2026, 00:30 (JST)"


def test_directory_lists_every_member_with_counts_and_a_visible_failing_note() -> None:
    snap = sample()
    built = pages(snap)
    doc = tree(built["index.html"])

    entries = {
        text(li.find_class("name")[0]): li
        for li in doc.get_element_by_id("members").iter("li")
    }
    assert list(entries) == [m.name for m in snap.members]  # every one, in order
    assert text(entries["横須賀市"].find_class("facts")[0]) == (
        "神奈川県 · 記事 3件 · 最新記事 2026年11月1日"
    )
    assert (
        text(entries["志木市"].find_class("facts")[0]) == "埼玉県 · 記事 0件 · 記事なし"
    )
    # a note in words, not a colour: the label and the reason are text
    note = "注意: フィードを取得できていません（gone）"
    assert [text(p) for p in entries["神戸市"].find_class("failing")] == [note]
    assert not entries["横須賀市"].find_class("failing")
    kobe = tree(built["members/kobe.html"])
    assert [text(p) for p in kobe.find_class("failing")] == [note]


def test_hostile_feed_text_is_escaped_and_unsafe_urls_are_dropped() -> None:
    hostile = [
        article(
            1,
            title=HOSTILE,
            link="javascript:alert(1)",
            thumbnail="javascript:alert(2)",
            summary_html="<p>ok</p><script>alert(3)</script>",
            tags=(HOSTILE, "\x00\x1f  "),
        ),
        article(2, thumbnail="http://tracker.example.net/pixel.gif"),  # CSP: refused
        article(3, thumbnail="http://kairan.example.jp/own.png"),  # same origin
    ]
    members = [member("yokosuka", name=HOSTILE, prefecture=PREFECTURE)]
    built = pages(snapshot(hostile, members, base_url="http://kairan.example.jp/"))

    for path, page in html_pages(built):
        body = page.body.decode()
        assert "<script" not in body, path
        assert "<img src=x" not in body, path
        assert "javascript:" not in body, path
        assert "<b>" not in body, path
        doc = tree(page)
        assert not [a for a in doc.xpath("//@*") if a.attrname.startswith("on")], path
    index = tree(built["index.html"])
    cards = index.find_class("card")
    assert text(cards[2].find("h3")) == HOSTILE  # shown as text, not as a link
    assert cards[2].find("h3/a") is None
    assert [c.find("img") is not None for c in cards] == [True, False, False]
    # the blank tag makes no page; the hostile one is a safe file name
    assert sorted(p for p in built if p.startswith("tags/")) == sorted(
        [f"tags/{tag_slug(HOSTILE)}.html", f"tags/{tag_slug(PREFECTURE)}.html"]
    )
    assert "<" not in tag_slug(HOSTILE)


def test_untitled_articles_and_articles_of_unpublished_members() -> None:
    paused = article(1, member_id="paused", title=" \n ", author="休止中の町")
    doc = tree(pages(snapshot([paused], members=[]))["index.html"])

    card = doc.find_class("card")[0]
    assert text(card.find("h3")) == "（無題）"
    meta = card.find_class("meta")[0]
    assert not list(meta.iter("a"))  # no page to link to
    assert text(meta).startswith("休止中の町")


def test_member_and_tag_pages_list_their_newest_feed_size_articles() -> None:
    many = [article(n, tags=("防災",)) for n in range(1, 8)]
    snap = snapshot(many, [member("yokosuka", name="横須賀市", articles=7)])
    built = pages(snap, feed_size=3)

    for path in ("index.html", "members/yokosuka.html", "tags/防災.html"):
        doc = tree(built[path])
        titles = [text(c.find("h3")) for c in doc.find_class("card")]
        assert titles == ["記事 7", "記事 6", "記事 5"], path
    member_page = tree(built["members/yokosuka.html"])
    assert "全7件のうち、新しい3件" in text(member_page.find(".//main"))
    tag_page = tree(built["tags/防災.html"])
    assert "全7件のうち、新しい3件" in text(tag_page.find(".//main"))


def test_prefectures_in_jis_order_then_tags_by_name() -> None:
    doc = tree(pages(sample())["index.html"])
    browse = doc.get_element_by_id("browse")

    lists = [[a.text for a in ul.iter("a")] for ul in browse.find_class("topics")]
    assert lists == [["埼玉県", "神奈川県", "兵庫県"], ["中核市", "子育て", "防災"]]
    counts = [text(s) for s in browse.find_class("count")]
    assert counts[:3] == ["(0)", "(2)", "(1)"]


def test_tags_sharing_a_slug_share_one_page_under_one_name() -> None:
    built = pages(snapshot([article(1, tags=("a/b",)), article(2, tags=("a-b",))]))

    assert [p for p in built if p.startswith("tags/")] == ["tags/a-b.html"]
    assert text(tree(built["tags/a-b.html"]).find(".//h1")) == "「a-b」の記事"
    titles = [
        text(c.find("h3")) for c in tree(built["tags/a-b.html"]).find_class("card")
    ]
    assert titles == ["記事 2", "記事 1"]


def test_english_pages() -> None:
    doc = tree(pages(sample(language="en"))["members/yokosuka.html"])

    assert doc.get("lang") == "en"
    assert text(doc.find(".//main//h2")) == "Latest articles"
    assert (
        text(doc.find_class("facts")[0]) == "神奈川県 · 3 articles · latest 1 Nov 2026"
    )
    assert doc.find(".//title").text == "横須賀市 | 自治体AI活用ポータル"


# --- the subscribe form ------------------------------------------------------------


def test_no_form_without_a_subscribe_url() -> None:
    for path, page in html_pages(pages(sample())):
        assert tree(page).find(".//form") is None, path
        assert 'href="#subscribe"' not in page.body.decode(), path


def test_the_form_posts_what_post_subscribe_reads(tmp_path: Path) -> None:
    built = pages(sample(subscribe_url=SUBSCRIBE))
    settings = dataclasses.replace(
        builders.settings(tmp_path),
        members=(builders.member("kobe", "https://kobe.example.jp/rss"),),
    )

    index = tree(built["index.html"]).find(".//form")
    assert (index.get("method"), index.get("action")) == ("post", SUBSCRIBE)
    labels = {label.get("for") for label in index.iter("label") if label.get("for")}
    email = index.find(".//input[@type='email']")
    assert email.get("id") in labels
    assert email.get("required") is not None
    schedules = [i.get("value") for i in index.iter("input") if i.name == "schedule"]
    assert schedules == [str(c) for c in Cadence]
    assert index.find(".//input[@type='checkbox']") is None  # every member

    kobe = tree(built["members/kobe.html"]).find(".//form")
    boxes = kobe.findall(".//input[@type='checkbox']")
    assert [(b.name, b.get("value"), b.checked) for b in boxes] == [
        ("members", "kobe", True)
    ]
    # what the browser would post, as aggregator/signup.py reads it
    fields = dict(kobe.form_values()) | {"email": "taro@example.jp"}
    form = FormData(list(fields.items()))
    signup, _, errors = parse_signup(form, settings)
    assert errors == {}
    assert signup is not None
    assert signup.filters.members == ("kobe",)
    assert str(signup.schedule.cadence) == "immediate"

    prefecture = tree(built["tags/兵庫県.html"]).find(".//form")
    assert [
        b.get("value") for b in prefecture.iter("input") if b.name == "members"
    ] == ["kobe"]


def test_the_stylesheet_has_a_focus_style_and_a_skip_link_style() -> None:
    css = pages(sample())[STYLESHEET].body.decode()

    assert re.search(r":focus-visible\{outline:3px solid", css)
    assert ".skip:focus{" in css
