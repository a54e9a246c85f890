"""Every Atom 1.0 document Kairan publishes, from a Snapshot (RFC 4287, RFC 5005).

Documents, all under the site's base URL:

- `feed.atom`: the latest `feed_size` articles, newest published first. An edit
  changes an entry's `updated`, never its place.
- `archive/{n}.atom`: RFC 5005 archive pages. Every article, in arrival order
  (first seen, then id), is cut into pages of `feed_size`; only complete pages are
  published, so new articles never move an entry between pages. A page's bytes
  change when one of its own articles is edited, and once more when the next page
  completes and it gains rel="next-archive" (RFC 5005 §4). feed.atom links the
  newest page with rel="prev-archive". `fh:complete` is not claimed: feed.atom is
  a sliding window, not the whole feed.
- `members/{id}.atom` and `tags/{slug}.atom` (member tags, article tags and
  prefectures alike): the latest `feed_size` of that member's or tag's articles.

Known edge: an article that arrived recently but is back-dated sits in the
incomplete tail of the archive and may be older than the latest `feed_size` by
published date, so until its page completes it is in neither feed.atom nor an
archive page.

Each document's `updated` is the newest `updated` of its own entries, and nothing
reads the clock, so a document whose entries did not change keeps its bytes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from aggregator.fields import strip_controls
from notifiers.published import (
    Artefact,
    PublishedArticle,
    PublishedMember,
    PublishedSite,
    Snapshot,
    tag_slug,
)

ATOM_NS = "http://www.w3.org/2005/Atom"
MEDIA_NS = "http://search.yahoo.com/mrss/"  # Media RSS: media:thumbnail
HISTORY_NS = "http://purl.org/syndication/history/1.0"  # RFC 5005: fh:archive
MEDIA_TYPE = "application/atom+xml; charset=utf-8"
_ATOM_TYPE = "application/atom+xml"
_HTML_TYPE = "text/html"
# absolute http(s) with a host; a regex because urlsplit was a third of entry time
_WEB_URL = re.compile(r"https?://[^\s/?#]", re.IGNORECASE)
# RFC 4287 §4.2.15 requires an `updated`; a document without entries has no change
# to date, and a fixed instant keeps its bytes stable across rebuilds.
_NO_ENTRIES = datetime(1970, 1, 1, tzinfo=UTC)


def build_feeds(snapshot: Snapshot, feed_size: int) -> list[Artefact]:
    """feed.atom, its archive pages, and one feed per member and per tag."""
    if feed_size < 1:
        raise ValueError(f"feed_size must be at least 1, not {feed_size}")
    index = _Index.of(snapshot)
    documents = [
        *_combined(snapshot.site, index, feed_size),
        *_member_feeds(snapshot, index, feed_size),
        *_tag_feeds(snapshot.site, index, feed_size),
    ]
    return [_render(document, snapshot.site, index) for document in documents]


@dataclass(frozen=True, slots=True)
class _Document:
    path: str  # under public/, unencoded: "tags/神奈川県.atom"
    title: str
    alternate: str  # the portal page showing the same articles
    articles: Sequence[PublishedArticle]  # in document order
    feed_id: str  # RFC 4287 §4.2.6: permanent, so derived from paths, not time
    links: tuple[tuple[str, str], ...] = ()  # RFC 5005 (rel, href) navigation
    archive: bool = False  # an RFC 5005 archive page: fh:archive


@dataclass(slots=True)
class _Index:
    """The snapshot grouped once, so that building stays linear in its size."""

    members: dict[str, PublishedMember]
    newest: list[PublishedArticle]  # by published, newest first
    terms: dict[str, tuple[str, ...]]  # article id → its category terms
    by_member: dict[str, list[PublishedArticle]]  # newest first
    by_tag: dict[str, list[PublishedArticle]]  # slug → newest first
    tag_names: dict[str, str]  # slug → the tag shown in the feed title
    entries: dict[str, ET.Element]  # article id → its entry, built once

    @classmethod
    def of(cls, snapshot: Snapshot) -> _Index:
        members = {member.id: member for member in snapshot.members}
        index = cls(
            members=members,
            newest=sorted(snapshot.articles, key=_published_key, reverse=True),
            terms={},
            by_member={member.id: [] for member in snapshot.members},
            by_tag={},
            tag_names={},
            entries={},
        )
        for member in snapshot.members:
            index.add_tags(_member_tags(member))
        for article in index.newest:
            index.add(article, members.get(article.member_id))
        return index

    def add(self, article: PublishedArticle, member: PublishedMember | None) -> None:
        tags = [*(_member_tags(member) if member else ()), *article.tags]
        self.terms[article.id] = tuple(dict.fromkeys(filter(None, map(_term, tags))))
        if member is not None:
            self.by_member[member.id].append(article)
        for slug in self.add_tags(tags):
            self.by_tag[slug].append(article)

    def add_tags(self, tags: Iterable[str]) -> set[str]:
        """Register tags (blank ones are skipped); their slugs."""
        slugs = set()
        for tag in tags:
            name = _term(tag)
            if not name:
                continue
            # the raw tag is slugged, as every other builder does, so that the
            # portal's tags/{slug}.html and this feed agree on the path
            slug = tag_slug(tag)
            self.by_tag.setdefault(slug, [])
            known = self.tag_names.get(slug)
            self.tag_names[slug] = name if known is None else min(known, name)
            slugs.add(slug)
        return slugs

    def entry(self, article: PublishedArticle) -> ET.Element:
        """One entry element per article, shared by every document holding it."""
        element = self.entries.get(article.id)
        if element is None:
            member = self.members.get(article.member_id)
            element = _entry(article, member, self.terms[article.id])
            self.entries[article.id] = element
        return element


def _combined(
    site: PublishedSite, index: _Index, feed_size: int
) -> Iterable[_Document]:
    """feed.atom and its complete RFC 5005 archive pages."""
    arrival = sorted(index.newest, key=_arrival_key)
    pages = len(arrival) // feed_size
    feed_id = _url(site, "feed.atom")
    yield _Document(
        path="feed.atom",
        title=site.title,
        alternate=site.base_url,
        articles=index.newest[:feed_size],
        feed_id=feed_id,
        links=(("prev-archive", _url(site, _archive(pages))),) if pages else (),
    )
    for number in range(1, pages + 1):
        page = arrival[(number - 1) * feed_size : number * feed_size]
        links = [("current", feed_id)]
        if number > 1:
            links.append(("prev-archive", _url(site, _archive(number - 1))))
        if number < pages:
            links.append(("next-archive", _url(site, _archive(number + 1))))
        yield _Document(
            path=_archive(number),
            title=site.title,
            alternate=site.base_url,
            articles=sorted(page, key=_published_key, reverse=True),
            # RFC 5005 §4: archive pages are documents of one logical feed
            feed_id=feed_id,
            links=tuple(links),
            archive=True,
        )


def _member_feeds(
    snapshot: Snapshot, index: _Index, feed_size: int
) -> Iterable[_Document]:
    site = snapshot.site
    for member in snapshot.members:
        path = f"members/{member.id}.atom"
        yield _Document(
            path=path,
            title=f"{member.name} | {site.title}",
            alternate=_url(site, f"members/{member.id}.html"),
            articles=index.by_member[member.id][:feed_size],
            feed_id=_url(site, path),
        )


def _tag_feeds(
    site: PublishedSite, index: _Index, feed_size: int
) -> Iterable[_Document]:
    for slug in sorted(index.by_tag):
        path = f"tags/{slug}.atom"
        yield _Document(
            path=path,
            title=f"{index.tag_names[slug]} | {site.title}",
            alternate=_url(site, f"tags/{slug}.html"),
            articles=index.by_tag[slug][:feed_size],
            feed_id=_url(site, path),
        )


def _render(document: _Document, site: PublishedSite, index: _Index) -> Artefact:
    attributes = {"xmlns": ATOM_NS, "xmlns:media": MEDIA_NS}
    if document.archive:
        attributes["xmlns:fh"] = HISTORY_NS
    attributes["xml:lang"] = site.language
    # Prefixes are written literally (no Clark names), so they are always atom
    # (default), media and fh, without ElementTree's process-wide prefix registry.
    feed = ET.Element("feed", _cleaned(attributes))
    _text(feed, "id", document.feed_id)
    _text(feed, "title", document.title)
    updated = max((a.updated for a in document.articles), default=_NO_ENTRIES)
    _text(feed, "updated", _date(updated))
    _link(feed, "self", _url(site, document.path), _ATOM_TYPE)
    _link(feed, "alternate", document.alternate, _HTML_TYPE)
    if site.websub_hub:
        _link(feed, "hub", site.websub_hub)
    for rel, href in document.links:
        _link(feed, rel, href, _ATOM_TYPE)
    if document.archive:
        ET.SubElement(feed, "fh:archive")
    _text(feed, "generator", site.generator)
    if site.icon:
        _text(feed, "icon", site.icon)
    if site.logo:
        _text(feed, "logo", site.logo)
    feed.extend(index.entry(article) for article in document.articles)
    ET.indent(feed)
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"
    return Artefact(path=document.path, body=body, media_type=MEDIA_TYPE)


def _entry(
    article: PublishedArticle, member: PublishedMember | None, terms: Sequence[str]
) -> ET.Element:
    entry = ET.Element("entry")
    _text(entry, "id", article.id)
    _text(entry, "title", article.title)
    link = _web_url(article.link)
    if link:
        _link(entry, "alternate", link)
    _text(entry, "published", _date(article.published))
    _text(entry, "updated", _date(article.updated))
    _author(entry, article.author, _web_url(member.site) if member else None)
    for term in terms:
        ET.SubElement(entry, "category", term=term)
    _text(entry, "summary", article.summary_html, type="html")
    # RFC 4287 §4.1.2: an entry without an alternate link must have content
    content = article.content_html or (None if link else article.summary_html)
    if content is not None:
        _text(entry, "content", content, type="html")
    thumbnail = _web_url(article.thumbnail)
    if thumbnail:
        # A preview image, so Media RSS rather than rel="enclosure" (§4.2.7.2:
        # "potentially large", SHOULD give a length a builder cannot know).
        ET.SubElement(entry, "media:thumbnail", url=_clean(thumbnail))
    if member is not None:
        _source(entry, member, article.updated)
    return entry


def _author(entry: ET.Element, name: str, uri: str | None) -> None:
    author = ET.SubElement(entry, "author")
    _text(author, "name", name)
    if uri:
        _text(author, "uri", uri)


def _source(entry: ET.Element, member: PublishedMember, updated: datetime) -> None:
    """RFC 4287 §4.2.11: the member feed the entry was copied from."""
    source = ET.SubElement(entry, "source")
    _text(source, "id", member.feed_url)
    _text(source, "title", member.name)
    _link(source, "self", member.feed_url)
    site = _web_url(member.site)
    if site:
        _link(source, "alternate", site, _HTML_TYPE)
    # The entry's own `updated`, not member.updated: that moves with each new
    # article of the member, and would rewrite every document (archive pages
    # included) holding any of its entries.
    _text(source, "updated", _date(updated))


def _text(parent: ET.Element, tag: str, text: str, **attributes: str) -> None:
    ET.SubElement(parent, tag, _cleaned(attributes)).text = _clean(text)


def _link(parent: ET.Element, rel: str, href: str, media_type: str = "") -> None:
    attributes = {"rel": rel, "href": href}
    if media_type:
        attributes["type"] = media_type
    ET.SubElement(parent, "link", _cleaned(attributes))


def _clean(text: str) -> str:
    """No character XML 1.0 §2.2 forbids (nor C1 controls), whatever its origin."""
    return strip_controls(text)


def _cleaned(attributes: dict[str, str]) -> dict[str, str]:
    return {name: _clean(value) for name, value in attributes.items()}


def _term(tag: str) -> str:
    return _clean(tag).strip()


def _member_tags(member: PublishedMember) -> tuple[str, ...]:
    """A member's tags, then its prefecture, which is published as a tag too."""
    return (*member.tags, member.prefecture) if member.prefecture else member.tags


def _web_url(url: str | None) -> str | None:
    """`url` when it is an absolute http(s) URL: feed data is never trusted."""
    return url if url and _WEB_URL.match(url) else None


def _url(site: PublishedSite, path: str) -> str:
    return site.base_url + quote(path)


def _archive(number: int) -> str:
    return f"archive/{number}.atom"


def _date(value: datetime) -> str:
    """RFC 3339 in UTC with "Z", to the second (RFC 4287 §3.3)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} has no time zone")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _published_key(article: PublishedArticle) -> tuple[datetime, str]:
    return (article.published, article.id)


def _arrival_key(article: PublishedArticle) -> tuple[datetime, str]:
    return (article.first_seen, article.id)
