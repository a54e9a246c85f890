"""JSON Feed 1.0/1.1 → ParsedFeed (stdlib json), plus the field helpers parse.py shares.

JSON Feed: https://www.jsonfeed.org/version/1.1/ (1.0 differs only in `author`
being one object where 1.1 has an `authors` array, and in having no `language`).
Every field is optional to this reader: a value of the wrong type is treated as
missing rather than failing the whole feed.
"""

from __future__ import annotations

import email.utils
import html
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import urljoin

from aggregator.errors import NotAFeedError, ParseError
from aggregator.models import ParsedEntry, ParsedFeed

_VERSIONS = {
    "jsonfeed.org/version/1": "json10",
    "jsonfeed.org/version/1.1": "json11",
}
_VERSION_PREFIX = re.compile(r"^https?://(?:www\.)?", re.IGNORECASE)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # RFC 3986 §3.1, with authority

# C0 controls other than tab, newline and carriage return are not allowed in XML
# 1.0 and mean nothing in HTML; lone surrogates (which JSON "\ud800" escapes can
# produce) cannot be encoded as UTF-8 at all.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")

# Zone names that RFC 822 does not define but feeds use; email.utils reads an
# unknown name as "no zone", which would make a JST time nine hours wrong.
_UTC9 = timezone(timedelta(hours=9))
_EXTRA_ZONES = {"JST": _UTC9, "KST": _UTC9}


def parse_json_feed(data: bytes | str, url: str, member_id: str) -> ParsedFeed:
    """A JSON Feed document fetched from `url`; raises NotAFeedError or ParseError."""
    text, warnings = _decode(data)
    document = _load(text, url, member_id)
    fmt = _format(document, url, member_id)
    items = _items(document, warnings, url, member_id)
    feed_author = _author(document, url)
    return ParsedFeed(
        format=fmt,
        title=clean_text(document.get("title")),
        link=absolute(url, document.get("home_page_url")),
        feed_id=stripped_text(document.get("feed_url")),
        language=clean_text(document.get("language")),
        ttl_minutes=None,
        entries=tuple(_entry(item, url, feed_author) for item in items),
        warnings=tuple(warnings),
    )


def strip_controls(text: str) -> str:
    """`text` without C0 control characters (tab, LF and CR kept) or lone surrogates."""
    return _CONTROLS.sub("", text)


def clean_text(value: object) -> str | None:
    """A string field with control characters removed; None when absent or blank."""
    if not isinstance(value, str):
        return None
    cleaned = strip_controls(value)
    return cleaned if cleaned.strip() else None


def stripped_text(value: object) -> str | None:
    """An id, URL or tag: cleaned and stripped of surrounding whitespace."""
    cleaned = clean_text(value)
    return None if cleaned is None else cleaned.strip()


def absolute(base: str, value: object) -> str | None:
    """A URL field made absolute against `base`; None when absent."""
    cleaned = stripped_text(value)
    if cleaned is None or _SCHEME.match(cleaned):
        return cleaned  # already absolute: kept as given (and urljoin is costly)
    return urljoin(base, cleaned)


def plain_to_html(value: object) -> str | None:
    """Plain text escaped so that it can travel in an *_html field."""
    cleaned = clean_text(value)
    return None if cleaned is None else html.escape(cleaned, quote=False)


def parse_date(raw: str) -> datetime | None:
    """ISO 8601 / RFC 3339 or RFC 822 date → datetime, aware only if a zone was given.

    RFC 822's "-0000" means "zone unknown" (RFC 5322 §3.3), so it gives a naive
    datetime; so does a time with no zone at all. None when neither format fits.
    """
    text = raw.strip()
    if not text:
        return None
    return _iso8601(text) or _rfc822(text)


def _iso8601(text: str) -> datetime | None:
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _rfc822(text: str) -> datetime | None:
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        zone = _EXTRA_ZONES.get(text.rsplit(None, 1)[-1].upper())
        if zone is not None:
            return parsed.replace(tzinfo=zone)
    return parsed


def _decode(data: bytes | str) -> tuple[str, list[str]]:
    # RFC 8259 §8.1: JSON exchanged between systems is UTF-8 (a BOM is tolerated).
    if isinstance(data, str):
        return data.removeprefix("\ufeff"), []
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        warning = "JSON Feed is not valid UTF-8: undecodable bytes replaced"
        return data.decode("utf-8-sig", "replace"), [warning]


def _load(text: str, url: str, member_id: str) -> dict[str, object]:
    try:
        document = json.loads(text, strict=False)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno}, column {error.colno}"
        problem = f"not a feed: invalid JSON ({error.msg} at {where})"
        raise NotAFeedError(member_id, url, problem) from error
    except RecursionError as error:
        problem = "not a feed: JSON nested too deeply"
        raise NotAFeedError(member_id, url, problem) from error
    if not isinstance(document, dict):
        raise NotAFeedError(member_id, url, "not a feed: JSON that is not an object")
    return document


def _format(document: dict[str, object], url: str, member_id: str) -> str:
    version = document.get("version")
    if isinstance(version, str):
        key = _VERSION_PREFIX.sub("", version.strip()).rstrip("/").lower()
        fmt = _VERSIONS.get(key)
        if fmt is not None:
            return fmt
        if "jsonfeed.org" in key:
            problem = f"not a feed: unsupported JSON Feed version {version[:60]!r}"
            raise NotAFeedError(member_id, url, problem)
    raise NotAFeedError(
        member_id, url, "not a feed: JSON without a jsonfeed.org version"
    )


def _items(
    document: dict[str, object], warnings: list[str], url: str, member_id: str
) -> list[dict[str, object]]:
    items = document.get("items")
    if items is None:
        warnings.append("JSON Feed has no items array: read as an empty feed")
        return []
    if not isinstance(items, list):
        raise ParseError(member_id, url, "JSON Feed items is not an array")
    objects = [item for item in items if isinstance(item, dict)]
    if len(objects) < len(items):
        warnings.append(
            f"skipped {len(items) - len(objects)} items that are not objects"
        )
    return objects


def _entry(
    item: dict[str, object], url: str, feed_author: tuple[str | None, str | None]
) -> ParsedEntry:
    author, avatar = _author(item, url)
    if author is None and avatar is None:
        # JSON Feed 1.1: the feed's authors are the authors of items without any
        author, avatar = feed_author
    content = clean_text(item.get("content_html")) or plain_to_html(
        item.get("content_text")
    )
    return ParsedEntry(
        guid=_item_id(item.get("id")),
        link=absolute(url, item.get("url")),
        title=clean_text(item.get("title")),
        summary_html=plain_to_html(item.get("summary")),
        content_html=content,
        published=_date(item.get("date_published")),
        updated=_date(item.get("date_modified")),
        author=author,
        author_avatar=avatar,
        thumbnail=absolute(url, item.get("image"))
        or absolute(url, item.get("banner_image")),
        tags=_tags(item.get("tags")),
        base=url,
    )


def _item_id(value: object) -> str | None:
    # the spec says string, but numbers are common in the wild; bool is never an id
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    return stripped_text(value)


def _date(value: object) -> datetime | None:
    return parse_date(value) if isinstance(value, str) else None


def _author(holder: dict[str, object], base: str) -> tuple[str | None, str | None]:
    """(name, avatar) of the first usable author: 1.1 `authors`, else 1.0 `author`."""
    for author in _author_objects(holder):
        name, avatar = clean_text(author.get("name")), author.get("avatar")
        if name is not None or stripped_text(avatar) is not None:
            return name, absolute(base, avatar)
    return None, None


def _author_objects(holder: dict[str, object]) -> Iterator[dict[str, object]]:
    authors = holder.get("authors")
    if isinstance(authors, list):
        yield from (author for author in authors if isinstance(author, dict))
    author = holder.get("author")
    if isinstance(author, dict):
        yield author


def _tags(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    tags = (stripped_text(tag) for tag in value)
    return tuple(dict.fromkeys(tag for tag in tags if tag))
