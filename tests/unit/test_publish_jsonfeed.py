"""build_json_feed: JSON Feed 1.1 checked against a JSON Schema written from the spec.

The schema is tests/fixtures/publish/jsonfeed-1.1.schema.json (draft 2020-12). The
golden feed (tests/fixtures/publish/feed.json) is rewritten after a deliberate
change with

    python -m tests.unit.test_publish_jsonfeed --regen

and the diff is then read like any other change.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from jsonschema import (
    Draft202012Validator,
    FormatChecker,
)

from notifiers.atom import build_feeds
from notifiers.jsonfeed import build_json_feed
from notifiers.published import Snapshot
from tests.support.published import START, article, edited, member, snapshot

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "publish"
SCHEMA = json.loads((FIXTURES / "jsonfeed-1.1.schema.json").read_text("utf-8"))
GOLDEN = FIXTURES / "feed.json"
SIZE = 50
ATOM = "http://www.w3.org/2005/Atom"

# jsonschema checks "uri" and "date-time" only with optional packages (rfc3987,
# rfc3339-validator) that are not installed, and would then pass anything: these
# two checkers are ours. A URL may be an IRI (JSON Feed means WHATWG URLs).
FORMATS = FormatChecker(formats=())
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f<>\"{}|\\^`]+")
_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.I)


def is_url(value: object) -> bool:
    if not isinstance(value, str):
        return True  # "format" applies to strings only
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    has_host = parts.scheme == "mailto" or bool(parts.netloc)
    return bool(_URL.fullmatch(value)) and has_host


def is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


FORMATS.checks("uri")(is_url)
FORMATS.checks("date-time")(is_date)
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FORMATS)


def built(snap: Snapshot, size: int = SIZE) -> bytes:
    artefact = build_json_feed(snap, size)
    assert artefact.path == "feed.json"
    assert artefact.media_type == "application/feed+json; charset=utf-8"
    return artefact.body


def valid(body: bytes) -> dict[str, Any]:
    """The feed, decoded, after checking it against the schema."""
    document = json.loads(body.decode("utf-8"))
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(document)
    ]
    assert errors == []
    assert isinstance(document, dict)
    return document


def items(snap: Snapshot, size: int = SIZE) -> list[dict[str, Any]]:
    result = valid(built(snap, size))["items"]
    assert isinstance(result, list)
    return result


# --- the schema itself -------------------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


MINIMAL = {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": []}
ITEM = {"id": "1", "content_text": "x"}


@pytest.mark.parametrize(
    "broken",
    [
        {"title": "t", "items": []},
        {**MINIMAL, "version": "https://jsonfeed.org/version/1"},
        {**MINIMAL, "feed_url": "not a url"},
        {**MINIMAL, "hubs": [{"type": "WebSub"}]},
        {**MINIMAL, "_1x": {}},
        {**MINIMAL, "_a.b": {}},
        {**MINIMAL, "_ext": {"_inner": 1}},
        {**MINIMAL, "home_page": "https://example.jp/"},
        {**MINIMAL, "items": [{"content_text": "no id"}]},
        {**MINIMAL, "items": [{"id": 1, "content_text": "id is a number"}]},
        {**MINIMAL, "items": [{"id": "1", "summary": "no content"}]},
        {**MINIMAL, "items": [{**ITEM, "authors": [{}]}]},
        {**MINIMAL, "items": [{**ITEM, "date_published": "2026-12-01 03:00"}]},
        {**MINIMAL, "items": [{**ITEM, "tags": ["a", 1]}]},
        {**MINIMAL, "items": [{**ITEM, "attachments": [{"url": "https://a.jp/"}]}]},
    ],
)
def test_the_schema_refuses_what_the_spec_forbids(broken: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(broken)


def test_the_schema_accepts_the_specs_own_example() -> None:
    example = {
        **MINIMAL,
        "home_page_url": "https://example.org/",
        "feed_url": "https://example.org/feed.json",
        "items": [
            {
                "id": "2",
                "content_text": "This is a second item.",
                "url": "https://example.org/second-item",
            },
            {
                "id": "1",
                "content_html": "<p>Hello, world!</p>",
                "url": "https://example.org/initial-post",
            },
        ],
        "_blue_shed": {
            "about": "https://blueshed-podcasts.com/json-feed-extension-docs"
        },
    }
    assert VALIDATOR.is_valid(example)


# --- the feed ----------------------------------------------------------------------


def test_the_feed_describes_the_site() -> None:
    document = valid(built(snapshot([article(1)], title="回覧板")))
    assert next(iter(document)) == "version"  # "should appear at the very top"
    assert document["version"] == "https://jsonfeed.org/version/1.1"
    assert document["title"] == "回覧板"
    assert document["home_page_url"] == "https://kairan.example.jp/"
    assert document["feed_url"] == "https://kairan.example.jp/feed.json"
    assert document["language"] == "ja"
    assert {"icon", "favicon", "hubs"}.isdisjoint(document)


def test_logo_is_the_icon_and_icon_the_favicon() -> None:
    snap = snapshot(
        [article(1)],
        logo="https://k.example.jp/logo.png",
        icon="https://k.example.jp/fav.png",
    )
    document = valid(built(snap))
    assert document["icon"] == "https://k.example.jp/logo.png"
    assert document["favicon"] == "https://k.example.jp/fav.png"


def test_hubs_only_when_a_websub_hub_is_configured() -> None:
    hub = "https://hub.example.jp/"
    assert valid(built(snapshot([article(1)], websub_hub=hub)))["hubs"] == [
        {"type": "WebSub", "url": hub}
    ]
    assert "hubs" not in valid(built(snapshot([article(1)])))


def test_the_latest_articles_newest_published_first_as_the_atom_feed_takes_them() -> (
    None
):
    # passed in a jumble; the snapshot orders them as publish.py does
    jumble = sorted(range(1, 61), key=lambda n: n * 37 % 61)
    snap = snapshot([article(n) for n in jumble])
    got = [i["id"] for i in items(snap, SIZE)]
    assert got == [a.id for a in snap.articles[:SIZE]]
    assert got == [article(n).id for n in range(60, 10, -1)]


def test_the_same_entries_as_feed_atom_with_ties_broken_the_same_way() -> None:
    # a poll of an undated feed credits many articles the same first-seen time
    same = START + timedelta(days=9)
    arts = [
        article(n, published=same, first_seen=same, updated=same) for n in range(20)
    ]
    arts += [article(n) for n in range(20, 70)]
    snap = snapshot(arts)
    [atom] = [a for a in build_feeds(snap, SIZE) if a.path == "feed.atom"]
    entries = ET.fromstring(atom.body).iterfind(f"{{{ATOM}}}entry")  # noqa: S314
    atom_ids = [entry.findtext(f"{{{ATOM}}}id") for entry in entries]
    assert [i["id"] for i in items(snap)] == atom_ids
    assert len(atom_ids) == SIZE


def test_a_feed_size_below_one_is_a_bug() -> None:
    with pytest.raises(ValueError, match="feed_size must be at least 1, not 0"):
        build_json_feed(snapshot([article(1)]), 0)


def test_an_empty_snapshot_is_a_valid_feed_with_no_items() -> None:
    assert valid(built(snapshot()))["items"] == []


def test_an_item_carries_every_field() -> None:
    art = article(
        5,
        author="横須賀市",
        tags=("生成AI", "議事録"),
        published=START,
        updated=START + timedelta(days=1, microseconds=5),  # to the second
    )
    yokosuka = member(
        "yokosuka", name="横須賀市", prefecture="神奈川県", tags=("municipality",)
    )
    [item] = items(snapshot([art], members=[yokosuka]))
    assert item == {
        "id": art.id,
        "url": art.link,
        "title": "記事 5",
        "content_html": "<p>記事 5 の本文です。</p>",
        "summary": "記事 5 の要約です。",
        "image": "https://assets.example.jp/5.jpg",
        "date_published": "2026-11-01T00:00:00Z",
        "date_modified": "2026-11-02T00:00:00Z",
        "authors": [{"name": "横須賀市", "url": "https://yokosuka.example.jp/"}],
        "tags": ["municipality", "神奈川県", "生成AI", "議事録"],
        "_kairan": {
            "member": {
                "id": "yokosuka",
                "name": "横須賀市",
                "prefecture": "神奈川県",
                "feed_url": "https://yokosuka.example.jp/rss",
                "site": "https://yokosuka.example.jp/",
            }
        },
    }


def test_without_content_the_excerpt_is_the_content_and_the_summary_is_its_text() -> (
    None
):
    art = article(
        1, content_html=None, summary_html="<p>A &amp; B</p><p>&lt;C&gt;&#12354;</p>"
    )
    [item] = items(snapshot([art]))
    assert item["content_html"] == "<p>A &amp; B</p><p>&lt;C&gt;&#12354;</p>"
    assert item["summary"] == "A & B <C>あ"


def test_optional_fields_are_left_out_rather_than_empty() -> None:
    art = article(
        1, link=None, thumbnail=None, title=" ", summary_html="", content_html=None
    )
    [item] = items(snapshot([art]))
    assert set(item) == {
        "id",
        "content_html",
        "date_published",
        "date_modified",
        "authors",
        "_kairan",
    }
    assert item["content_html"] == ""


def test_tags_are_deduplicated_in_order_and_blank_ones_dropped() -> None:
    kobe = member("kobe", prefecture="兵庫県", tags=("兵庫県", "city", " "))
    art = article(1, member_id="kobe", tags=("city", "防災", "", "防災 "))
    [item] = items(snapshot([art], members=[kobe]))
    assert item["tags"] == ["兵庫県", "city", "防災"]


def test_an_author_other_than_the_member_gets_no_url() -> None:
    magazine = member("govgov", name="自治体AI活用マガジン")
    art = article(1, member_id="govgov", author="デジタル推進室")
    [item] = items(snapshot([art], members=[magazine]))
    assert item["authors"] == [{"name": "デジタル推進室"}]


def test_an_article_of_an_unlisted_member_names_it_by_id_only() -> None:
    # a paused member is not in snapshot.members; its stored articles still are
    [item] = items(snapshot([article(1, member_id="paused")], members=[]))
    assert item["_kairan"] == {
        "member": {
            "id": "paused",
            "name": None,
            "prefecture": None,
            "feed_url": None,
            "site": None,
        }
    }
    assert item["authors"] == [{"name": "Paused"}]
    assert "tags" not in item


# --- stability -----------------------------------------------------------------------


def test_ids_are_the_articles_own_and_survive_a_rebuild_with_more_articles() -> None:
    arts = [article(n) for n in range(1, 6)]
    before = [i["id"] for i in items(snapshot(arts))]
    after = [i["id"] for i in items(snapshot([*arts, article(6)]))]
    assert before == [a.id for a in reversed(arts)]
    assert after == [article(6).id, *before]


def test_an_edit_changes_date_modified_and_not_the_order_or_the_id() -> None:
    arts = [article(n) for n in range(1, 4)]
    before = items(snapshot(arts))
    change = edited(arts[0], hours=48)
    after = items(snapshot([change, *arts[1:]]))
    assert [i["id"] for i in after] == [i["id"] for i in before]  # not moved up
    old, new = before[-1], after[-1]
    assert new["date_modified"] == "2026-11-03T01:00:00Z" != old["date_modified"]
    assert {k for k in old if old[k] != new[k]} == {"date_modified"}


def test_the_same_snapshot_gives_the_same_bytes() -> None:
    snap = golden_snapshot()
    assert built(snap) == built(snap)
    assert built(snap).endswith(b"}\n")
    assert not built(snap).endswith(b"\n\n")


# --- hostile text --------------------------------------------------------------------

HOSTILE = "A\x00B\x08C\x0bD\x1bE\x7fF\x85G\ud800H\udfffI\ufffeJ\uffffK"


def test_control_characters_and_lone_surrogates_are_removed_everywhere() -> None:
    yokosuka = member(
        "yokosuka", name=f"横須賀{HOSTILE}", prefecture=HOSTILE, tags=(HOSTILE,)
    )
    art = article(
        1,
        title=HOSTILE,
        author=HOSTILE,
        summary_html=f"<p>{HOSTILE}</p>",
        content_html=f"<p>{HOSTILE}</p>\r\n\t",
        tags=(HOSTILE,),
    )
    body = built(snapshot([art], members=[yokosuka]))  # encodes: no lone surrogate left
    [item] = valid(body)["items"]
    assert item["title"] == item["summary"] == "ABCDEFGHIJK"
    assert item["content_html"] == "<p>ABCDEFGHIJK</p>\n\t"  # tab and LF kept
    assert item["authors"] == [{"name": "ABCDEFGHIJK"}]
    assert item["tags"] == ["ABCDEFGHIJK"]
    assert item["_kairan"]["member"]["name"] == "横須賀ABCDEFGHIJK"
    assert not re.search(rb"\\u00[01]|\\u007f|\\ud[89a-f]", body)


def test_markup_in_plain_text_fields_stays_text_and_the_json_stays_json() -> None:
    title = '</script><script>alert("x")</script>\\"},{"id":"injected'
    [item] = items(snapshot([article(1, title=title)]))
    assert item["title"] == title  # plain text by the spec: readers escape it


def test_line_and_paragraph_separators_are_written_as_escapes() -> None:
    body = built(snapshot([article(1, title="a\u2028b\u2029c")]))
    assert "\u2028".encode() not in body
    assert "\u2029".encode() not in body
    assert b"a\\u2028b\\u2029c" in body
    assert valid(body)["items"][0]["title"] == "a\u2028b\u2029c"


def test_text_is_utf_8_not_escaped() -> None:
    body = built(snapshot([article(1, title="生成AI")]))
    assert "生成AI".encode() in body


# --- golden file ---------------------------------------------------------------------


def golden_snapshot() -> Snapshot:
    yokosuka = member(
        "yokosuka",
        name="横須賀市",
        feed_url="https://govgov.ai/rss",
        site="https://govgov.ai/",
        prefecture="神奈川県",
        tags=("municipality",),
    )
    magazine = member(
        "govgov-magazine",
        name="自治体AI活用マガジン",
        feed_url="https://govgov.ai/m/m0123456789ab/rss",
        site=None,
        tags=("magazine",),
    )
    kobe = member(
        "kobe", name="神戸市", feed_url="https://kobe-note.jp/rss", prefecture="兵庫県"
    )
    arts = [
        article(1, member_id="yokosuka", author="横須賀市", tags=("生成AI",)),
        article(
            2,
            member_id="govgov-magazine",
            author="横須賀市 デジタル・ガバメント推進室",
            content_html=None,
            thumbnail=None,
            summary_html='<p>議事録の要約を&quot;試行&quot;しました。</p><p><a href="https://govgov.ai/n/n0123">続きをみる</a></p>',
        ),
        edited(article(3, member_id="kobe", author="神戸市", link=None), hours=30),
        article(4, member_id="paused", author="休止中の町"),
    ]
    return snapshot(
        arts,
        members=[yokosuka, magazine, kobe],
        logo="https://kairan.example.jp/logo.png",
        icon="https://kairan.example.jp/favicon.png",
        websub_hub="https://hub.example.jp/",
    )


def test_golden_feed() -> None:
    body = built(golden_snapshot())
    valid(body)
    expected = GOLDEN.read_bytes()
    assert json.loads(body) == json.loads(expected)  # a readable diff first
    assert body == expected


def regenerate() -> None:
    GOLDEN.write_bytes(built(golden_snapshot()))


if __name__ == "__main__" and sys.argv[1:] == ["--regen"]:
    regenerate()
