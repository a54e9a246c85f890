"""JSON Feed 1.0/1.1 → ParsedFeed (stdlib json).

JSON Feed: https://www.jsonfeed.org/version/1.1/ (1.0 differs only in `author`
being one object where 1.1 has an `authors` array, and in having no `language`).
Every field is optional to this reader: a value of the wrong type is treated as
missing rather than failing the whole feed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime

from aggregator.errors import NotAFeedError, ParseError
from aggregator.fields import (
    absolute,
    clean_text,
    parse_date,
    plain_to_html,
    stripped_text,
)
from aggregator.models import ParsedEntry, ParsedFeed

_VERSIONS = {
    "jsonfeed.org/version/1": "json10",
    "jsonfeed.org/version/1.1": "json11",
}
_VERSION_PREFIX = re.compile(r"^https?://(?:www\.)?", re.IGNORECASE)


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
