"""What Kairan publishes is made from: a snapshot of articles and members.

`aggregator/publish.py` reads the database into a Snapshot; the builders in
notifiers (atom, jsonfeed, opml, portal) turn it into bytes, without I/O and
without reading the clock: the same snapshot always gives the same bytes.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PublishedSite:
    title: str
    base_url: str  # ends with "/": every published URL is relative to it
    language: str  # "ja" or "en"
    timezone: str  # IANA name: dates on the portal are shown in it
    generator: str  # e.g. "Kairan 0.1.0"
    icon: str | None = None  # absolute URL
    logo: str | None = None  # absolute URL
    websub_hub: str | None = None  # absolute URL: link rel="hub" in every feed
    subscribe_url: str | None = None  # the follower form (POST /subscribe), if served


@dataclass(frozen=True, slots=True)
class PublishedMember:
    id: str  # slug: members/{id}.atom, members/{id}.html
    name: str
    feed_url: str  # where Kairan reads it now (after 301/308)
    site: str | None  # the member's home page
    prefecture: str | None
    tags: tuple[str, ...]
    articles: int  # stored articles credited to it
    last_article: datetime | None  # UTC, published (or first seen) of its newest
    updated: datetime | None  # UTC, last change to any of its articles
    failing: str | None  # a short reason when its feed is failing or gone, else None


@dataclass(frozen=True, slots=True)
class PublishedArticle:
    id: str  # stable IRI: the article's guid when it is one, else a tag: URI
    member_id: str  # the member it is credited to
    title: str  # plain text (untrusted feed text: builders escape it)
    link: str | None  # absolute http(s) URL, or None
    published: datetime  # UTC; first seen when the feed gave no date
    first_seen: datetime  # UTC; arrival order, which RFC 5005 archive pages follow
    updated: datetime  # UTC; = published until the article is edited
    author: str  # note:creatorName when known, else the member's name
    summary_html: str  # sanitised excerpt
    content_html: str | None  # sanitised full content, when the feed had it
    thumbnail: str | None  # absolute http(s) URL
    tags: tuple[str, ...]  # the article's own categories


@dataclass(frozen=True, slots=True)
class Snapshot:
    site: PublishedSite
    members: tuple[PublishedMember, ...]  # every active (not paused) member, by name
    articles: tuple[
        PublishedArticle, ...
    ]  # every stored article, newest published first
    built_at: datetime  # UTC: the newest `updated` of any article (not the clock)

    def member(self, member_id: str) -> PublishedMember | None:
        return next((m for m in self.members if m.id == member_id), None)


@dataclass(frozen=True, slots=True)
class Artefact:
    """One published file: its path under public/ and its bytes."""

    path: str  # e.g. "feed.atom", "members/kobe.atom", "tags/神奈川県.atom"
    body: bytes
    media_type: str  # e.g. "application/atom+xml; charset=utf-8"


_SLUG_BYTES = 120  # well under a file name's 255 bytes, with ".atom" added
_UNSAFE = frozenset('/\\?#%*:|"<>')


def tag_slug(tag: str) -> str:
    """A tag as one safe path segment: tags/{slug}.atom, tags/{slug}.html.

    NFKC, then every character that is unsafe in a file name or URL path segment
    (separators, wildcards, controls, spaces) becomes "-". Links to it are
    percent-encoded (urllib.parse.quote) by whoever writes them.
    """
    text = unicodedata.normalize("NFKC", tag).strip()
    slug = "".join(
        "-"
        if ch in _UNSAFE or ch.isspace() or unicodedata.category(ch)[0] == "C"
        else ch
        for ch in text
    )
    slug = slug if slug and not slug.startswith(".") else f"tag-{slug}"
    if len(slug.encode("utf-8")) <= _SLUG_BYTES:
        return slug
    # A file name holds 255 bytes: keep a readable head and a hash of the rest.
    digest = hashlib.sha256(slug.encode("utf-8")).hexdigest()[:12]
    head = slug.encode("utf-8")[: _SLUG_BYTES - 13].decode("utf-8", "ignore")
    return f"{head}-{digest}"
