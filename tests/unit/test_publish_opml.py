"""build_members_opml: OPML 2.0 read back by ElementTree and by Kairan's own importer.

The golden list (tests/fixtures/publish/members.opml) is rewritten after a
deliberate change with

    python -m tests.unit.test_publish_opml --regen

and the diff is then read like any other change.
"""

from __future__ import annotations

import email.utils
import sys
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aggregator.models import Member
from aggregator.opml import parse_opml
from notifiers.opml import ID, PREFECTURE, Outline, build_document, build_members_opml
from notifiers.published import PublishedMember, Snapshot
from tests.support.published import article, member, snapshot

GOLDEN = (
    Path(__file__).resolve().parent.parent / "fixtures" / "publish" / "members.opml"
)

YOKOSUKA = member(
    "yokosuka",
    name="横須賀市",
    feed_url="https://govgov.ai/rss",
    site="https://govgov.ai/",
    prefecture="神奈川県",
    tags=("municipality",),
)
MAGAZINE = member(
    "govgov-magazine",
    name="自治体AI活用マガジン",
    feed_url="https://govgov.ai/m/m0123456789ab/rss",
    site=None,
    tags=("magazine", "生成AI"),
)
KOBE = member(
    "kobe", name="神戸市", feed_url="https://kobe-note.jp/rss", prefecture="兵庫県"
)


def built(snap: Snapshot) -> bytes:
    artefact = build_members_opml(snap)
    assert artefact.path == "members.opml"
    assert artefact.media_type == "text/x-opml; charset=utf-8"
    return artefact.body


def root_of(body: bytes) -> ET.Element:
    assert body.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n")
    return ET.fromstring(body)  # noqa: S314 - our own output


def outlines(*members: PublishedMember) -> list[dict[str, str]]:
    root = root_of(built(snapshot(members=members)))
    return [dict(o.attrib) for o in root.iterfind("body/outline")]


def test_the_head_names_the_list_its_date_and_the_format() -> None:
    snap = snapshot([article(1)], title="自治体AI活用ポータル")
    root = root_of(built(snap))
    assert root.tag == "opml"
    assert root.get("version") == "2.0"
    head_element = root.find("head")
    assert head_element is not None
    head = {child.tag: child.text for child in head_element}
    assert head == {
        "title": "自治体AI活用ポータル",
        "dateModified": "Sun, 01 Nov 2026 01:00:00 GMT",
        "docs": "http://opml.org/spec2.opml",
    }
    modified = email.utils.parsedate_to_datetime(head["dateModified"] or "")
    assert modified == snap.built_at


def test_every_active_member_is_one_rss_outline_in_the_snapshots_order() -> None:
    # a paused member is not in snapshot.members, though its articles are
    snap = snapshot(
        [article(1, member_id="paused")], members=[YOKOSUKA, MAGAZINE, KOBE]
    )
    root = root_of(built(snap))
    body = root.find("body")
    assert body is not None
    assert [o.get(ID) for o in body] == [m.id for m in snap.members]
    assert [o.get("text") for o in body] == [
        "横須賀市",
        "神戸市",
        "自治体AI活用マガジン",
    ]
    assert all(o.get("type") == "rss" and len(o) == 0 for o in body)


def test_an_outline_has_the_standard_attributes_and_ours() -> None:
    [outline] = outlines(YOKOSUKA)
    assert outline == {
        "type": "rss",
        "text": "横須賀市",
        "title": "横須賀市",
        "xmlUrl": "https://govgov.ai/rss",
        "htmlUrl": "https://govgov.ai/",
        "category": "/神奈川県,municipality",
        ID: "yokosuka",
        PREFECTURE: "神奈川県",
    }


def test_without_a_site_prefecture_or_tags_those_attributes_are_left_out() -> None:
    [outline] = outlines(member("bare", site=None))
    assert set(outline) == {"type", "text", "title", "xmlUrl", ID}


@pytest.mark.parametrize(
    ("prefecture", "tags", "expected"),
    [
        ("神奈川県", (), "/神奈川県"),
        (None, ("magazine", "生成AI"), "magazine,生成AI"),
        # the prefecture is not repeated as a tag; blank and repeated tags go
        ("兵庫県", ("兵庫県", "city", "city", " "), "/兵庫県,city"),
        # "," separates categories and "/" their levels: inside a name, full-width
        (None, ("AI/DX", "議会,委員会"), "AI／DX,議会，委員会"),
        ("", (" ",), None),
    ],
)
def test_category_holds_the_prefecture_as_a_category_and_tags_as_tags(
    prefecture: str | None, tags: tuple[str, ...], expected: str | None
) -> None:
    [outline] = outlines(member("m", prefecture=prefecture, tags=tags))
    assert outline.get("category") == expected


def test_kairans_importer_reads_back_the_same_members() -> None:
    snap = snapshot(members=[YOKOSUKA, MAGAZINE, KOBE])
    imported = parse_opml(built(snap), "members.opml", set())
    assert imported == [
        Member(m.id, m.name, m.feed_url, m.site, m.prefecture, m.tags)
        for m in snap.members
    ]


HOSTILE = "A\x00B\x08C\x0bD\x1bE\x7fF\x85G\ud800H\udfffI\ufffeJ\uffffK"


def test_xml_illegal_characters_are_removed_and_markup_is_escaped() -> None:
    hostile = member(
        "hostile",
        name=f'<b class="x">&amp;{HOSTILE}</b>',
        feed_url=f"https://h.example.jp/rss?a=1&b=2{HOSTILE}",
        prefecture=HOSTILE,
        tags=(f"t{HOSTILE}", "]]>"),
    )
    body = built(snapshot(members=[hostile], title=f"<title>{HOSTILE}"))
    root = root_of(body)  # parses: nothing XML 1.0 forbids is left
    assert root.findtext("head/title") == "<title>ABCDEFGHIJK"
    [outline] = root.iterfind("body/outline")
    assert outline.get("text") == '<b class="x">&amp;ABCDEFGHIJK</b>'
    assert outline.get("xmlUrl") == "https://h.example.jp/rss?a=1&b=2ABCDEFGHIJK"
    assert outline.get("category") == "/ABCDEFGHIJK,tABCDEFGHIJK,]]>"
    assert b"<b " not in body


def test_newlines_in_attributes_survive_as_character_references() -> None:
    [outline] = outlines(member("nl", name="一行目\n二行目\t"))
    assert outline["text"] == "一行目\n二行目\t"  # not normalised to spaces on reading


def test_the_cli_export_uses_the_same_writer_without_a_date() -> None:
    root = root_of(
        build_document(
            "portal", [Outline("a", "A", "https://a.jp/rss", None, None, ())]
        )
    )
    assert root.find("head/dateModified") is None
    assert root.findtext("head/docs") == "http://opml.org/spec2.opml"
    assert [o.get(ID) for o in root.iterfind("body/outline")] == ["a"]


def test_date_modified_is_written_in_gmt_whatever_the_zone_given() -> None:
    local = datetime(2026, 12, 3, 9, 30, tzinfo=ZoneInfo("Asia/Tokyo"))
    root = root_of(build_document("t", [], modified=local))
    assert root.findtext("head/dateModified") == "Thu, 03 Dec 2026 00:30:00 GMT"


def test_the_same_snapshot_gives_the_same_bytes() -> None:
    assert built(golden_snapshot()) == built(golden_snapshot())


# --- golden file ---------------------------------------------------------------------


def golden_snapshot() -> Snapshot:
    return snapshot(
        [article(1), article(2, member_id="kobe")],
        members=[YOKOSUKA, MAGAZINE, KOBE],
    )


def test_golden_list() -> None:
    body = built(golden_snapshot())
    expected = GOLDEN.read_bytes()
    assert body.decode() == expected.decode()  # a readable diff first
    assert body == expected


def regenerate() -> None:
    GOLDEN.write_bytes(built(golden_snapshot()))


if __name__ == "__main__" and sys.argv[1:] == ["--regen"]:
    regenerate()


def test_a_very_long_tag_gets_a_short_unique_file_name() -> None:
    from notifiers.published import tag_slug

    long_a, long_b = "長" * 300, "長" * 299 + "短"
    slug_a, slug_b = tag_slug(long_a), tag_slug(long_b)
    assert len(slug_a.encode("utf-8")) <= 120
    assert slug_a != slug_b
    assert slug_a.startswith("長長長")
    assert tag_slug("municipality") == "municipality"
    assert tag_slug("a/b c") == "a-b-c"
