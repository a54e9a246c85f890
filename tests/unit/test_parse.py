"""parse_feed: feedparser formats, charsets, hostile XML, dates, note.com fields."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aggregator.errors import HostileXMLError, NotAFeedError, ParseError
from aggregator.models import ParsedEntry, ParsedFeed
from aggregator.parse import parse_feed
from tests.support import golden

URL = "https://example.jp/feed/rss.xml"
MEMBER = "yokosuka"
JST = timezone(timedelta(hours=9))
# circled one, hashigo-daka, tatsu-saki and the fullwidth tilde: CP932 only
CP932_ONLY = "\u2460\u9ad9\ufa11\uff5e"
JAPANESE = "横須賀市の生成AI活用、議事録作成を効率化"


def parse(body: bytes, content_type: str | None = None) -> ParsedFeed:
    return parse_feed(body, content_type, URL, MEMBER)


def rss(items: str, channel: str = "<title>t</title>", declaration: str = "") -> str:
    """An RSS 2.0 document; `declaration` goes inside the XML declaration."""
    head = f'<?xml version="1.0"{declaration}?>\n'
    return f'{head}<rss version="2.0"><channel>{channel}{items}</channel></rss>'


def one_entry(body: bytes, content_type: str | None = None) -> ParsedEntry:
    feed = parse(body, content_type)
    assert len(feed.entries) == 1
    return feed.entries[0]


def item(inner: str) -> bytes:
    return rss(f"<item>{inner}</item>").encode()


# --- golden files ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "rss091_netscape.xml",
        "rss10_rdf.xml",
        "rss20_full.xml",
        "rss20_note.xml",
        "atom03.xml",
        "atom10_xmlbase.xml",
        "jsonfeed10.json",
        "jsonfeed11.json",
    ],
)
def test_golden(name: str) -> None:
    case = golden.load(name)
    assert golden.feed_to_dict(case.parse()) == case.expected


def test_rss091_keeps_feedparsers_netscape_version_after_the_doctype_is_gone() -> None:
    assert golden.load("rss091_netscape.xml").parse().format == "rss091n"
    userland = b'<rss version="0.91"><channel><title>u</title></channel></rss>'
    assert parse(userland).format == "rss091u"


# --- note.com --------------------------------------------------------------------


def test_note_fields() -> None:
    feed = golden.load("rss20_note.xml").parse()
    first = feed.entries[0]
    assert first.thumbnail is not None
    assert first.thumbnail.startswith("https://assets.st-note.com/production/")
    assert first.thumbnail.endswith("?width=800")  # the element text, stripped
    assert first.author == "横須賀市 デジタル・ガバメント推進室"
    assert first.author_avatar is not None
    assert "&quality=85&" in first.author_avatar
    assert first.summary_html is not None
    assert first.summary_html.endswith(
        "<br/><a href='https://note.com/yokosuka_dx/n/n0123456789ab'>続きをみる</a>"
    )
    assert first.guid == first.link == "https://note.com/yokosuka_dx/n/n0123456789ab"
    assert first.published == datetime(2024, 12, 3, 10, 0, tzinfo=JST)
    assert feed.entries[2].thumbnail is None


@pytest.mark.parametrize(
    ("inner", "thumbnail"),
    [
        (
            '<media:thumbnail url=" https://x.jp/a.jpg " width="1"/>',
            "https://x.jp/a.jpg",
        ),
        (
            "<media:thumbnail>\n  /img/b.png\n</media:thumbnail>",
            "https://example.jp/img/b.png",
        ),
        (
            '<media:content url="https://x.jp/v.mp4" type="video/mp4"/>'
            '<media:content url="https://x.jp/c.png" type="image/png"/>',
            "https://x.jp/c.png",
        ),
        (
            '<media:content url="https://x.jp/d.jpg" medium="image"/>',
            "https://x.jp/d.jpg",
        ),
        (
            '<enclosure url="https://x.jp/e.mp3" type="audio/mpeg" length="1"/>'
            '<enclosure url="https://x.jp/e.jpg" type="image/jpeg" length="1"/>',
            "https://x.jp/e.jpg",
        ),
        (
            '<enclosure url="https://x.jp/f.pdf" type="application/pdf" length="1"/>',
            None,
        ),
    ],
)
def test_thumbnail_sources(inner: str, thumbnail: str | None) -> None:
    body = rss(f"<item><title>x</title>{inner}</item>").replace(
        "<rss ", '<rss xmlns:media="http://search.yahoo.com/mrss/" '
    )
    assert one_entry(body.encode()).thumbnail == thumbnail


# --- identity fields -------------------------------------------------------------


def test_missing_guid_and_link() -> None:
    entry = one_entry(item("<title>only a title</title>"))
    assert entry.guid is None
    assert entry.link is None
    assert entry.base == URL


def test_a_relative_permalink_guid_is_kept_as_given_and_is_no_link() -> None:
    entry = one_entry(item("<guid> 12345 </guid>"))
    assert entry.guid == "12345"
    assert entry.link is None


def test_a_permalink_guid_is_the_link_when_there_is_none() -> None:
    entry = one_entry(item("<guid>https://example.jp/posts/9</guid>"))
    assert entry.link == "https://example.jp/posts/9"
    not_permalink = one_entry(
        item('<guid isPermaLink="false">https://example.jp/posts/9</guid>')
    )
    assert not_permalink.guid == "https://example.jp/posts/9"
    assert not_permalink.link is None


def test_a_relative_link_is_resolved_against_the_document_url() -> None:
    entry = one_entry(item("<link>../posts/1.html</link><guid>p1</guid>"))
    assert entry.link == "https://example.jp/posts/1.html"
    assert entry.guid == "p1"


def test_an_atom_id_is_not_taken_for_a_link() -> None:
    body = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>a</title>'
        "<entry><id>https://example.jp/id/1</id><title>e</title></entry></feed>"
    )
    entry = one_entry(body.encode())
    assert entry.guid == "https://example.jp/id/1"
    assert entry.link is None


# --- content ---------------------------------------------------------------------


def test_content_encoded_and_description_are_kept_apart() -> None:
    body = rss(
        "<item><description>&lt;p&gt;short&lt;/p&gt;</description>"
        "<content:encoded><![CDATA[<p>long <img src='a.png'></p>]]></content:encoded>"
        "</item>"
    ).replace("<rss ", '<rss xmlns:content="http://purl.org/rss/1.0/modules/content/" ')
    entry = one_entry(body.encode())
    assert entry.summary_html == "<p>short</p>"
    assert entry.content_html == "<p>long <img src='a.png'></p>"


def test_content_alone_gives_no_summary() -> None:
    # feedparser copies the content into "summary"; that copy is not a summary
    body = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><title>a</title><entry><id>1</id>'
        '<content type="html">&lt;p&gt;body&lt;/p&gt;</content></entry></feed>'
    )
    entry = one_entry(body.encode())
    assert entry.content_html == "<p>body</p>"
    assert entry.summary_html is None


def test_control_characters_are_stripped_from_every_field() -> None:
    body = item(
        "<title>a\x01b\x00c\x1f\td</title>"
        "<description>x&#1;y &amp;#0; z\r\n</description>"
        "<guid>g\x08</guid><category>t\x0bag</category>"
    )
    entry = one_entry(body)
    assert entry.title == "abc\td"
    assert entry.summary_html is not None
    assert "\x01" not in entry.summary_html
    assert entry.summary_html.startswith("xy")
    assert entry.guid == "g"
    assert entry.tags == ("tag",)


def test_tags_are_category_terms_without_repeats() -> None:
    categories = "<category>AI</category><category> AI </category>"
    entry = one_entry(item(f"{categories}<category>自治体</category>"))
    assert entry.tags == ("AI", "自治体")


def test_ttl_is_read_when_it_is_an_integer() -> None:
    assert parse(rss("", "<title>t</title><ttl> 15 </ttl>").encode()).ttl_minutes == 15
    assert (
        parse(rss("", "<title>t</title><ttl>soon</ttl>").encode()).ttl_minutes is None
    )
    assert parse(rss("", "<title>t</title>").encode()).ttl_minutes is None


def test_a_feed_with_no_items_is_valid() -> None:
    feed = parse(
        rss("", "<title>空のフィード</title><link>https://example.jp/</link>").encode()
    )
    assert feed.entries == ()
    assert feed.title == "空のフィード"
    assert feed.link == "https://example.jp/"
    assert feed.warnings == ()


# --- dates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tue, 03 Dec 2024 10:00:00 +0900", datetime(2024, 12, 3, 10, 0, tzinfo=JST)),
        ("Tue, 03 Dec 2024 10:00:00 GMT", datetime(2024, 12, 3, 10, 0, tzinfo=UTC)),
        ("Tue, 03 Dec 2024 10:00:00 JST", datetime(2024, 12, 3, 10, 0, tzinfo=JST)),
        # RFC 5322 §3.3: "-0000" says the zone is unknown, so the time stays naive
        ("Tue, 03 Dec 2024 10:00:00 -0000", datetime(2024, 12, 3, 10, 0)),  # noqa: DTZ001
        ("Tue, 03 Dec 2024 10:00:00", datetime(2024, 12, 3, 10, 0)),  # noqa: DTZ001
        ("2024-12-03T10:00:00+09:00", datetime(2024, 12, 3, 10, 0, tzinfo=JST)),
        ("2024-12-03T01:00:00Z", datetime(2024, 12, 3, 1, 0, tzinfo=UTC)),
        ("2024-12-03T10:00:00", datetime(2024, 12, 3, 10, 0)),  # noqa: DTZ001
        # not clamped: normalise decides what a future date means
        ("Fri, 01 Jan 2099 00:00:00 +0000", datetime(2099, 1, 1, tzinfo=UTC)),
        # W3CDTF year-month: only feedparser reads it, and always as UTC
        ("2003-12", datetime(2003, 12, 1, tzinfo=UTC)),
        ("not a date", None),
        ("", None),
    ],
)
def test_pubdate(raw: str, expected: datetime | None) -> None:
    # a naive datetime never equals an aware one, so == also checks the zone
    entry = one_entry(item(f"<title>d</title><pubDate>{raw}</pubDate>"))
    assert entry.published == expected


def test_missing_dates_are_none() -> None:
    entry = one_entry(item("<title>no date</title>"))
    assert entry.published is None
    assert entry.updated is None


def test_dc_date_is_the_updated_date() -> None:
    body = rss(
        "<item><title>x</title><dc:date>2024-12-01T09:00:00+09:00</dc:date></item>"
    ).replace("<rss ", '<rss xmlns:dc="http://purl.org/dc/elements/1.1/" ')
    entry = one_entry(body.encode())
    assert entry.published is None
    assert entry.updated == datetime(2024, 12, 1, 9, 0, tzinfo=JST)


# --- charsets --------------------------------------------------------------------


def japanese_feed(declaration: str = "") -> str:
    channel = f"<title>{JAPANESE}</title>"
    items = (
        f"<item><title>{CP932_ONLY}</title><description>{JAPANESE}</description></item>"
    )
    return rss(items, channel, declaration)


def test_plain_shift_jis_would_garble_the_cp932_characters() -> None:
    garbled = CP932_ONLY.encode("cp932").decode("shift_jis", "replace")
    assert garbled != CP932_ONLY


@pytest.mark.parametrize(
    "label", ["Shift_JIS", "shift-jis", "x-sjis", "Windows-31J", "CP932"]
)
def test_shift_jis_in_the_xml_declaration_is_decoded_as_cp932(label: str) -> None:
    feed = parse(japanese_feed(f' encoding="{label}"').encode("cp932"))
    assert feed.title == JAPANESE
    assert feed.entries[0].title == CP932_ONLY
    assert feed.warnings == ()


@pytest.mark.parametrize("label", ["Shift_JIS", "x-sjis", "windows-31j"])
def test_shift_jis_in_the_content_type_is_decoded_as_cp932(label: str) -> None:
    body = japanese_feed().encode("cp932")
    feed = parse(body, f"application/rss+xml; charset={label}")
    assert feed.entries[0].title == CP932_ONLY
    assert feed.warnings == ()


def test_the_content_type_charset_wins_over_the_xml_declaration() -> None:
    body = japanese_feed(' encoding="ISO-8859-1"').encode("cp932")
    feed = parse(body, 'text/xml; charset="Shift_JIS"')
    assert feed.entries[0].title == CP932_ONLY
    assert feed.warnings == ()


def test_euc_jp() -> None:
    text = f"{JAPANESE}\u2460\ufa11"  # circled one and tatsu-saki are in JIS X 0213
    body = rss(f"<item><title>{text}</title></item>", declaration=' encoding="EUC-JP"')
    entry = one_entry(body.encode("euc_jis_2004"))
    assert entry.title == text


def test_euc_jp_three_byte_jis_x_0212() -> None:
    text = "\u4e02\u4e04"  # JIS X 0212 kanji, three bytes each in EUC-JP
    body = rss(f"<item><title>{text}</title></item>")
    entry = one_entry(body.encode("euc_jp"), "application/xml; charset=euc-jp")
    assert entry.title == text


@pytest.mark.parametrize(
    ("text", "codec"),
    [
        (JAPANESE, "iso2022_jp"),
        (f"{JAPANESE}\u2460\ufa11", "iso2022_jp_2004"),
        (f"{JAPANESE}\uff76\uff85", "iso2022_jp_ext"),  # half-width katakana
    ],
)
def test_iso_2022_jp(text: str, codec: str) -> None:
    body = rss(
        f"<item><title>{text}</title></item>", declaration=' encoding="ISO-2022-JP"'
    )
    assert one_entry(body.encode(codec)).title == text


@pytest.mark.parametrize(
    ("codec", "bom"),
    [
        ("utf-8", b"\xef\xbb\xbf"),
        ("utf-16-le", b"\xff\xfe"),
        ("utf-16-be", b"\xfe\xff"),
    ],
)
def test_a_byte_order_mark_decides(codec: str, bom: bytes) -> None:
    # the BOM outranks a charset that says otherwise
    body = bom + japanese_feed(' encoding="Shift_JIS"').encode(codec)
    feed = parse(body, "text/xml; charset=iso-8859-1")
    assert feed.entries[0].title == CP932_ONLY
    assert feed.warnings == ()


def test_utf8_without_any_declaration() -> None:
    feed = parse(japanese_feed().encode())
    assert feed.entries[0].title == CP932_ONLY
    assert feed.warnings == ()


def test_a_lying_xml_declaration_is_overruled_and_warned_about() -> None:
    feed = parse(japanese_feed(' encoding="utf-8"').encode("cp932"))
    assert feed.title == JAPANESE
    assert feed.entries[0].title == CP932_ONLY
    assert feed.warnings == (
        "charset: declared utf-8 but the body is not; decoded as cp932",
    )


def test_a_lying_content_type_falls_back_to_the_xml_declaration() -> None:
    body = rss(
        f"<item><title>{JAPANESE}</title></item>", declaration=' encoding="EUC-JP"'
    )
    feed = parse(body.encode("euc_jis_2004"), "application/rss+xml; charset=UTF-8")
    assert feed.entries[0].title == JAPANESE
    assert feed.warnings == (
        "charset: declared UTF-8 but the body is not; decoded as euc_jis_2004",
    )


def test_an_undeclared_non_utf8_body_is_guessed_and_warned_about() -> None:
    feed = parse(japanese_feed().encode("cp932"))
    assert feed.entries[0].title == CP932_ONLY
    assert feed.warnings == (
        "charset: none declared and the body is not utf-8; decoded as cp932",
    )


def test_an_unknown_charset_is_warned_about() -> None:
    feed = parse(japanese_feed().encode(), "text/xml; charset=klingon")
    assert feed.entries[0].title == CP932_ONLY
    assert feed.warnings == ("charset: unknown charset klingon; decoded as utf-8",)


def test_bytes_no_charset_decodes_are_replaced_and_warned_about() -> None:
    # 0x81 then a space: not UTF-8, not CP932 (no trail byte), not EUC-JP
    feed = parse(item("<title>a_ b</title>").replace(b"_", b"\x81"))
    assert feed.entries[0].title == "a\ufffd b"
    assert feed.warnings == (
        "charset: no charset decodes the body (tried utf-8, cp932, euc_jis_2004); "
        "bytes replaced",
    )


# --- hostile XML -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("hostile_billion_laughs.xml", "DOCTYPE declares 10 entities"),
        ("hostile_xxe.xml", "external entity 'xxe' (SYSTEM 'file:///etc/passwd')"),
        ("hostile_parameter_entities.xml", "external entity '%file'"),
    ],
)
def test_hostile_fixtures_are_refused(name: str, problem: str) -> None:
    with pytest.raises(HostileXMLError) as raised:
        parse((golden.FEEDS / name).read_bytes())
    error = raised.value
    assert problem in error.problem
    assert error.member_id == MEMBER
    assert error.url == URL
    assert error.error_class == "hostile_xml"
    assert len(str(error)) < 200  # nothing was expanded into the message


def test_one_huge_entity_is_refused_before_any_parser_runs() -> None:
    # 1 MB referenced 20,000 times: 20 GB if expanded; it returns at once instead
    big = "x" * 1_000_000
    body = rss(f"<item><title>{'&big;' * 20_000}</title></item>", declaration="")
    body = body.replace("<rss ", f'<!DOCTYPE rss [<!ENTITY big "{big}">]>\n<rss ', 1)
    with pytest.raises(HostileXMLError, match="1 entity \\(first 'big'"):
        parse(body.encode())


def test_hostile_xml_in_another_charset_is_still_found() -> None:
    body = (golden.FEEDS / "hostile_xxe.xml").read_text().encode("utf-16")
    with pytest.raises(HostileXMLError, match="file:///etc/passwd"):
        parse(body)


def test_an_undeclared_entity_reference_is_not_expanded() -> None:
    # the plain DOCTYPE is stripped; its entity references stay text or vanish
    body = (
        '<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "http://evil.invalid/x.dtd">\n'
        '<rss version="2.0"><channel><title>a &xxe; b</title>'
        "<item><title>&xxe;&xxe;</title></item></channel></rss>"
    )
    feed = parse(body.encode())
    assert feed.title == "a &xxe; b"
    assert len(feed.entries) == 1
    assert feed.warnings[-1].startswith("malformed XML (undefined entity")


# --- not a feed ------------------------------------------------------------------


def test_an_html_page_is_not_a_feed() -> None:
    body = (golden.FEEDS / "not_a_feed.html").read_bytes()
    with pytest.raises(
        NotAFeedError, match=r"not a feed: looks like an HTML page$"
    ) as raised:
        parse(body, "text/html; charset=utf-8")
    assert raised.value.error_class == "not_a_feed"


def test_an_xhtml_page_is_not_a_feed() -> None:
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml"><body/></html>'
    )
    with pytest.raises(NotAFeedError, match="looks like an HTML page"):
        parse(body.encode())


@pytest.mark.parametrize("body", [b"", b"   \r\n\t", b"\xef\xbb\xbf\n"])
def test_an_empty_body_is_not_a_feed(body: bytes) -> None:
    with pytest.raises(NotAFeedError, match=r"not a feed: the body is empty$"):
        parse(body)


def test_leading_comments_are_read_in_linear_time() -> None:
    # 60 comments made an earlier HTML-page pattern backtrack for 2**59 steps
    body = "<!-- c -->" * 60 + rss("<item><title>x</title></item>").split("\n", 1)[1]
    assert parse(body.encode()).entries[0].title == "x"
    with pytest.raises(NotAFeedError, match="looks like an HTML page"):
        parse(("<!-- c -->" * 60 + "<html><body/></html>").encode())


def test_random_bytes_are_not_a_feed(rng: random.Random) -> None:
    for _ in range(20):
        with pytest.raises(NotAFeedError, match="not a feed: "):
            parse(b"\x80" + rng.randbytes(2_000))


def test_other_xml_is_not_a_feed() -> None:
    with pytest.raises(NotAFeedError, match=r"XML that is not RSS, Atom or RDF$"):
        parse(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>')


@pytest.mark.parametrize("body", [b"/etc/passwd", b"https://example.com/feed.xml"])
def test_a_body_is_never_opened_as_a_path_or_url(body: bytes) -> None:
    with pytest.raises(NotAFeedError, match="not XML"):
        parse(body)


def test_a_malformed_feed_with_entries_is_accepted_with_a_warning() -> None:
    body = rss("<item><title>a</title></item><item><title>b &amp c</title></item>")
    feed = parse(body.encode()[:-20])
    assert [entry.title for entry in feed.entries] == ["a", "b & c"]
    assert feed.format == "rss20"
    assert feed.warnings[-1].startswith("malformed XML (")
    assert feed.warnings[-1].endswith("recovered 2 entries")


def test_a_malformed_feed_without_entries_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="malformed rss20 feed: ") as raised:
        parse(b'<rss version="2.0"><channel><title>t</ti')
    assert type(raised.value) is ParseError
    assert raised.value.error_class == "parse"


# --- dispatch --------------------------------------------------------------------


def test_a_json_feed_is_recognised_without_a_content_type() -> None:
    body = (golden.FEEDS / "jsonfeed11.json").read_bytes()
    assert parse(body).format == "json11"
    assert parse(body, "text/plain").format == "json11"


def test_xml_served_as_json_is_still_parsed_as_xml() -> None:
    assert parse(rss("").encode(), "application/json").format == "rss20"


def test_garbage_served_as_json_is_not_a_feed() -> None:
    with pytest.raises(NotAFeedError, match="invalid JSON"):
        parse(b"oops", "application/feed+json")


def test_a_feed_served_as_html_is_still_a_feed() -> None:
    assert parse(rss("<item><title>x</title></item>").encode(), "text/html").entries
