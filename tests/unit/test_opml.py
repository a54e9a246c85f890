"""OPML in and out: round trip, ids for imported feeds, hostile documents."""

from __future__ import annotations

import pytest

from aggregator.errors import UsageError
from aggregator.models import Member
from aggregator.opml import build_opml, parse_opml, slug_for

MEMBERS = (
    Member(
        "yokosuka",
        "横須賀市",
        "https://govgov.ai/rss",
        "https://govgov.ai/",
        "神奈川県",
        ("municipality",),
    ),
    Member(
        "govgov-magazine",
        "自治体AI活用マガジン",
        "https://govgov.ai/m/m1/rss",
        tags=("magazine",),
    ),
)


def test_export_then_import_gives_back_the_same_members() -> None:
    assert parse_opml(build_opml("portal", MEMBERS), "x.opml", set()) == list(MEMBERS)


def test_export_is_standard_opml_with_prefecture_and_tags_as_categories() -> None:
    text = build_opml("portal", MEMBERS).decode()
    assert '<opml xmlns:kairan="urn:kairan:opml" version="2.0">' in text
    assert 'xmlUrl="https://govgov.ai/rss"' in text
    assert 'category="/神奈川県,municipality"' in text


def test_a_foreign_opml_gets_unique_slugs() -> None:
    doc = b"""<?xml version="1.0"?><opml version="2.0"><body>
      <outline text="Kobe News" xmlUrl="https://kobe-note.jp/rss"/>
      <outline text="Kobe News" xmlUrl="https://kobe.example/rss"/>
      <outline text="\xe5\xbf\x97\xe6\x9c\xa8\xe5\xb8\x82" xmlUrl="https://note.com/shiki_system/rss"
               category="/saitama, city"/>
      <outline text="folder"><outline text="nested" xmlUrl="https://n.example/feed"/></outline>
      <outline text="no feed here" htmlUrl="https://example.jp/"/>
    </body></opml>"""
    members = parse_opml(doc, "f.opml", {"nested"})
    assert [m.id for m in members] == [
        "kobe-news",
        "kobe-news-2",
        "shiki-system-note-com",
        "nested-2",
    ]
    assert members[2].name == "志木市"
    assert members[2].tags == ("saitama", "city")


def test_slug_falls_back_to_the_url_when_the_title_has_no_ascii() -> None:
    assert (
        slug_for("桑名市", "https://kuwana-city.note.jp/rss", set())
        == "kuwana-city-note-jp"
    )


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE o [<!ENTITY x "y">]><opml>&x;</opml>',
            "f.opml: ",
        ),
        (b"<html><body/></html>", "not an OPML document"),
        (b"<opml><body>", "not valid OPML"),
    ],
)
def test_bad_documents_are_refused(doc: bytes, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_opml(doc, "f.opml", set())
