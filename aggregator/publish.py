"""`kairan publish`: the database → a Snapshot → every artefact → data/public/.

Reading (SQL) stays here, writing in `public_dir.py`; the builders in notifiers
are pure.
"""

from __future__ import annotations

import json
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import sqlite_utils

from aggregator import __version__, fetch, store
from aggregator.db import open_database, read_snapshot, unit_of_work
from aggregator.models import FeedState, MemberState
from aggregator.public_dir import write_artefacts
from aggregator.published_ids import assign_atom_ids
from aggregator.settings import Settings
from aggregator.timefmt import from_db, from_db_required
from notifiers import atom, jsonfeed, opml, portal, websub
from notifiers.published import (
    Artefact,
    PublishedArticle,
    PublishedMember,
    PublishedSite,
    Snapshot,
)

# --- the snapshot -----------------------------------------------------------


def site_of(settings: Settings) -> PublishedSite:
    publish = settings.publish
    return PublishedSite(
        title=settings.site.title,
        base_url=settings.site.base_url,
        language=settings.site.language,
        timezone=settings.site.timezone,
        generator=f"Kairan {__version__}",
        icon=publish.icon,
        logo=publish.logo,
        websub_hub=publish.websub_hub,
        subscribe_url=f"{settings.site.base_url}subscribe",
    )


def take_snapshot(
    db: sqlite_utils.Database, settings: Settings, now: datetime
) -> Snapshot:
    """Everything published, read in one go (the caller holds one transaction)."""
    names = {m.id: m.name for m in settings.members}
    articles = tuple(_articles(db, names))
    return Snapshot(
        site=site_of(settings),
        members=tuple(_members(db, settings, now)),
        articles=articles,
        built_at=max((a.updated for a in articles), default=now),
    )


def _articles(
    db: sqlite_utils.Database, names: dict[str, str]
) -> list[PublishedArticle]:
    rows = store.dict_rows(
        db.execute(
            """SELECT id, atom_id, member_id, title, link, summary_html, content_html,
                      published, updated, first_seen, changed_at, author, thumbnail,
                      tags
               FROM entries ORDER BY coalesce(published, first_seen) DESC, id DESC"""
        )
    )
    return [_article(row, names) for row in rows]


def _article(row: dict[str, object], names: dict[str, str]) -> PublishedArticle:
    first_seen = from_db_required(str(row["first_seen"]))
    published = from_db(_text(row["published"])) or first_seen
    updated = from_db(_text(row["updated"])) or published
    changed_at = from_db_required(str(row["changed_at"]))
    if changed_at > first_seen:  # Kairan saw it change (a baseline entry too)
        updated = max(updated, changed_at)
    member_id = str(row["member_id"])
    return PublishedArticle(
        id=str(row["atom_id"]),
        member_id=member_id,
        title=str(row["title"]),
        link=_web(_text(row["link"])),
        published=published,
        first_seen=first_seen,
        updated=max(updated, published),
        author=_text(row["author"]) or names.get(member_id, member_id),
        summary_html=str(row["summary_html"]),
        content_html=_text(row["content_html"]),
        thumbnail=_web(_text(row["thumbnail"])),
        tags=tuple(json.loads(str(row["tags"]))),
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _web(url: str | None) -> str | None:
    """Only absolute http(s) URLs are published as links or images."""
    if url is None:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def _members(
    db: sqlite_utils.Database, settings: Settings, now: datetime
) -> list[PublishedMember]:
    states = store.feed_states(db)
    counts = store.member_counts(db, now)
    changed = dict(
        db.execute("SELECT member_id, max(changed_at) FROM entries GROUP BY member_id")
    )
    published = []
    for member in sorted(settings.members, key=lambda m: (m.name, m.id)):
        if member.paused:
            continue
        state = states.get(member.id)
        count = counts.get(member.id, store.MemberCounts(0, None, 0))
        published.append(
            PublishedMember(
                id=member.id,
                name=member.name,
                feed_url=state.url if state else member.feed,
                site=member.site,
                prefecture=member.prefecture,
                tags=member.tags,
                articles=count.articles,
                last_article=count.last_article,
                updated=from_db(changed.get(member.id)),
                failing=_failing(state),
            )
        )
    return published


def _failing(state: FeedState | None) -> str | None:
    if state is None:
        return None
    if state.state is MemberState.GONE:
        return "gone"
    if state.state is MemberState.FAILING:
        return state.last_error_class or "error"
    return None


def build_artefacts(snapshot: Snapshot, feed_size: int) -> list[Artefact]:
    return [
        *atom.build_feeds(snapshot, feed_size),
        jsonfeed.build_json_feed(snapshot, feed_size),
        opml.build_members_opml(snapshot),
        *portal.build_portal(snapshot, feed_size),
    ]


# --- writing ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishReport:
    out_dir: Path
    written: tuple[str, ...]  # paths whose bytes changed (or are new)
    unchanged: int
    removed: tuple[str, ...]  # left over from an earlier publish, now gone
    ids_assigned: int

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def publish(
    db: sqlite_utils.Database,
    settings: Settings,
    now: datetime,
    out_dir: Path | None = None,
) -> PublishReport:
    out = out_dir or settings.public_dir
    host = urlsplit(settings.site.base_url).hostname or "localhost"
    with unit_of_work(db):
        assigned = assign_atom_ids(db, host)
    # A read transaction, not a write one: the daemon publishes on a connection
    # of its own and must not hold the write lock while the snapshot is read.
    with read_snapshot(db):
        snapshot = take_snapshot(db, settings, now)
    artefacts = build_artefacts(snapshot, settings.publish.feed_size)
    written, unchanged, removed = write_artefacts(out, artefacts)
    return PublishReport(out, tuple(written), unchanged, tuple(removed), assigned)


def publish_fresh(settings: Settings, now: datetime) -> PublishReport:
    """`publish` on a connection of its own: the daemon runs it in a thread."""
    with closing(open_database(settings.database_path, create=False)) as db:
        return publish(db, settings, now)


async def ping_hub(settings: Settings, report: PublishReport) -> str | None:
    """Tell the hub about every feed this publish changed (none: no request)."""
    hub = settings.publish.websub_hub
    feeds = [p for p in report.written if p.endswith((".atom", ".json"))]
    if hub is None or not feeds:
        return None
    topics = [settings.site.base_url + quote(p) for p in feeds]
    return await websub.ping(
        hub, topics, user_agent=fetch.user_agent(settings.poll, settings.site)
    )
