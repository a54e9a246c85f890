"""parse_json_feed: JSON Feed 1.0 and 1.1, read leniently, refused when not a feed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aggregator.errors import NotAFeedError, ParseError
from aggregator.fields import parse_date
from aggregator.jsonfeed_in import parse_json_feed
from aggregator.models import ParsedFeed
from tests.support import golden

URL = "https://example.jp/feed.json"
MEMBER = "kuwana"
V11 = "https://jsonfeed.org/version/1.1"


def parse(document: object) -> ParsedFeed:
    return parse_json_feed(json.dumps(document).encode(), URL, MEMBER)


def feed(*items: object, **fields: object) -> dict[str, object]:
    return {"version": V11, "title": "t", **fields, "items": list(items)}


@pytest.mark.parametrize("name", ["jsonfeed10.json", "jsonfeed11.json"])
def test_golden(name: str) -> None:
    case = golden.load(name)
    parsed = parse_json_feed(case.body, case.url, golden.MEMBER)
    assert golden.feed_to_dict(parsed) == case.expected


@pytest.mark.parametrize(
    ("version", "fmt"),
    [
        ("https://jsonfeed.org/version/1", "json10"),
        ("https://jsonfeed.org/version/1.1", "json11"),
        ("http://jsonfeed.org/version/1.1/", "json11"),
    ],
)
def test_versions(version: str, fmt: str) -> None:
    assert parse({"version": version, "items": []}).format == fmt


def test_a_str_is_accepted_too() -> None:
    parsed = parse_json_feed(json.dumps(feed({"id": "1"})), URL, MEMBER)
    assert parsed.entries[0].guid == "1"


def test_a_utf8_bom_is_tolerated() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(feed(), ensure_ascii=False).encode()
    assert parse_json_feed(body, URL, MEMBER).title == "t"


def test_invalid_utf8_is_replaced_and_warned_about() -> None:
    body = json.dumps(feed({"id": "1", "title": "a_b"})).encode().replace(b"_", b"\xff")
    parsed = parse_json_feed(body, URL, MEMBER)
    assert parsed.entries[0].title == "a\ufffdb"
    assert parsed.warnings == (
        "JSON Feed is not valid UTF-8: undecodable bytes replaced",
    )


def test_authors_11_win_over_author_10_and_the_feeds_apply_to_items() -> None:
    parsed = parse(
        feed(
            {
                "id": "1",
                "authors": [{"url": "x"}, {"name": "二人目"}],
                "author": {"name": "old"},
            },
            {"id": "2"},
            authors=[{"name": "市", "avatar": "/a.png"}],
        )
    )
    first, second = parsed.entries
    assert (first.author, first.author_avatar) == ("二人目", None)
    assert (second.author, second.author_avatar) == ("市", "https://example.jp/a.png")


def test_text_fields_are_escaped_into_the_html_fields() -> None:
    item = {"id": "1", "content_text": "1 < 2 & <b>", "summary": "a > b"}
    entry = parse(feed(item)).entries[0]
    assert entry.content_html == "1 &lt; 2 &amp; &lt;b&gt;"
    assert entry.summary_html == "a &gt; b"


def test_content_html_wins_over_content_text() -> None:
    item = {"id": "1", "content_html": "<p>x</p>", "content_text": "x"}
    assert parse(feed(item)).entries[0].content_html == "<p>x</p>"


def test_wrong_types_are_treated_as_missing() -> None:
    item = {"id": True, "url": 5, "title": ["x"], "tags": "one", "date_published": 1}
    entry = parse(feed(item, title=None, home_page_url={})).entries[0]
    assert (entry.guid, entry.link, entry.title, entry.tags) == (None, None, None, ())
    assert entry.published is None


def test_numeric_ids_become_strings() -> None:
    assert [e.guid for e in parse(feed({"id": 7}, {"id": " 8 "})).entries] == ["7", "8"]


def test_control_characters_and_lone_surrogates_are_stripped() -> None:
    body = (
        '{"version": "https://jsonfeed.org/version/1.1", "items": '
        '[{"id": "a\\u0000b", "title": "x\\u0001y\\ud800z\\tw"}]}'
    )
    entry = parse_json_feed(body, URL, MEMBER).entries[0]
    assert entry.guid == "ab"
    assert entry.title == "xyz\tw"


def test_items_that_are_not_objects_are_skipped_with_a_warning() -> None:
    parsed = parse(feed({"id": "1"}, "junk", 3))
    assert [e.guid for e in parsed.entries] == ["1"]
    assert parsed.warnings == ("skipped 2 items that are not objects",)


def test_missing_items_is_an_empty_feed_with_a_warning() -> None:
    parsed = parse({"version": V11, "title": "空"})
    assert parsed.entries == ()
    assert parsed.warnings == ("JSON Feed has no items array: read as an empty feed",)


def test_items_that_are_not_an_array_are_a_parse_error() -> None:
    with pytest.raises(ParseError, match="items is not an array") as raised:
        parse({"version": V11, "items": {"id": "1"}})
    assert type(raised.value) is ParseError


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            "not json",
            "not a feed: invalid JSON (Expecting value at line 1, column 1)",
        ),
        ("[1, 2]", "not a feed: JSON that is not an object"),
        ('{"items": []}', "not a feed: JSON without a jsonfeed.org version"),
        (
            '{"version": 2, "items": []}',
            "not a feed: JSON without a jsonfeed.org version",
        ),
        (
            '{"version": "https://jsonfeed.org/version/2", "items": []}',
            "not a feed: unsupported JSON Feed version 'https://jsonfeed.org/version/2'",
        ),
        ("[" * 100_000, "not a feed: JSON nested too deeply"),
    ],
)
def test_not_a_json_feed(document: str, problem: str) -> None:
    with pytest.raises(NotAFeedError) as raised:
        parse_json_feed(document, URL, MEMBER)
    assert raised.value.problem == problem
    assert (raised.value.member_id, raised.value.url) == (MEMBER, URL)


# --- parse_date, shared with parse.py ----------------------------------------------

JST = timezone(timedelta(hours=9))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-12-01T09:00:00+09:00", datetime(2024, 12, 1, 9, tzinfo=JST)),
        ("2024-12-01T00:00:00Z", datetime(2024, 12, 1, tzinfo=UTC)),
        ("2024-12-01t00:00:00z", datetime(2024, 12, 1, tzinfo=UTC)),
        (
            "2024-12-01T09:00:00.123456789+09:00",
            datetime(2024, 12, 1, 9, 0, 0, 123456, tzinfo=JST),
        ),
        ("2024-12-01T09:00:00", datetime(2024, 12, 1, 9)),  # noqa: DTZ001
        ("2024-12-01", datetime(2024, 12, 1)),  # noqa: DTZ001
        ("Sun, 01 Dec 2024 09:00:00 +0900", datetime(2024, 12, 1, 9, tzinfo=JST)),
        ("Sun, 01 Dec 2024 09:00:00 -0000", datetime(2024, 12, 1, 9)),  # noqa: DTZ001
        ("Sun, 01 Dec 2024 09:00:00 kst", datetime(2024, 12, 1, 9, tzinfo=JST)),
        ("Sun, 32 Dec 2024 09:00:00 +0900", None),
        ("Sun, 01 Dec 2024 09:00:00 +9999", None),
        ("  ", None),
        ("yesterday", None),
    ],
)
def test_parse_date(raw: str, expected: datetime | None) -> None:
    # a naive datetime never equals an aware one, so == also checks the zone
    assert parse_date(raw) == expected
