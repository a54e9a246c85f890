"""notifiers.atom.build_feeds: RFC 4287 documents, RFC 5005 archives, per member/tag.

Every document is read back with feedparser (no bozo) and validated with lxml
against RFC 4287's own schema: Appendix B, copied into
tests/fixtures/publish/atom.rnc and converted with rnc2rng when the tests start,
plus the three Schematron rules the appendix embeds (authors on the feed or on
every entry; an alternate link or a content on every entry).

The golden documents (tests/fixtures/publish/atom/, every artefact of
golden_snapshot()) are rewritten after a deliberate change with

    python -m tests.unit.test_atom --regen

and the diff is then read like any other change.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import re
import shutil
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
import rnc2rng
from lxml import etree, isoschematron

from notifiers.atom import ATOM_NS, HISTORY_NS, MEDIA_NS, MEDIA_TYPE, build_feeds
from notifiers.published import (
    Artefact,
    PublishedArticle,
    PublishedMember,
    PublishedSite,
    Snapshot,
)

PUBLISH = Path(__file__).resolve().parent.parent / "fixtures" / "publish"
GOLDEN = PUBLISH / "atom"
NS = {"a": ATOM_NS, "fh": HISTORY_NS, "media": MEDIA_NS}
BASE = "https://kairan.example.jp/"
T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
SIZE = 3
# Characters XML 1.0 forbids (§2.2), the C1 controls, and a lone surrogate.
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\ud800-\udfff]")
ABSOLUTE = re.compile(r"(https?://[^/\s]+|tag:)")


# -- building snapshots ---------------------------------------------------------


def site(**overrides: Any) -> PublishedSite:
    fields: dict[str, Any] = {
        "title": "回覧板",
        "base_url": BASE,
        "language": "ja",
        "timezone": "Asia/Tokyo",
        "generator": "Kairan 0.1.0",
    }
    fields.update(overrides)
    return PublishedSite(**fields)


def member(member_id: str, **overrides: Any) -> PublishedMember:
    fields: dict[str, Any] = {
        "name": f"{member_id}市",
        "feed_url": f"https://note.com/{member_id}/rss",
        "site": f"https://note.com/{member_id}",
        "prefecture": "兵庫県",
        "tags": (),
        "articles": 0,
        "last_article": None,
        "updated": None,
        "failing": None,
    }
    fields.update(overrides)
    return PublishedMember(id=member_id, **fields)


def article(n: int, member_id: str = "kobe", **overrides: Any) -> PublishedArticle:
    """Article n: published n hours after T0, seen ten minutes later."""
    published = overrides.pop("published", T0 + timedelta(hours=n))
    fields: dict[str, Any] = {
        "id": f"https://note.com/{member_id}/n/n{n:012x}",
        "title": f"お知らせ {n}",
        "link": f"https://note.com/{member_id}/n/n{n:012x}",
        "published": published,
        "first_seen": published + timedelta(minutes=10),
        "updated": published,
        "author": f"{member_id}市",
        "summary_html": f"<p>抜粋 {n}</p>",
        "content_html": None,
        "thumbnail": None,
        "tags": (),
    }
    fields.update(overrides)
    return PublishedArticle(member_id=member_id, **fields)


MEMBERS = (member("kobe"), member("yokosuka", prefecture="神奈川県"))


def snapshot(
    articles: Iterable[PublishedArticle],
    members: tuple[PublishedMember, ...] = MEMBERS,
    **site_fields: Any,
) -> Snapshot:
    ordered = tuple(sorted(articles, key=lambda a: a.published, reverse=True))
    return Snapshot(
        site=site(**site_fields),
        members=members,
        articles=ordered,
        built_at=max((a.updated for a in ordered), default=T0),
    )


def build(snap: Snapshot, size: int = SIZE) -> dict[str, Artefact]:
    artefacts = build_feeds(snap, size)
    by_path = {a.path: a for a in artefacts}
    assert len(by_path) == len(artefacts), "two artefacts share a path"
    return by_path


def golden_snapshot() -> Snapshot:
    """Three members, an edit, HTML content, a thumbnail, an entry without link."""
    members = (
        member("kobe", name="神戸市", prefecture="兵庫県", tags=("政令市",)),
        member(
            "yokosuka",
            name="横須賀市",
            prefecture="神奈川県",
            site="https://govgov.ai/",
            tags=("防災 / 訓練",),
        ),
        member(
            "govgov-magazine",
            name="自治体AI活用マガジン",
            feed_url="https://govgov.ai/m/m8f7256e10f43/rss",
            site=None,
            prefecture=None,
            tags=("magazine",),
        ),
    )
    articles = [
        article(1, "kobe", thumbnail="https://assets.st-note.com/1.png?width=800"),
        article(2, "yokosuka", tags=("防災",), author="市民協働課"),
        article(
            3,
            "kobe",
            updated=T0 + timedelta(days=3),
            content_html='<p>全文 <a href="https://note.com/kobe">神戸市</a></p>',
        ),
        article(4, "govgov-magazine", link=None, tags=("AI", "防災")),
        article(5, "yokosuka", tags=("防災 / 訓練",)),
    ]
    return snapshot(
        articles,
        members,
        icon=BASE + "icon.png",
        logo=BASE + "logo.png",
        websub_hub="https://hub.example.jp/",
    )


# -- reading documents back -----------------------------------------------------


def xml(body: bytes) -> Any:
    return etree.fromstring(body)


def ids(body: bytes) -> list[str]:
    return [str(i) for i in xml(body).xpath("a:entry/a:id/text()", namespaces=NS)]


def links(body: bytes, rel: str) -> list[str]:
    found = xml(body).xpath("a:link[@rel=$rel]/@href", namespaces=NS, rel=rel)
    return [str(href) for href in found]


def feed_text(body: bytes, path: str) -> str:
    return str(xml(body).xpath(f"string({path})", namespaces=NS))


def without(element: Any, tags: Iterable[str]) -> bytes:
    """`element` serialised without its children named `tags`."""
    pruned = copy.deepcopy(element)
    for tag in tags:
        for child in pruned.findall(f"{{{ATOM_NS}}}{tag}"):
            pruned.remove(child)
    return bytes(etree.tostring(pruned))


def entry(body: bytes, entry_id: str) -> Any:
    found = xml(body).xpath("a:entry[a:id=$id]", namespaces=NS, id=entry_id)
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def rfc4287() -> tuple[Any, Any]:
    """The RELAX NG schema of RFC 4287 Appendix B and its Schematron rules."""
    converted = rnc2rng.dumps(rnc2rng.load(str(PUBLISH / "atom.rnc")))
    # rnc2rng declares `xmlns:local=""` for the compact syntax's `local` prefix;
    # Namespaces in XML 1.0 forbids an empty prefixed namespace, and the converted
    # grammar never uses the prefix (it writes <nsName ns=""/>), so it goes.
    grammar = etree.fromstring(converted.replace('xmlns:local=""', "").encode())
    relaxng = etree.RelaxNG(grammar)
    return relaxng, _schematron(grammar)


def _schematron(grammar: Any) -> Any:
    """The appendix's annotations as ISO Schematron, one pattern per rule.

    The old (ascc.net) Schematron validator in lxml is deprecated; the rules are
    plain XPath 1.0 and read the same under ISO Schematron. A rule per pattern,
    because only the first matching rule of a pattern fires for a node.
    """
    iso = "http://purl.oclc.org/dsdl/schematron"
    schema = etree.Element(f"{{{iso}}}schema")
    etree.SubElement(schema, f"{{{iso}}}ns", prefix="atom", uri=ATOM_NS)
    old = {"s": "http://www.ascc.net/xml/schematron"}
    for rule in grammar.xpath("//s:rule", namespaces=old):
        pattern = etree.SubElement(schema, f"{{{iso}}}pattern")
        new_rule = etree.SubElement(
            pattern, f"{{{iso}}}rule", context=rule.get("context")
        )
        for check in rule.xpath("s:assert", namespaces=old):
            etree.SubElement(
                new_rule, f"{{{iso}}}assert", test=check.get("test")
            ).text = check.text
    assert len(schema) == 4, "RFC 4287 Appendix B has three Schematron rules"
    return isoschematron.Schematron(schema)


def assert_valid(artefact: Artefact, rfc4287: tuple[Any, Any]) -> None:
    relaxng, schematron = rfc4287
    assert artefact.media_type == MEDIA_TYPE
    assert artefact.body.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n")
    document = xml(artefact.body)
    assert relaxng.validate(document), (artefact.path, relaxng.error_log)
    assert schematron.validate(document), (artefact.path, schematron.error_log)
    parsed = feedparser.parse(artefact.body)
    assert not parsed.bozo, (artefact.path, parsed.get("bozo_exception"))
    assert parsed.version == "atom10"
    assert len(parsed.entries) == len(ids(artefact.body))


# -- validity and goldens -------------------------------------------------------


def hostile_snapshot() -> Snapshot:
    controls = "\x00\x01\x08\x0b\x1b\x7f\x85\ufffe\uffff\ud800"
    nasty = f"]]> <script>alert(1)</script> {controls} end"
    members = (
        member("kobe", name=f"神戸{nasty}", tags=(f"<tag>{nasty}",), site=None),
        member("yokosuka", prefecture="神奈川\x00県"),
    )
    articles = [
        article(
            1,
            title=nasty,
            author=nasty,
            summary_html=f"<p>{nasty}</p>",
            content_html=f"<p>{nasty}]]></p>",
            tags=(nasty, "\x00", " "),
        ),
        # feed data that is not an absolute http(s) URL never reaches a link
        article(2, link="/n/relative", thumbnail="javascript:alert(1)"),
        article(3, "yokosuka", link="//evil.example/x", thumbnail="data:image/png,x"),
    ]
    return snapshot(articles, members)


@pytest.mark.parametrize("make", [golden_snapshot, hostile_snapshot])
def test_every_document_is_valid_atom(make: Any, rfc4287: tuple[Any, Any]) -> None:
    artefacts = build(make(), size=2)
    for artefact in artefacts.values():
        assert_valid(artefact, rfc4287)


def test_golden_documents() -> None:
    artefacts = build(golden_snapshot(), size=2)
    on_disk = sorted(p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*.atom"))
    assert sorted(artefacts) == on_disk
    for path, artefact in artefacts.items():
        assert artefact.body.decode() == (GOLDEN / path).read_text(encoding="utf-8")


def regenerate() -> None:
    shutil.rmtree(GOLDEN, ignore_errors=True)
    for path, artefact in build(golden_snapshot(), size=2).items():
        target = GOLDEN / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(artefact.body)


def test_same_snapshot_gives_the_same_bytes_whatever_the_input_order() -> None:
    snap = golden_snapshot()
    shuffled = list(snap.articles)
    random.Random(7).shuffle(shuffled)
    reordered = dataclasses.replace(
        snap, articles=tuple(shuffled), members=snap.members[::-1]
    )
    first = build(snap)
    assert {p: a.body for p, a in build(snap).items()} == {
        p: a.body for p, a in first.items()
    }
    assert {p: a.body for p, a in build(reordered).items()} == {
        p: a.body for p, a in first.items()
    }


# -- feed.atom ------------------------------------------------------------------


def test_feed_atom_holds_the_latest_by_published_newest_first() -> None:
    # arrival order is the reverse of publication: published decides the order
    articles = [
        article(n, first_seen=T0 + timedelta(days=30 - n)) for n in (1, 4, 2, 5, 3)
    ]
    body = build(snapshot(articles))["feed.atom"].body
    assert ids(body) == [article(n).id for n in (5, 4, 3)]


def test_feed_metadata_is_absolute_and_derived_from_the_base_url() -> None:
    snap = golden_snapshot()
    body = build(snap)["feed.atom"].body
    feed = xml(body)
    assert feed.get("{http://www.w3.org/XML/1998/namespace}lang") == "ja"
    assert feed_text(body, "a:id") == BASE + "feed.atom"
    assert feed_text(body, "a:title") == "回覧板"
    assert links(body, "self") == [BASE + "feed.atom"]
    assert links(body, "alternate") == [BASE]
    assert feed.xpath("a:link[@rel='alternate']/@type", namespaces=NS) == ["text/html"]
    assert feed_text(body, "a:generator") == "Kairan 0.1.0"
    assert feed_text(body, "a:icon") == BASE + "icon.png"
    assert feed_text(body, "a:logo") == BASE + "logo.png"
    # the newest `updated` among its entries: article 3 was edited on day 3
    assert feed_text(body, "a:updated") == "2026-11-05T00:00:00Z"


def test_feed_updated_comes_from_entries_never_from_the_clock() -> None:
    snap = snapshot([article(1), article(2)])
    later = dataclasses.replace(snap, built_at=T0 + timedelta(days=400))
    body = build(snap)["feed.atom"].body
    assert build(later)["feed.atom"].body == body
    assert feed_text(body, "a:updated") == "2026-11-02T02:00:00Z"
    assert "icon" not in body.decode()


def test_entry_carries_every_field() -> None:
    snap = golden_snapshot()
    body = build(snap, size=5)["feed.atom"].body
    first = entry(body, article(1).id)
    text = {
        tag: str(first.xpath(f"string(a:{tag})", namespaces=NS))
        for tag in ("title", "published", "updated", "summary")
    }
    assert text == {
        "title": "お知らせ 1",
        "published": "2026-11-02T01:00:00Z",
        "updated": "2026-11-02T01:00:00Z",
        "summary": "<p>抜粋 1</p>",
    }
    assert first.xpath("a:link[@rel='alternate']/@href", namespaces=NS) == [
        article(1).link
    ]
    assert first.xpath("a:summary/@type", namespaces=NS) == ["html"]
    assert first.xpath("a:author/a:name/text()", namespaces=NS) == ["kobe市"]
    assert first.xpath("a:author/a:uri/text()", namespaces=NS) == [
        "https://note.com/kobe"
    ]
    assert first.xpath("a:category/@term", namespaces=NS) == ["政令市", "兵庫県"]
    assert first.xpath("media:thumbnail/@url", namespaces=NS) == [
        "https://assets.st-note.com/1.png?width=800"
    ]
    assert not first.xpath("a:content", namespaces=NS)
    parsed = feedparser.parse(body)
    assert parsed.entries[-1].media_thumbnail == [
        {"url": "https://assets.st-note.com/1.png?width=800"}
    ]


def test_content_is_html_when_the_article_has_it() -> None:
    body = build(golden_snapshot(), size=5)["feed.atom"].body
    third = entry(body, article(3).id)
    assert third.xpath("a:content/@type", namespaces=NS) == ["html"]
    assert third.xpath("string(a:content)", namespaces=NS) == (
        '<p>全文 <a href="https://note.com/kobe">神戸市</a></p>'
    )


def test_an_entry_without_link_carries_its_summary_as_content() -> None:
    # RFC 4287 §4.1.2: an alternate link or a content, one at least
    body = build(golden_snapshot(), size=5)["feed.atom"].body
    fourth = entry(body, article(4, "govgov-magazine").id)
    assert not fourth.xpath("a:link", namespaces=NS)
    assert fourth.xpath("string(a:content)", namespaces=NS) == "<p>抜粋 4</p>"


def test_source_names_the_member_feed() -> None:
    body = build(golden_snapshot(), size=5)["feed.atom"].body
    source = entry(body, article(2, "yokosuka").id).xpath("a:source", namespaces=NS)[0]
    assert (
        source.xpath("string(a:id)", namespaces=NS) == "https://note.com/yokosuka/rss"
    )
    assert source.xpath("string(a:title)", namespaces=NS) == "横須賀市"
    assert source.xpath("a:link[@rel='self']/@href", namespaces=NS) == [
        "https://note.com/yokosuka/rss"
    ]
    assert source.xpath("a:link[@rel='alternate']/@href", namespaces=NS) == [
        "https://govgov.ai/"
    ]
    assert source.xpath("string(a:updated)", namespaces=NS) == "2026-11-02T02:00:00Z"
    magazine = entry(body, article(4, "govgov-magazine").id)
    assert not magazine.xpath("a:source/a:link[@rel='alternate']", namespaces=NS)
    assert not magazine.xpath("a:author/a:uri", namespaces=NS)


def test_categories_are_member_tags_article_tags_and_prefecture_once_each() -> None:
    members = (member("kobe", tags=("防災", "兵庫県")),)
    body = build(snapshot([article(1, tags=("防災", "DX", "DX"))], members))[
        "feed.atom"
    ].body
    terms = entry(body, article(1).id).xpath("a:category/@term", namespaces=NS)
    assert terms == ["防災", "兵庫県", "DX"]


def test_an_article_of_a_member_not_in_the_snapshot_has_no_source() -> None:
    artefacts = build(snapshot([article(1, "paused", tags=("DX",)), article(2)]))
    stray = entry(artefacts["feed.atom"].body, article(1, "paused").id)
    assert not stray.xpath("a:source", namespaces=NS)
    assert stray.xpath("a:category/@term", namespaces=NS) == ["DX"]
    assert "members/paused.atom" not in artefacts
    assert ids(artefacts["tags/DX.atom"].body) == [article(1, "paused").id]


# -- stability across edits -----------------------------------------------------


def test_an_edit_changes_updated_and_content_never_the_id_or_the_order() -> None:
    articles = [article(n) for n in range(1, 5)]
    before = build(snapshot(articles))["feed.atom"].body
    edited = dataclasses.replace(
        articles[1],
        updated=T0 + timedelta(days=9),
        content_html="<p>訂正しました</p>",
    )
    after = build(snapshot([*articles[:1], edited, *articles[2:]]))["feed.atom"].body
    # article 2 stays outside the latest three, its edit notwithstanding
    assert ids(after) == ids(before) == [article(n).id for n in (4, 3, 2)]
    old, new = entry(before, edited.id), entry(after, edited.id)
    assert old.xpath("string(a:updated)", namespaces=NS) == "2026-11-02T02:00:00Z"
    assert new.xpath("string(a:updated)", namespaces=NS) == "2026-11-11T00:00:00Z"
    changing = ("updated", "content", "source")  # source/updated is the entry's
    assert without(old, changing) == without(new, changing)
    assert new.xpath("string(a:content)", namespaces=NS) == "<p>訂正しました</p>"
    assert new.xpath("string(a:published)", namespaces=NS) == "2026-11-02T02:00:00Z"
    assert feed_text(after, "a:updated") == "2026-11-11T00:00:00Z"
    for other in (article(3).id, article(4).id):
        assert etree.tostring(entry(before, other)) == etree.tostring(
            entry(after, other)
        )


# -- hostile text ---------------------------------------------------------------


def test_hostile_text_never_reaches_the_output_raw() -> None:
    for artefact in build(hostile_snapshot()).values():
        text = artefact.body.decode("utf-8")  # strict: no lone surrogate got out
        assert not FORBIDDEN.search(text), artefact.path
        assert "<script" not in text
        assert "]]>" not in text
        xml(artefact.body)  # well-formed
    body = build(hostile_snapshot())["feed.atom"].body
    parsed = feedparser.parse(body)
    hostile = next(e for e in parsed.entries if e.id == article(1).id)
    assert hostile.title == "]]> <script>alert(1)</script>  end"
    assert hostile.author == "]]> <script>alert(1)</script>  end"
    terms = [tag.term for tag in hostile.tags]
    assert "]]> <script>alert(1)</script>  end" in terms
    assert "" not in terms


def test_links_are_always_absolute() -> None:
    for make in (golden_snapshot, hostile_snapshot):
        for artefact in build(make()).values():
            document = xml(artefact.body)
            urls = document.xpath(
                "//@href | //@url | //a:id/text() | //a:uri/text() | //a:icon/text()"
                " | //a:logo/text()",
                namespaces=NS,
            )
            assert urls
            for url in urls:
                assert ABSOLUTE.match(str(url)), (artefact.path, url)
    body = build(hostile_snapshot())["feed.atom"].body
    assert "relative" not in body.decode()
    assert "javascript" not in body.decode()
    assert not entry(body, article(2).id).xpath(
        "a:link | media:thumbnail", namespaces=NS
    )


# -- RFC 5005 archives ----------------------------------------------------------


def arrivals(count: int) -> list[PublishedArticle]:
    """Articles whose arrival order (n) differs from publication order."""
    return [
        article(
            n,
            published=T0 + timedelta(hours=(n * 5) % count),
            first_seen=T0 + timedelta(days=n),
        )
        for n in range(1, count + 1)
    ]


def test_archive_pages_are_complete_pages_of_arrival_order() -> None:
    articles = arrivals(8)
    artefacts = build(snapshot(articles))
    pages = sorted(p for p in artefacts if p.startswith("archive/"))
    assert pages == ["archive/1.atom", "archive/2.atom"]  # 8 // 3: two complete
    by_arrival = [a.id for a in articles]
    for number, path in enumerate(pages, start=1):
        body = artefacts[path].body
        held = by_arrival[(number - 1) * SIZE : number * SIZE]
        newest_first = sorted(
            (a for a in articles if a.id in held),
            key=lambda a: a.published,
            reverse=True,
        )
        assert ids(body) == [a.id for a in newest_first]
        assert xml(body).xpath("count(fh:archive)", namespaces=NS) == 1
        assert feed_text(body, "a:id") == BASE + "feed.atom"  # one logical feed
        assert links(body, "self") == [BASE + path]
        assert links(body, "current") == [BASE + "feed.atom"]
    assert links(artefacts["archive/1.atom"].body, "prev-archive") == []
    assert links(artefacts["archive/1.atom"].body, "next-archive") == [
        BASE + "archive/2.atom"
    ]
    assert links(artefacts["archive/2.atom"].body, "prev-archive") == [
        BASE + "archive/1.atom"
    ]
    assert links(artefacts["archive/2.atom"].body, "next-archive") == []
    feed = artefacts["feed.atom"].body
    assert links(feed, "prev-archive") == [BASE + "archive/2.atom"]
    assert not xml(feed).xpath("fh:archive", namespaces=NS)
    for artefact in artefacts.values():
        assert b"complete" not in artefact.body


def test_no_archive_before_a_page_is_complete() -> None:
    artefacts = build(snapshot(arrivals(2)))
    assert not [p for p in artefacts if p.startswith("archive/")]
    assert links(artefacts["feed.atom"].body, "prev-archive") == []


def test_archive_pages_keep_their_bytes_as_new_articles_arrive() -> None:
    articles = arrivals(7)
    before = build(snapshot(articles))
    newer = [article(n, first_seen=T0 + timedelta(days=100 + n)) for n in range(20, 22)]
    one_more = build(snapshot([*articles, newer[0]]))  # page 3 still incomplete
    for path in ("archive/1.atom", "archive/2.atom"):
        assert one_more[path].body == before[path].body
    assert "archive/3.atom" not in one_more
    completed = build(snapshot([*articles, *newer]))  # page 3 now complete
    assert completed["archive/1.atom"].body == before["archive/1.atom"].body
    assert links(completed["feed.atom"].body, "prev-archive") == [
        BASE + "archive/3.atom"
    ]
    # RFC 5005 §4: page 2 gains its next-archive link, and nothing else changes
    page2 = xml(completed["archive/2.atom"].body)
    (forward,) = page2.xpath("a:link[@rel='next-archive']", namespaces=NS)
    assert forward.get("href") == BASE + "archive/3.atom"
    forward.getparent().remove(forward)
    assert etree.tostring(page2) == etree.tostring(xml(before["archive/2.atom"].body))


def test_editing_an_archived_article_rewrites_only_its_own_page() -> None:
    articles = arrivals(6)
    before = build(snapshot(articles))
    edited = dataclasses.replace(articles[0], updated=T0 + timedelta(days=50))
    after = build(snapshot([edited, *articles[1:]]))
    assert after["archive/1.atom"].body != before["archive/1.atom"].body
    assert after["archive/2.atom"].body == before["archive/2.atom"].body


# -- per-member and per-tag documents -------------------------------------------


def test_member_feeds_hold_that_members_latest_articles() -> None:
    members = (*MEMBERS, member("shiki", prefecture="埼玉県"))
    articles = [article(n) for n in range(1, 6)] + [article(9, "yokosuka")]
    artefacts = build(snapshot(articles, members))
    kobe = artefacts["members/kobe.atom"].body
    assert ids(kobe) == [article(n).id for n in (5, 4, 3)]
    assert feed_text(kobe, "a:id") == BASE + "members/kobe.atom"
    assert feed_text(kobe, "a:title") == "kobe市 | 回覧板"
    assert links(kobe, "self") == [BASE + "members/kobe.atom"]
    assert links(kobe, "alternate") == [BASE + "members/kobe.html"]
    assert links(kobe, "prev-archive") == []
    assert ids(artefacts["members/yokosuka.atom"].body) == [article(9, "yokosuka").id]
    # a member with no article yet: a valid, empty feed whose bytes stay put
    shiki = artefacts["members/shiki.atom"].body
    assert ids(shiki) == []
    assert feed_text(shiki, "a:updated") == "1970-01-01T00:00:00Z"
    assert build(snapshot(articles[:2], members))["members/shiki.atom"].body == shiki


def test_tag_feeds_for_member_tags_article_tags_and_prefectures() -> None:
    members = (
        member("kobe", tags=("防災 / 訓練",)),
        member("yokosuka", prefecture="神奈川県", tags=()),
    )
    articles = [
        article(1, tags=("AI 活用",)),
        article(2, "yokosuka", tags=("AI 活用",)),
        article(3, "yokosuka"),
    ]
    artefacts = build(snapshot(articles, members))
    tags = sorted(p for p in artefacts if p.startswith("tags/"))
    assert tags == [
        "tags/AI-活用.atom",
        "tags/兵庫県.atom",
        "tags/神奈川県.atom",
        "tags/防災---訓練.atom",
    ]
    drill = artefacts["tags/防災---訓練.atom"].body
    assert ids(drill) == [article(1).id]
    assert feed_text(drill, "a:title") == "防災 / 訓練 | 回覧板"
    encoded = "%E9%98%B2%E7%81%BD---%E8%A8%93%E7%B7%B4"
    assert links(drill, "self") == [f"{BASE}tags/{encoded}.atom"]
    assert feed_text(drill, "a:id") == f"{BASE}tags/{encoded}.atom"
    assert links(drill, "alternate") == [f"{BASE}tags/{encoded}.html"]
    assert ids(artefacts["tags/AI-活用.atom"].body) == [
        article(2, "yokosuka").id,
        article(1).id,
    ]
    assert ids(artefacts["tags/神奈川県.atom"].body) == [
        article(3, "yokosuka").id,
        article(2, "yokosuka").id,
    ]


def test_tag_feeds_hold_the_latest_feed_size_articles() -> None:
    artefacts = build(snapshot([article(n) for n in range(1, 8)]))
    assert ids(artefacts["tags/兵庫県.atom"].body) == [article(n).id for n in (7, 6, 5)]


def test_hub_link_in_every_document_only_when_configured() -> None:
    articles = arrivals(7)
    with_hub = build(snapshot(articles, websub_hub="https://hub.example.jp/"))
    assert len(with_hub) > 5
    for artefact in with_hub.values():
        assert links(artefact.body, "hub") == ["https://hub.example.jp/"]
    for artefact in build(snapshot(articles)).values():
        assert links(artefact.body, "hub") == []


# -- arguments ------------------------------------------------------------------


def test_feed_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="feed_size"):
        build_feeds(snapshot([article(1)]), 0)


def test_a_naive_datetime_is_refused() -> None:
    naive = article(1, published=datetime(2026, 11, 2, 0, 0))  # noqa: DTZ001
    with pytest.raises(ValueError, match="naive"):
        build_feeds(snapshot([naive]), SIZE)


if __name__ == "__main__" and sys.argv[1:] == ["--regen"]:
    regenerate()
