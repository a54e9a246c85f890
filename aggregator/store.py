"""SQL for members' fetch state and entries: look up by identity keys, write, list.

Every function takes an open Database and runs inside the caller's transaction;
`ingest.py` and the CLI decide where a unit of work begins and ends.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlite_utils

from aggregator.dedup import Known
from aggregator.errors import UsageError
from aggregator.models import (
    Article,
    EntryStatus,
    FeedState,
    Member,
    MemberState,
    StoredEntry,
    Validators,
)
from aggregator.timefmt import from_db, from_db_required, to_db

# SQLite's default limit on bound parameters is 999 on old builds: stay below it.
CHUNK = 500
T = TypeVar("T")


def chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


# --- members' fetch state --------------------------------------------------------


def sync_members(db: sqlite_utils.Database, members: Sequence[Member]) -> None:
    """Give every configured member a state row; a changed `feed` starts afresh."""
    for member in members:
        row = db.execute(
            "SELECT configured_url FROM members WHERE id = ?", [member.id]
        ).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO members (id, configured_url, url) VALUES (?, ?, ?)",
                [member.id, member.feed, member.feed],
            )
        elif row[0] != member.feed:
            db.execute(
                """UPDATE members SET configured_url = ?, url = ?, etag = NULL,
                   last_modified = NULL, body_hash = NULL, moved_from = NULL,
                   moved_at = NULL, failures = 0, next_poll_at = NULL,
                   state = CASE state WHEN 'gone' THEN 'new' ELSE state END
                   WHERE id = ?""",
                [member.feed, member.feed, member.id],
            )


def feed_states(db: sqlite_utils.Database) -> dict[str, FeedState]:
    states = map(row_to_state, dict_rows(db.execute("SELECT * FROM members")))
    return {state.member_id: state for state in states}


def dict_rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def row_to_state(row: dict[str, Any]) -> FeedState:
    return FeedState(
        member_id=row["id"],
        url=row["url"],
        configured_url=row["configured_url"],
        state=MemberState(row["state"]),
        validators=Validators(row["etag"], row["last_modified"]),
        body_hash=row["body_hash"],
        baseline_done=bool(row["baseline_done"]),
        failures=row["failures"],
        next_poll_at=from_db(row["next_poll_at"]),
        last_polled_at=from_db(row["last_polled_at"]),
        last_success_at=from_db(row["last_success_at"]),
        last_error=row["last_error"],
        last_error_class=row["last_error_class"],
        moved_from=row["moved_from"],
        moved_at=from_db(row["moved_at"]),
    )


@dataclass(frozen=True, slots=True)
class FetchOutcome:
    """What one poll of one member changes in its state row."""

    member_id: str
    now: datetime
    next_poll_at: datetime | None
    url: str  # where the next poll goes (moved on 301/308)
    moved_from: str | None = None
    validators: Validators | None = None  # None: keep the stored ones
    body_hash: str | None = None  # None: keep the stored one
    error: str | None = None
    error_class: str | None = None
    gone: bool = False


def record_outcome(db: sqlite_utils.Database, outcome: FetchOutcome) -> None:
    params: dict[str, Any] = {
        "id": outcome.member_id,
        "now": to_db(outcome.now),
        "next": to_db(outcome.next_poll_at),
        "url": outcome.url,
        "moved_from": outcome.moved_from,
    }
    if outcome.error is None:
        validators = outcome.validators
        db.execute(
            """UPDATE members SET state = 'ok', failures = 0, last_error = NULL,
               last_error_class = NULL, last_polled_at = :now,
               last_success_at = :now, next_poll_at = :next, url = :url,
               etag = CASE WHEN :keep THEN etag ELSE :etag END,
               last_modified = CASE WHEN :keep THEN last_modified ELSE :lm END,
               body_hash = coalesce(:hash, body_hash),
               moved_from = coalesce(:moved_from, moved_from),
               moved_at = CASE WHEN :moved_from IS NULL THEN moved_at ELSE :now END
               WHERE id = :id""",
            params
            | {
                "keep": validators is None,
                "etag": validators.etag if validators else None,
                "lm": validators.last_modified if validators else None,
                "hash": outcome.body_hash,
            },
        )
        return
    db.execute(
        """UPDATE members SET state = :state, failures = failures + 1,
           last_error = :error, last_error_class = :class, last_polled_at = :now,
           next_poll_at = :next, url = :url,
           moved_from = coalesce(:moved_from, moved_from),
           moved_at = CASE WHEN :moved_from IS NULL THEN moved_at ELSE :now END
           WHERE id = :id""",
        params
        | {
            "error": outcome.error,
            "class": outcome.error_class,
            "state": (MemberState.GONE if outcome.gone else MemberState.FAILING).value,
        },
    )


def mark_baseline_done(db: sqlite_utils.Database, member_id: str) -> None:
    db.execute("UPDATE members SET baseline_done = 1 WHERE id = ?", [member_id])


def resume_member(db: sqlite_utils.Database, member_id: str) -> None:
    """Clear a gone/failing state so the member is polled at the next cycle."""
    db.execute(
        """UPDATE members SET state = CASE state WHEN 'gone' THEN 'failing'
           ELSE state END, failures = 0, next_poll_at = NULL WHERE id = ?""",
        [member_id],
    )


def log_fetch(db: sqlite_utils.Database, row: dict[str, Any]) -> None:
    db.execute(
        """INSERT INTO fetch_log (member_id, started_at, outcome, url, status,
           error_class, error, duration_ms, new_count, edited_count, unchanged_count)
           VALUES (:member_id, :started_at, :outcome, :url, :status, :error_class,
           :error, :duration_ms, :new_count, :edited_count, :unchanged_count)""",
        row,
    )


# --- entries by identity -----------------------------------------------------------


def lookup_keys(db: sqlite_utils.Database, keys: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in chunks(keys):
        found.update(
            db.execute(
                f"SELECT key, entry_id FROM entry_keys WHERE key IN ({placeholders(len(part))})",  # noqa: S608, E501
                list(part),
            ).fetchall()
        )
    return found


def tombstoned(db: sqlite_utils.Database, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for part in chunks(keys):
        found.update(
            key
            for (key,) in db.execute(
                f"SELECT key FROM tombstones WHERE key IN ({placeholders(len(part))})",  # noqa: S608
                list(part),
            )
        )
    return found


def known(db: sqlite_utils.Database, entry_id: int, member_id: str) -> Known:
    member, content_hash = db.execute(
        "SELECT member_id, content_hash FROM entries WHERE id = ?", [entry_id]
    ).fetchone()
    sighting = db.execute(
        "SELECT content_hash FROM sightings WHERE entry_id = ? AND member_id = ?",
        [entry_id, member_id],
    ).fetchone()
    return Known(
        entry_id=entry_id,
        member_id=member,
        content_hash=content_hash,
        sighting_hash=sighting[0] if sighting else None,
    )


def article_columns(article: Article) -> dict[str, Any]:
    return {
        "title": article.title,
        "link": article.link,
        "summary_html": article.summary_html,
        "content_html": article.content_html,
        "published": to_db(article.published),
        "updated": to_db(article.updated),
        "author": article.author,
        "author_avatar": article.author_avatar,
        "thumbnail": article.thumbnail,
        "tags": json.dumps(list(article.tags), ensure_ascii=False),
        "content_hash": article.content_hash,
    }


def insert_entry(
    db: sqlite_utils.Database,
    article: Article,
    member_id: str,
    status: EntryStatus,
    now: datetime,
) -> int:
    columns = article_columns(article) | {
        "member_id": member_id,
        "status": status.value,
        "first_seen": to_db(now),
        "changed_at": to_db(now),
    }
    names = ", ".join(columns)
    values = ", ".join(f":{name}" for name in columns)
    row = db.execute(
        f"INSERT INTO entries ({names}) VALUES ({values}) RETURNING id",  # noqa: S608 - fixed names
        columns,
    ).fetchone()
    entry_id = int(row[0])
    add_keys(db, entry_id, article.keys)
    return entry_id


def update_entry(
    db: sqlite_utils.Database, entry_id: int, article: Article, now: datetime
) -> None:
    """An edit: the stored copy follows the feed; the entry is marked edited."""
    columns = article_columns(article)
    assignments = ", ".join(f"{name} = :{name}" for name in columns)
    db.execute(
        f"""UPDATE entries SET {assignments}, changed_at = :now,
            status = CASE status WHEN 'baseline' THEN 'baseline' ELSE 'edited' END
            WHERE id = :id""",  # noqa: S608 - fixed column names
        columns | {"now": to_db(now), "id": entry_id},
    )
    add_keys(db, entry_id, article.keys)


def add_keys(db: sqlite_utils.Database, entry_id: int, keys: Iterable[str]) -> None:
    # A key already owned by another entry stays with it: the chain order decides.
    db.conn.executemany(
        "INSERT OR IGNORE INTO entry_keys (key, entry_id) VALUES (?, ?)",
        [(key, entry_id) for key in keys],
    )


def record_sighting(
    db: sqlite_utils.Database,
    entry_id: int,
    member_id: str,
    feed_url: str,
    content_hash: str,
    now: datetime,
) -> None:
    db.execute(
        """INSERT INTO sightings (entry_id, member_id, feed_url, first_seen,
           last_seen, content_hash) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (entry_id, member_id) DO UPDATE SET
           last_seen = excluded.last_seen, feed_url = excluded.feed_url,
           content_hash = excluded.content_hash""",
        [entry_id, member_id, feed_url, to_db(now), to_db(now), content_hash],
    )


def set_credit(db: sqlite_utils.Database, entry_id: int, member_id: str) -> None:
    db.execute("UPDATE entries SET member_id = ? WHERE id = ?", [member_id, entry_id])


# --- reading and removing entries ----------------------------------------------------


ENTRY_ORDER = "coalesce(published, first_seen) DESC, id DESC"


def list_entries(
    db: sqlite_utils.Database,
    *,
    member_id: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[StoredEntry]:
    where = ["1 = 1"]
    params: list[Any] = []
    if member_id is not None:
        where.append("member_id = ?")
        params.append(member_id)
    if since is not None:
        where.append("coalesce(published, first_seen) >= ?")
        params.append(to_db(since))
    rows = db.execute(
        f"SELECT * FROM entries WHERE {' AND '.join(where)} "  # noqa: S608 - fixed fragments
        f"ORDER BY {ENTRY_ORDER} LIMIT ?",
        [*params, limit],
    )
    return rows_to_entries(db, rows)


def get_entry(db: sqlite_utils.Database, entry_id: int) -> StoredEntry:
    entries = rows_to_entries(
        db, db.execute("SELECT * FROM entries WHERE id = ?", [entry_id])
    )
    if not entries:
        raise UsageError(f"no entry with id {entry_id}")
    return entries[0]


def get_entries(
    db: sqlite_utils.Database, entry_ids: Sequence[int]
) -> dict[int, StoredEntry]:
    """Several entries by id in one query each CHUNK, without their identity keys
    (a mail needs the article, not how it was recognised)."""
    found: dict[int, StoredEntry] = {}
    for part in chunks(list(entry_ids)):
        cursor = db.execute(
            f"SELECT * FROM entries WHERE id IN ({placeholders(len(part))})",  # noqa: S608 - placeholders only
            list(part),
        )
        found.update((e.id, e) for e in rows_to_entries(db, cursor, with_keys=False))
    return found


def rows_to_entries(
    db: sqlite_utils.Database, cursor: sqlite3.Cursor, *, with_keys: bool = True
) -> list[StoredEntry]:
    rows = dict_rows(cursor)
    keys = keys_of(db, [row["id"] for row in rows]) if with_keys else {}
    return [
        StoredEntry(
            id=row["id"],
            member_id=row["member_id"],
            keys=tuple(keys.get(row["id"], ())),
            title=row["title"],
            link=row["link"],
            summary_html=row["summary_html"],
            content_html=row["content_html"],
            published=from_db(row["published"]),
            updated=from_db(row["updated"]),
            first_seen=from_db_required(row["first_seen"]),
            author=row["author"],
            author_avatar=row["author_avatar"],
            thumbnail=row["thumbnail"],
            status=EntryStatus(row["status"]),
            content_hash=row["content_hash"],
            tags=tuple(json.loads(row["tags"])),
            atom_id=row["atom_id"],
        )
        for row in rows
    ]


def keys_of(
    db: sqlite_utils.Database, entry_ids: Sequence[int]
) -> dict[int, list[str]]:
    result: dict[int, list[str]] = {}
    for start in range(0, len(entry_ids), CHUNK):
        part = list(entry_ids[start : start + CHUNK])
        for key, entry_id in db.execute(
            f"SELECT key, entry_id FROM entry_keys WHERE entry_id IN ({placeholders(len(part))})",  # noqa: S608, E501
            part,
        ):
            result.setdefault(entry_id, []).append(key)
    for keys in result.values():
        keys.sort(key=lambda key: KEY_RANK.get(key.split(":", 1)[0], len(KEY_RANK)))
    return result


# The identity chain's order (models.Candidate): strongest key first.
KEY_RANK = {"note": 0, "guid": 1, "link": 2, "hash": 3}


def remove_entry(
    db: sqlite_utils.Database, entry_id: int, now: datetime
) -> StoredEntry:
    """Delete an entry and tombstone every key it was known by."""
    entry = get_entry(db, entry_id)
    db.conn.executemany(
        "INSERT OR IGNORE INTO tombstones (key, title, removed_at) VALUES (?, ?, ?)",
        [(key, entry.title, to_db(now)) for key in entry.keys],
    )
    db.execute("DELETE FROM entries WHERE id = ?", [entry_id])
    return entry


def sightings_of(db: sqlite_utils.Database, entry_id: int) -> list[dict[str, Any]]:
    return dict_rows(
        db.execute(
            "SELECT member_id, feed_url, first_seen, last_seen FROM sightings "
            "WHERE entry_id = ? ORDER BY first_seen",
            [entry_id],
        )
    )


@dataclass(frozen=True, slots=True)
class MemberCounts:
    articles: int
    last_article: datetime | None
    recent: int  # articles first seen in the recent window


def member_counts(
    db: sqlite_utils.Database, recent_since: datetime
) -> dict[str, MemberCounts]:
    rows = db.execute(
        """SELECT member_id, count(*), max(coalesce(published, first_seen)),
           sum(coalesce(published, first_seen) >= ?)
           FROM entries GROUP BY member_id""",
        [to_db(recent_since)],
    ).fetchall()
    return {
        member: MemberCounts(count, from_db(last), recent or 0)
        for member, count, last, recent in rows
    }
