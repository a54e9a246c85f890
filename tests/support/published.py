"""Builders for publishing tests: Snapshots, members and articles, with defaults.

    snapshot(articles=[article(1), article(2, member_id="kobe")], title="ポータル")

`article(n)` is published n hours after START, so a larger n is newer. A snapshot
keeps the order aggregator/publish.py gives (articles newest published first,
members by name) whatever order they are passed in, and lists every member its
articles are credited to unless `members` is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from notifiers.published import (
    PublishedArticle,
    PublishedMember,
    PublishedSite,
    Snapshot,
)

START = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
MEMBER = "yokosuka"


def site(**overrides: Any) -> PublishedSite:
    fields: dict[str, Any] = {
        "title": "自治体AI活用ポータル",
        "base_url": "https://kairan.example.jp/",
        "language": "ja",
        "timezone": "Asia/Tokyo",
        "generator": "Kairan 0.1.0",
    }
    return PublishedSite(**(fields | overrides))


def member(member_id: str, **overrides: Any) -> PublishedMember:
    fields: dict[str, Any] = {
        "name": member_id.title(),
        "feed_url": f"https://{member_id}.example.jp/rss",
        "site": f"https://{member_id}.example.jp/",
        "prefecture": None,
        "tags": (),
        "articles": 0,
        "last_article": None,
        "updated": None,
        "failing": None,
    }
    return PublishedMember(id=member_id, **(fields | overrides))


def article(n: int, **overrides: Any) -> PublishedArticle:
    """Article n of MEMBER (by default), unedited, with content and a thumbnail."""
    published = START + timedelta(hours=n)
    member_id = overrides.get("member_id", MEMBER)
    link = f"https://{member_id}.example.jp/n/n{n:012x}"
    fields: dict[str, Any] = {
        "id": link,
        "member_id": member_id,
        "title": f"記事 {n}",
        "link": link,
        "published": published,
        "first_seen": published,
        "updated": published,
        "author": member_id.title(),
        "summary_html": f"<p>記事 {n} の要約です。</p>",
        "content_html": f"<p>記事 {n} の本文です。</p>",
        "thumbnail": f"https://assets.example.jp/{n}.jpg",
        "tags": (),
    }
    return PublishedArticle(**(fields | overrides))


def edited(
    original: PublishedArticle, hours: int = 1, **changes: Any
) -> PublishedArticle:
    """`original` as it reads after an edit `hours` after its last update."""
    updated = original.updated + timedelta(hours=hours)
    return dataclasses.replace(original, updated=updated, **changes)


def snapshot(
    articles: Iterable[PublishedArticle] = (),
    members: Iterable[PublishedMember] | None = None,
    **site_overrides: Any,
) -> Snapshot:
    ordered = sorted(articles, key=lambda a: a.published, reverse=True)
    if members is None:
        credited = dict.fromkeys(a.member_id for a in ordered)
        members = [_counted(member(m), ordered) for m in credited]
    return Snapshot(
        site=site(**site_overrides),
        members=tuple(sorted(members, key=lambda m: (m.name, m.id))),
        articles=tuple(ordered),
        built_at=max((a.updated for a in ordered), default=START),
    )


def _counted(
    published: PublishedMember, articles: list[PublishedArticle]
) -> PublishedMember:
    """`published` with the counts the portal shows, from its credited articles."""
    own = [a for a in articles if a.member_id == published.id]
    return dataclasses.replace(
        published,
        articles=len(own),
        last_article=max((a.published for a in own), default=None),
        updated=max((a.updated for a in own), default=None),
    )
