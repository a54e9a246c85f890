"""Feed bytes + Content-Type → ParsedFeed via feedparser (its only importer).

The bytes are never handed to feedparser as they came. They are decoded here
(BOM, then the Content-Type charset, then the XML declaration, with Japanese
charsets mapped to the codecs that decode them exactly), checked for entity and
DTD declarations by `xmlguard` *before* any parser sees them, stripped of a plain
DOCTYPE and of control characters, and re-encoded as UTF-8. feedparser then runs
without its sanitiser and URI resolver (`sanitize` does that with nh3, and only for
entries that are new); HTML comes out as the feed gave it.
"""

from __future__ import annotations

import codecs
import io
import re
import time
import xml.sax
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import feedparser

from aggregator import xmlguard
from aggregator.errors import HostileXMLError, NotAFeedError, ParseError
from aggregator.fields import (
    absolute,
    clean_text,
    parse_date,
    plain_to_html,
    strip_controls,
    stripped_text,
)
from aggregator.jsonfeed_in import parse_json_feed
from aggregator.models import ParsedEntry, ParsedFeed

# Byte order marks, longest first (the UTF-32 LE mark starts with the UTF-16 one).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CT_CHARSET = re.compile(r";\s*charset\s*=\s*[\"']?([^\"';\s]+)", re.IGNORECASE)
_XML_ENCODING = re.compile(
    rb"""^\s*<\?xml\s[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._:-]+)["']"""
)
_XML_DECLARATION = re.compile(r"<\?xml\s[^>]*?\?>")
_UTF8_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'

# Labels Python's codec registry does not know, for charsets it has.
_ALIASES = {
    "x-sjis": "cp932",
    "x-shift-jis": "cp932",
    "windows-31j": "cp932",
    "cswindows31j": "cp932",
    "x-euc-jp": "euc_jp",
    "x-euc": "euc_jp",
}
# What each Japanese charset is decoded with, in order of preference. Shift_JIS on
# the web is Windows-31J: plain shift_jis garbles ①, 髙, 﨑 and U+FF5E (CP932 rows 13
# and 89-92, and 0x8160). euc_jis_2004 decodes every sequence euc_jp does, to the
# same characters, and row 13 and JIS X 0213 besides (①, 﨑). iso2022_jp_2004 adds
# JIS X 0213 too, but not ESC $ @ or ESC ( I, which _ext reads.
_JAPANESE = {
    "shift_jis": ("cp932",),
    "cp932": ("cp932",),
    "euc_jp": ("euc_jis_2004",),
    "iso2022_jp": ("iso2022_jp_2004", "iso2022_jp_ext", "iso2022_jp_2"),
}
# Tried in turn when the declared charset does not decode the body.
_FALLBACKS = ("utf-8", "cp932", "euc-jp")

# possessive: with plain quantifiers, a run of comments backtracks exponentially
_HTML_PAGE = re.compile(
    r"(?:<\?xml[^>]*>\s*)?+(?:<!--.*?-->\s*)*+<(?:!doctype\s+html|html[\s>])",
    re.IGNORECASE | re.DOTALL,
)
# RSS 2.0 <author> is an address, by convention "email (Name)" or "Name <email>"
_MAILBOX = re.compile(
    r"[^\s@()<>]+@[^\s@()<>]+\s*\((?P<name>[^()]+)\)"
    r"|(?P<display>[^<>]+?)\s*<[^\s@<>]+@[^\s@<>]+>"
)
_JSON_TYPES = ("application/feed+json", "application/json")
_HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True, slots=True)
class _Source:
    """What the entry builders need to know about the document."""

    url: str
    format: str
    author: str | None  # the feed's author, inherited by Atom entries


def parse_feed(
    body: bytes, content_type: str | None, url: str, member_id: str
) -> ParsedFeed:
    """Parse a fetched body; raises HostileXMLError, NotAFeedError or ParseError."""
    start = _content_start(body)
    if not start:
        raise NotAFeedError(member_id, url, "not a feed: the body is empty")
    if start == b"{" or (_is_json_type(content_type) and start != b"<"):
        return parse_json_feed(body, url, member_id)
    text, warnings = _decode(body, content_type)
    text = text.lstrip()
    if _HTML_PAGE.match(text):
        raise NotAFeedError(member_id, url, "not a feed: looks like an HTML page")
    problem = xmlguard.find_declarations(text)
    if problem is not None:
        raise HostileXMLError(member_id, url, problem)
    doctype = xmlguard.doctype(text) or ""
    result = _run_feedparser(_utf8_document(text), url, member_id)
    fmt = _format(result, doctype, url, member_id)
    warnings.extend(_bozo_warnings(result))
    return _feed(result, _Source(url, fmt, _author(result["feed"], fmt)), warnings)


# --- charset ---------------------------------------------------------------------


def _content_start(body: bytes) -> bytes:
    """The first byte after any UTF-8 BOM and whitespace (b"" for an empty body)."""
    return body.removeprefix(codecs.BOM_UTF8).lstrip()[:1]


def _is_json_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type in _JSON_TYPES


def _decode(body: bytes, content_type: str | None) -> tuple[str, list[str]]:
    """Decode the body exactly; a charset that lies is overruled and warned about."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return _decode_bom(body, codec)
    declared = _declared_charsets(body, content_type)
    candidates = _candidates([*declared, *_FALLBACKS])
    for label, codec in candidates:
        text = _try_decode(body, codec)
        if text is not None:
            return text, _charset_warnings(declared, label, codec)
    tried = ", ".join(codec for _label, codec in candidates)
    warning = f"charset: no charset decodes the body (tried {tried}); bytes replaced"
    return body.decode(candidates[0][1], "replace"), [warning]


def _decode_bom(body: bytes, codec: str) -> tuple[str, list[str]]:
    text = _try_decode(body, codec)
    if text is not None:
        return text, []
    warning = f"body has a {codec} byte order mark but is not {codec}: bytes replaced"
    return body.decode(codec, "replace"), [warning]


def _declared_charsets(body: bytes, content_type: str | None) -> list[str]:
    """Charset labels in authority order: Content-Type, then the XML declaration."""
    labels = []
    header = _CT_CHARSET.search(content_type or "")
    if header is not None:
        labels.append(header.group(1))
    declaration = _XML_ENCODING.match(body[:1024])
    if declaration is not None:
        labels.append(declaration.group(1).decode("ascii"))
    return labels


def _codecs_for(label: str) -> tuple[str, ...]:
    """The codecs that decode a charset label, best first; () when unknown."""
    name = label.strip().lower().replace("_", "-")
    try:
        canonical = codecs.lookup(_ALIASES.get(name, name)).name
    except LookupError:
        return ()
    return _JAPANESE.get(canonical, (canonical,))


def _candidates(labels: list[str]) -> list[tuple[str, str]]:
    """(label, codec) pairs to try in turn, each codec once."""
    labels_by_codec: dict[str, str] = {}
    for label in labels:
        for codec in _codecs_for(label):
            labels_by_codec.setdefault(codec, label)
    return [(label, codec) for codec, label in labels_by_codec.items()]


def _try_decode(body: bytes, codec: str) -> str | None:
    try:
        return body.decode(codec)
    except (UnicodeDecodeError, LookupError):  # LookupError: "base64" is no charset
        return None


def _charset_warnings(declared: list[str], label: str, codec: str) -> list[str]:
    if not declared:
        if label == "utf-8":
            return []
        return [f"charset: none declared and the body is not utf-8; decoded as {codec}"]
    if declared[0] == label:
        return []
    if not _codecs_for(declared[0]):
        return [f"charset: unknown charset {declared[0]}; decoded as {codec}"]
    return [f"charset: declared {declared[0]} but the body is not; decoded as {codec}"]


def _utf8_document(text: str) -> bytes:
    """The guarded text as the UTF-8 document feedparser is given."""
    text = strip_controls(xmlguard.strip_doctype(text))
    # the declaration now says what the bytes are; one is added when missing (on the
    # same line, so that feedparser's own does not shift the line numbers in errors)
    declaration = _XML_DECLARATION.match(text)
    rest = text[declaration.end() :] if declaration else text
    return (_UTF8_DECLARATION + rest).encode("utf-8")


# --- feedparser --------------------------------------------------------------------


def _run_feedparser(document: bytes, url: str, member_id: str) -> Any:
    headers = {"content-type": "application/xml; charset=utf-8"}
    if b"xml:base" in document:
        # feedparser resolves RSS guids and Atom ids against its base URI, which
        # would change an id whenever the feed moves; so it is given the document URL
        # only when xml:base needs one (without it, feedparser scopes a relative
        # xml:base wrongly). Links are made absolute against `url` below either way.
        headers["content-location"] = url
    try:
        # a BytesIO: given bytes or str, feedparser may open them as a path or URL
        return feedparser.parse(
            io.BytesIO(document),
            response_headers=headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except (ValueError, TypeError, AttributeError, IndexError, RecursionError) as e:
        raise ParseError(member_id, url, "feedparser failed on the document") from e


def _format(result: Any, doctype: str, url: str, member_id: str) -> str:
    """feedparser's version string, or the reason this is not a feed."""
    version = str(result.get("version") or "")
    if version == "rss091u" and "netscape" in doctype.lower():
        version = "rss091n"  # feedparser tells them apart by the DOCTYPE we removed
    if result["entries"]:
        return version or "unknown"
    bozo = result.get("bozo_exception")
    if version and bozo is not None:
        problem = f"malformed {version} feed: {_describe(bozo)}"
        raise ParseError(member_id, url, problem)
    if version:
        return version
    if bozo is not None:
        problem = f"not a feed: not XML ({_describe(bozo)})"
        raise NotAFeedError(member_id, url, problem)
    problem = "not a feed: XML that is not RSS, Atom or RDF"
    raise NotAFeedError(member_id, url, problem)


def _bozo_warnings(result: Any) -> list[str]:
    warnings = []
    if not result.get("version"):
        warnings.append("feed format not recognised; entries read anyway")
    bozo = result.get("bozo_exception")
    if bozo is not None:
        count = len(result["entries"])
        warnings.append(f"malformed XML ({_describe(bozo)}); recovered {count} entries")
    return warnings


def _describe(error: object) -> str:
    if isinstance(error, xml.sax.SAXParseException):
        where = f"line {error.getLineNumber()}, column {error.getColumnNumber()}"
        return f"{error.getMessage()} at {where}"
    return str(error)


# --- mapping -----------------------------------------------------------------------


def _feed(result: Any, source: _Source, warnings: list[str]) -> ParsedFeed:
    feed = result["feed"]
    return ParsedFeed(
        format=source.format,
        title=clean_text(_get(feed, "title")),
        link=absolute(source.url, _get(feed, "link")),
        feed_id=stripped_text(_get(feed, "id")),
        language=stripped_text(_get(feed, "language")),
        ttl_minutes=_ttl(_get(feed, "ttl")),
        entries=tuple(_entry(entry, source) for entry in result["entries"]),
        warnings=tuple(warnings),
    )


def _entry(entry: Any, source: _Source) -> ParsedEntry:
    content, content_base = _content(entry)
    summary, summary_base = _summary(entry)
    base = absolute(source.url, content_base or summary_base) or source.url
    return ParsedEntry(
        guid=stripped_text(_get(entry, "id")),
        link=_link(entry, source),
        title=clean_text(_get(entry, "title")),
        summary_html=summary,
        content_html=content,
        published=_date(entry, "published"),
        updated=_date(entry, "updated"),
        author=_entry_author(entry, source),
        author_avatar=absolute(base, _get(entry, "note_creatorimage")),
        thumbnail=next(_thumbnails(entry, base), None),
        tags=_tags(entry),
        base=base,
    )


def _get(mapping: Any, key: str) -> object:
    # dict.get, not FeedParserDict.get: the latter maps "updated" to "published"
    # with a DeprecationWarning
    return dict.get(mapping, key) if isinstance(mapping, dict) else None


def _dicts(value: object) -> Iterator[dict[str, object]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _link(entry: Any, source: _Source) -> str | None:
    for link in _dicts(_get(entry, "links")):
        href = absolute(source.url, link.get("href"))
        if href is not None and link.get("rel", "alternate") == "alternate":
            return href
    guid = stripped_text(_get(entry, "id"))
    # RSS 2.0: a guid without isPermaLink="false" is the item's permalink; feedparser
    # also says so for a relative guid, which is only an id, so require a URL
    if source.format.startswith("rss") and _get(entry, "guidislink") and guid:
        return guid if guid.lower().startswith(("http://", "https://")) else None
    return None


def _content(entry: Any) -> tuple[str | None, object]:
    """The first HTML content (content:encoded, atom:content) and its base."""
    contents = list(_dicts(_get(entry, "content")))
    for content in contents:
        if content.get("type") in _HTML_TYPES:
            return clean_text(content.get("value")), content.get("base")
    for content in contents:
        if content.get("type") == "text/plain":
            return plain_to_html(content.get("value")), content.get("base")
    return None, None


def _summary(entry: Any) -> tuple[str | None, object]:
    # summary_detail exists only for a real description/summary; a bare "summary"
    # without it is feedparser's copy of the content
    detail = _get(entry, "summary_detail")
    if not isinstance(detail, dict):
        return None, None
    if detail.get("type") == "text/plain":
        return plain_to_html(detail.get("value")), detail.get("base")
    return clean_text(detail.get("value")), detail.get("base")


def _date(entry: Any, key: str) -> datetime | None:
    """The raw date string parsed here, so that a missing zone stays naive."""
    raw = _get(entry, key)
    parsed = parse_date(raw) if isinstance(raw, str) else None
    if parsed is not None:
        return parsed
    # feedparser reads many more formats, but always as UTC
    fallback = _get(entry, f"{key}_parsed")
    if not isinstance(fallback, time.struct_time):
        return None
    try:
        return datetime(*fallback[:6], tzinfo=UTC)
    except ValueError:  # a leap second, for one
        return None


def _entry_author(entry: Any, source: _Source) -> str | None:
    """note's creatorName (in a magazine, each item names its own creator), else the
    entry's author, else for Atom the feed's (RFC 4287 §4.2.1)."""
    creator = clean_text(_get(entry, "note_creatorname"))
    if creator is not None:
        return creator
    author = _author(entry, source.format)
    if author is None and source.format.startswith("atom"):
        return source.author
    return author


def _author(holder: Any, fmt: str) -> str | None:
    """The author's name: Atom's <name>, or RSS's <author>/<dc:creator> text."""
    if fmt.startswith("atom"):
        detail = _get(holder, "author_detail")
        return clean_text(detail.get("name")) if isinstance(detail, dict) else None
    # feedparser's own split of "email (Name)" mangles addresses whose top-level
    # domain is longer than four letters (.tokyo, .example)
    raw = stripped_text(_get(holder, "author"))
    mailbox = _MAILBOX.fullmatch(raw or "")
    if mailbox is None:
        return raw
    return str(mailbox["name"] or mailbox["display"]).strip()


def _thumbnails(entry: Any, base: str) -> Iterator[str]:
    """Image URLs, best first (note gives media:thumbnail's URL as its text)."""
    for thumbnail in _dicts(_get(entry, "media_thumbnail")):
        yield from _url(base, thumbnail.get("url"))
    for media in _dicts(_get(entry, "media_content")):
        if media.get("medium") == "image" or _is_image(media.get("type")):
            yield from _url(base, media.get("url"))
    for link in _dicts(_get(entry, "links")):
        if link.get("rel") == "enclosure" and _is_image(link.get("type")):
            yield from _url(base, link.get("href"))


def _url(base: str, value: object) -> Iterator[str]:
    url = absolute(base, value)
    if url is not None:
        yield url


def _is_image(media_type: object) -> bool:
    return isinstance(media_type, str) and media_type.lower().startswith("image/")


def _tags(entry: Any) -> tuple[str, ...]:
    terms = (stripped_text(tag.get("term")) for tag in _dicts(_get(entry, "tags")))
    return tuple(dict.fromkeys(term for term in terms if term))


def _ttl(value: object) -> int | None:
    text = stripped_text(value)
    if text is None or not (text.isascii() and text.isdigit()):
        return None
    return int(text)
