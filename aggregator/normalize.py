"""Pure: a parsed entry's identity keys and content hash, and its sanitised Article.

`identify` runs for every entry of every changed feed, so it never sanitises;
`finish` does the costly work, and only for entries that are new or edited.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import MAXYEAR, UTC, datetime, timedelta, tzinfo
from urllib.parse import urlsplit

from aggregator import urls
from aggregator.fields import strip_controls
from aggregator.models import Article, Candidate, ParsedEntry, ParsedFeed
from aggregator.sanitize import clean_html, to_text

# Bumped whenever the hashed fields or their encoding change, so that a stored
# hash of another version is recognisably not comparable (reader's _hash_utils).
_HASH_VERSION = "v1"
# The identity chain, strongest first (SPEC "Identity and dedup").
_KEY_RANK = {"note": 0, "guid": 1, "link": 2, "hash": 3}
_FUTURE_SLACK = timedelta(days=1)
_TITLE_FROM_SUMMARY = 60
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)

# note ends each excerpt with <br/><a href='…/n/<key>'>続きをみる</a> ("read more",
# NOTE-FEEDS.md); other publishers end theirs with similar links.
_READ_MORE = re.compile(
    r"(?:<br\s*/?>\s*)*<a\s[^>]*>\s*"
    r"(?:続きをみる|続きを見る|続きを読む|read\s+more|continue\s+reading)"
    r"\s*(?:…|\.\.\.|»|→)?\s*</a>\s*\Z",
    re.IGNORECASE,
)


def _digest(fields: Sequence[str | None]) -> str:
    payload = json.dumps(list(fields), ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a lone surrogate in a feed must not make hashing raise
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _canonical_link(entry: ParsedEntry, feed_url: str) -> str | None:
    if not entry.link:
        return None
    link = urls.canonical(urls.resolve(entry.base or feed_url, entry.link))
    return link if urls.is_web(link) else None


def _is_site_root(link: str) -> bool:
    """A bare "scheme://host/" names a site, not an article: never an identity."""
    parts = urlsplit(link)
    return parts.path == "/" and not parts.query


def _note_key(entry: ParsedEntry) -> str | None:
    for source in (entry.link, entry.guid):
        key = urls.note_key(source) if source else None
        if key:
            return key
    return None


def _hash_key(entry: ParsedEntry, member_id: str) -> str:
    digest = _digest([(entry.title or "").strip(), _iso(entry.published)])
    return f"hash:{member_id}:{digest}"


def _chain(entry: ParsedEntry, member_id: str, link: str | None) -> tuple[str, ...]:
    keys: list[str] = []
    note = _note_key(entry)
    if note:
        keys.append(f"note:{note}")
    guid = (entry.guid or "").strip()
    if guid:
        keys.append(f"guid:{member_id}:{guid}")
    if link and not _is_site_root(link):
        keys.append(f"link:{link}")
    return tuple(keys) or (_hash_key(entry, member_id),)


def _content_hash(entry: ParsedEntry, link: str | None) -> str:
    # `updated` is left out on purpose: a bumped date alone is not an edit.
    fields = [
        entry.title,
        link,
        entry.summary_html,
        entry.content_html,
        entry.author,
        entry.thumbnail,
        _iso(entry.published),
    ]
    return f"{_HASH_VERSION}:{_digest(fields)}"


def identify(entry: ParsedEntry, member_id: str, feed_url: str) -> Candidate:
    """The entry's identity keys (strongest first) and content hash; no sanitising."""
    link = _canonical_link(entry, feed_url)
    keys = _chain(entry, member_id, link)
    return Candidate(member_id, keys, _content_hash(entry, link), entry)


def _own_identity(candidate: Candidate) -> str:
    """What tells this entry apart when its link cannot: note key, guid, else hash."""
    for key in candidate.keys:
        if not key.startswith("link:"):
            return key
    return _hash_key(candidate.entry, candidate.member_id)


def _ambiguous_links(candidates: Sequence[Candidate]) -> frozenset[str]:
    identities: dict[str, set[str]] = {}
    for candidate in candidates:
        own = _own_identity(candidate)
        for key in candidate.keys:
            if key.startswith("link:"):
                identities.setdefault(key, set()).add(own)
    return frozenset(key for key, owners in identities.items() if len(owners) > 1)


def _without(candidate: Candidate, dropped: frozenset[str]) -> Candidate:
    keys = tuple(k for k in candidate.keys if k not in dropped)
    if keys == candidate.keys:
        return candidate
    return replace(candidate, keys=keys or (_own_identity(candidate),))


def _ranked(keys: Iterable[str]) -> tuple[str, ...]:
    unique = dict.fromkeys(keys)
    return tuple(sorted(unique, key=lambda k: _KEY_RANK[k.partition(":")[0]]))


def _groups(candidates: Sequence[Candidate]) -> list[list[Candidate]]:
    """Candidates that share any key, transitively, in order of first appearance."""
    parent = list(range(len(candidates)))

    def root(i: int) -> int:
        while parent[i] != i:  # bounded: each step moves to a smaller index
            i = parent[i]
        return i

    first_with: dict[str, int] = {}
    for index, candidate in enumerate(candidates):
        for key in candidate.keys:
            a, b = root(index), root(first_with.setdefault(key, index))
            parent[max(a, b)] = min(a, b)
    grouped: dict[int, list[Candidate]] = {}
    for index, candidate in enumerate(candidates):
        grouped.setdefault(root(index), []).append(candidate)
    return list(grouped.values())


def identify_all(
    feed: ParsedFeed, member_id: str, feed_url: str
) -> tuple[Candidate, ...]:
    """Identify every entry of one document, merging copies of one item.

    A canonical link shared by entries that are otherwise different (different
    guids, e.g. every item linking to a homepage) is not an identity and is dropped
    before copies are merged; a merged candidate keeps the first copy's entry.
    """
    candidates = [identify(entry, member_id, feed_url) for entry in feed.entries]
    ambiguous = _ambiguous_links(candidates)
    candidates = [_without(candidate, ambiguous) for candidate in candidates]
    return tuple(
        replace(group[0], keys=_ranked(k for c in group for k in c.keys))
        for group in _groups(candidates)
    )


# --- finish --------------------------------------------------------------------


def _web_url(base: str | None, value: str | None) -> str | None:
    if not value:
        return None
    resolved = urls.resolve(base, strip_controls(value))
    return resolved if urls.is_web(resolved) else None


def _text(value: str | None) -> str | None:
    return strip_controls(value or "").strip() or None


def _title(raw: str | None, summary_html: str, link: str | None) -> str:
    title = to_text(raw or "")
    return title or to_text(summary_html)[:_TITLE_FROM_SUMMARY].strip() or link or ""


def _utc(value: datetime | None, default_tz: tzinfo, now: datetime) -> datetime | None:
    """`value` in UTC, a naive one read in `default_tz`; clamped to `now` if future."""
    if value is None:
        return None
    aware = value if value.utcoffset() is not None else value.replace(tzinfo=default_tz)
    try:
        converted = aware.astimezone(UTC)
    except OverflowError:  # within a day of datetime.min/max: past or future, clamp
        converted = _LATEST if value.year == MAXYEAR else _EARLIEST
    now_utc = now.astimezone(UTC)
    # a publisher's clock or template error (2099) must not pin an entry on top
    return now_utc if converted > now_utc + _FUTURE_SLACK else converted


def _tags(tags: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t for t in map(_text, tags) if t))


def finish(candidate: Candidate, default_tz: tzinfo, now: datetime) -> Article:
    """Sanitise a candidate into the Article to store (times in UTC)."""
    entry = candidate.entry
    base = entry.base
    link = _web_url(base, entry.link)
    excerpt = _READ_MORE.sub("", entry.summary_html or "")
    summary_html = clean_html(excerpt, base)
    content_html = clean_html(entry.content_html, base) if entry.content_html else ""
    return Article(
        keys=candidate.keys,
        content_hash=candidate.content_hash,
        title=_title(entry.title, summary_html, link),
        link=link,
        summary_html=summary_html,
        content_html=content_html.strip() or None,
        published=_utc(entry.published, default_tz, now),
        updated=_utc(entry.updated, default_tz, now),
        author=_text(entry.author),
        author_avatar=_web_url(base, entry.author_avatar),
        thumbnail=_web_url(base, entry.thumbnail),
        tags=_tags(entry.tags),
    )
