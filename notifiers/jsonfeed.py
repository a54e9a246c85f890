"""Pure: the latest articles → feed.json, JSON Feed 1.1.

https://www.jsonfeed.org/version/1.1/. The items are those of feed.atom: the
latest `feed_size` articles by published time, ties broken by id as
notifiers/atom.py does, so an edit changes an item's date_modified and never
its place.

Every string is cleaned before encoding (aggregator.fields.strip_controls): C0
controls other than tab and LF (CR included), DEL, C1 controls, U+FFFE/U+FFFF and
lone surrogates are removed. JSON can escape them, but readers choke on them and
a lone surrogate cannot be written as UTF-8 at all. U+2028/U+2029 are kept but
written as escapes, because JavaScript before ES2019 ends a string at them.
"""

from __future__ import annotations

import heapq
import json
from datetime import UTC, datetime
from typing import TypeAlias

from aggregator.fields import strip_controls
from aggregator.sanitize import to_text
from notifiers.published import (
    Artefact,
    PublishedArticle,
    PublishedMember,
    PublishedSite,
    Snapshot,
)

VERSION = "https://jsonfeed.org/version/1.1"
PATH = "feed.json"
MEDIA_TYPE = "application/feed+json; charset=utf-8"  # JSON Feed 1.1 "Suggestions"
EXTENSION = "_kairan"  # "_" then a letter, no "." (JSON Feed 1.1 "Extensions")

Json: TypeAlias = "str | int | bool | list[Json] | dict[str, Json] | None"


def build_json_feed(snapshot: Snapshot, feed_size: int) -> Artefact:
    """feed.json: the latest `feed_size` articles, as feed.atom lists them."""
    if feed_size < 1:  # as build_feeds: a feed that could never hold an item
        raise ValueError(f"feed_size must be at least 1, not {feed_size}")
    members = {m.id: m for m in snapshot.members}
    latest = heapq.nlargest(feed_size, snapshot.articles, key=_published)
    items: list[Json] = [_item(a, members.get(a.member_id)) for a in latest]
    return Artefact(PATH, _encode(_feed(snapshot.site, items)), MEDIA_TYPE)


def _feed(site: PublishedSite, items: list[Json]) -> dict[str, Json]:
    document: dict[str, Json] = {
        "version": VERSION,  # "should appear at the very top"
        "title": site.title,
        "home_page_url": site.base_url,
        "feed_url": site.base_url + PATH,
        "language": site.language,
    }
    # JSON Feed's icon is the large timeline image (Atom's logo); its favicon
    # is the small one (Atom's icon).
    if site.logo:
        document["icon"] = site.logo
    if site.icon:
        document["favicon"] = site.icon
    if site.websub_hub:
        # WebSub subscribers pass feed_url as hub.topic (JSON Feed 1.1 "hubs").
        document["hubs"] = [{"type": "WebSub", "url": site.websub_hub}]
    document["items"] = items
    return document


def _item(article: PublishedArticle, member: PublishedMember | None) -> dict[str, Json]:
    """One item. content_html is required (or content_text): it is the full
    content when the feed had it, else the sanitised excerpt, which is HTML too."""
    entry: dict[str, Json] = {"id": article.id}
    if article.link:
        entry["url"] = article.link
    if strip_controls(article.title).strip():  # optional: no "" titles
        entry["title"] = article.title
    entry["content_html"] = article.content_html or article.summary_html
    if summary := to_text(article.summary_html):  # plain text only, by the spec
        entry["summary"] = summary
    if article.thumbnail:
        entry["image"] = article.thumbnail
    entry["date_published"] = _rfc3339(article.published)
    entry["date_modified"] = _rfc3339(article.updated)
    entry["authors"] = [_author(article, member)]
    if tags := _tags(article, member):
        entry["tags"] = list(tags)
    entry[EXTENSION] = {"member": _member(article.member_id, member)}
    return entry


def _author(article: PublishedArticle, member: PublishedMember | None) -> Json:
    """The author; the member's site is its url only when the author *is* the
    member: a note:creatorName writing in a magazine has a page of their own."""
    person: dict[str, Json] = {"name": article.author}
    if member and member.site and article.author == member.name:
        person["url"] = member.site
    return person


def _tags(article: PublishedArticle, member: PublishedMember | None) -> list[str]:
    """Member tags, prefecture, then the article's own (feed.atom's order);
    blank and repeated ones dropped."""
    names = [*member.tags, member.prefecture or ""] if member else []
    names += article.tags
    cleaned = (strip_controls(name).strip() for name in names)
    return list(dict.fromkeys(name for name in cleaned if name))


def _member(member_id: str, member: PublishedMember | None) -> Json:
    """Always the same keys; null where unknown (a paused member is not listed)."""
    return {
        "id": member_id,
        "name": member.name if member else None,
        "prefecture": member.prefecture if member else None,
        "feed_url": member.feed_url if member else None,
        "site": member.site if member else None,
    }


def _published(article: PublishedArticle) -> tuple[datetime, str]:
    return (article.published, article.id)


def _rfc3339(value: datetime) -> str:
    """RFC 3339 §5.6 in UTC with "Z", to the second (as the store keeps it)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _encode(document: Json) -> bytes:
    """Deterministic bytes: our key order, UTF-8 (not \\u escapes), one newline."""
    text = json.dumps(_clean(document), ensure_ascii=False, indent=2)
    # Only string contents can hold these two, so the escapes change no value.
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + "\n").encode("utf-8")


def _clean(value: Json) -> Json:
    """`value` with every string cleaned of characters that break readers."""
    if isinstance(value, str):
        return strip_controls(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {key: _clean(v) for key, v in value.items()}
    return value
