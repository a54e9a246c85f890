"""Ordered, named schema migrations; refuse a database newer than this code."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import sqlite_utils

from aggregator.errors import SchemaVersionError, StoreError

Migration = Callable[[sqlite_utils.Database], None]

MIGRATIONS = sqlite_utils.Migrations("kairan")
KNOWN: list[str] = []  # every migration name this code knows, in order


def migration(name: str) -> Callable[[Migration], Migration]:
    """Register a migration with sqlite-utils and in KNOWN."""

    def register(fn: Migration) -> Migration:
        KNOWN.append(name)
        return MIGRATIONS(name=name)(fn)

    return register


def run_script(db: sqlite_utils.Database, script: str) -> None:
    """Run ;-separated DDL inside the migration's transaction.

    ``executescript`` would COMMIT the open transaction first, so a failing
    migration could leave half a schema behind.
    """
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


@migration("0001_foundation")
def foundation(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        CREATE TABLE members (
            id TEXT PRIMARY KEY,
            configured_url TEXT NOT NULL,
            url TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'new'
                CHECK (state IN ('new', 'ok', 'failing', 'gone')),
            etag TEXT,
            last_modified TEXT,
            body_hash TEXT,
            baseline_done INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            next_poll_at TEXT,
            last_polled_at TEXT,
            last_success_at TEXT,
            last_error TEXT,
            last_error_class TEXT,
            moved_from TEXT,
            moved_at TEXT
        );
        CREATE TABLE entries (
            id INTEGER PRIMARY KEY,
            member_id TEXT NOT NULL REFERENCES members(id),
            title TEXT NOT NULL,
            link TEXT,
            summary_html TEXT NOT NULL,
            content_html TEXT,
            published TEXT,
            updated TEXT,
            first_seen TEXT NOT NULL,
            changed_at TEXT NOT NULL,
            author TEXT,
            author_avatar TEXT,
            thumbnail TEXT,
            tags TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL CHECK (status IN ('baseline', 'new', 'edited')),
            content_hash TEXT NOT NULL
        );
        CREATE INDEX entries_by_date ON entries (coalesce(published, first_seen));
        CREATE INDEX entries_by_member ON entries (member_id);
        -- The identity chain: every key an entry is known by points at one entry.
        CREATE TABLE entry_keys (
            key TEXT PRIMARY KEY,
            entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE
        ) WITHOUT ROWID;
        CREATE INDEX entry_keys_by_entry ON entry_keys (entry_id);
        -- Every member feed that carried an entry, with the copy it carried.
        CREATE TABLE sightings (
            entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
            member_id TEXT NOT NULL REFERENCES members(id),
            feed_url TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            PRIMARY KEY (entry_id, member_id)
        ) WITHOUT ROWID;
        CREATE INDEX sightings_by_member ON sightings (member_id);
        -- Keys of removed entries: they never come back.
        CREATE TABLE tombstones (
            key TEXT PRIMARY KEY,
            title TEXT,
            removed_at TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE fetch_log (
            id INTEGER PRIMARY KEY,
            member_id TEXT NOT NULL,
            started_at TEXT NOT NULL,
            outcome TEXT NOT NULL,
            url TEXT NOT NULL,
            status INTEGER,
            error_class TEXT,
            error TEXT,
            duration_ms INTEGER NOT NULL,
            new_count INTEGER NOT NULL DEFAULT 0,
            edited_count INTEGER NOT NULL DEFAULT 0,
            unchanged_count INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX fetch_log_by_member ON fetch_log (member_id, started_at);
        """,
    )


@migration("0002_followers")
def followers(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        -- AUTOINCREMENT here and below: an id is never reused after a deletion
        -- (forget), because tokens and webhook-ids are derived from it.
        CREATE TABLE subscribers (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL CHECK (kind IN ('email', 'webhook')),
            address TEXT NOT NULL,
            -- address_key: the canonical address, unique among subscribers
            address_key TEXT NOT NULL UNIQUE,
            state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'paused',
                'unsubscribed', 'bouncing', 'disabled')),
            state_reason TEXT,
            state_changed_at TEXT NOT NULL,
            cadence TEXT NOT NULL CHECK (cadence IN ('immediate', 'daily', 'weekly')),
            hour INTEGER NOT NULL CHECK (hour BETWEEN 0 AND 23),
            weekday INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
            timezone TEXT NOT NULL,
            language TEXT NOT NULL CHECK (language IN ('ja', 'en')),
            filter_members TEXT NOT NULL DEFAULT '[]',
            filter_tags TEXT NOT NULL DEFAULT '[]',
            filter_keywords TEXT NOT NULL DEFAULT '[]',
            created_at TEXT NOT NULL,
            confirmed_at TEXT,
            notify_since TEXT,
            consent_at TEXT NOT NULL,
            consent_source TEXT NOT NULL
                CHECK (consent_source IN ('cli', 'import', 'web')),
            consent_origin TEXT,
            token_generation INTEGER NOT NULL DEFAULT 1,
            unsubscribe_token_hash TEXT UNIQUE,
            confirm_token_hash TEXT UNIQUE,
            confirm_expires_at TEXT,
            hard_bounces INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX subscribers_by_state ON subscribers (state);
        -- Forgotten addresses, as hashes: a re-import cannot silently re-add them.
        CREATE TABLE suppressions (
            address_hash TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            created_at TEXT NOT NULL
        ) WITHOUT ROWID;
        -- One message: its Message-ID and Date are fixed when it is claimed.
        CREATE TABLE batches (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
            kind TEXT NOT NULL
                CHECK (kind IN ('immediate', 'daily', 'weekly', 'confirm', 'webhook')),
            message_id TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL
        );
        CREATE INDEX batches_by_subscriber ON batches (subscriber_id);
        -- The outbox: one row per (article, subscriber, channel), written in the
        -- transaction that stored the article. entry_id is NULL for a confirmation.
        CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            entry_id INTEGER REFERENCES entries(id) ON DELETE CASCADE,
            channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending',
                'sending', 'retry', 'sent', 'failed', 'cancelled')),
            due_at TEXT NOT NULL,
            lease_until TEXT,
            batch_id INTEGER REFERENCES batches(id) ON DELETE SET NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            UNIQUE (entry_id, subscriber_id, channel)
        );
        CREATE INDEX deliveries_due ON deliveries (state, due_at);
        CREATE INDEX deliveries_by_subscriber ON deliveries (subscriber_id, state);
        CREATE INDEX deliveries_by_batch ON deliveries (batch_id)
        """,
    )


@migration("0003_publishing")
def publishing(db: sqlite_utils.Database) -> None:
    # atom_id: an entry's published id (Atom id, JSON Feed id), chosen once at
    # its first publish and never recomputed, so it survives new keys and edits.
    run_script(
        db,
        """
        ALTER TABLE entries ADD COLUMN atom_id TEXT;
        CREATE UNIQUE INDEX entries_by_atom_id ON entries (atom_id)
        """,
    )


@migration("0004_webhooks")
def webhooks(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        -- A webhook endpoint's first failure since its last success (a success
        -- clears it). Failing for webhooks.disable_after disables the endpoint.
        ALTER TABLE subscribers ADD COLUMN failing_since TEXT;
        -- A webhook's body, fixed at its first claim: every retry is byte-identical.
        ALTER TABLE batches ADD COLUMN payload BLOB;
        -- Signing secrets (Standard Webhooks whsec_…), stored as given since
        -- signing needs them. An old one signs beside the new until expires_at.
        CREATE TABLE webhook_secrets (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,
            secret TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT
        );
        CREATE INDEX webhook_secrets_by_subscriber ON webhook_secrets (subscriber_id)
        """,
    )


_AUDIENCE_CHANGES = (
    "INSERT ON subscribers",
    "DELETE ON subscribers",
    # Only what decides who hears of an article, and when: a delivery's
    # bounce or failure counters change far more often and do not matter.
    "UPDATE OF state, kind, cadence, hour, weekday, timezone, notify_since, "
    "filter_members, filter_tags, filter_keywords ON subscribers",
)


@migration("0005_scale")
def scale(db: sqlite_utils.Database) -> None:
    run_script(
        db,
        """
        -- Bumped by the triggers below: a poller's cached audience is read again
        -- only when it changed (aggregator/audience.py).
        CREATE TABLE audience_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        );
        INSERT INTO audience_version (id, version) VALUES (1, 0);
        -- The outbox's depth by state and channel, with its ages, from the index
        -- alone (status, /metrics): at a million rows reading the table took
        -- seconds. It also serves everything deliveries_due did.
        DROP INDEX deliveries_due;
        CREATE INDEX deliveries_by_state
            ON deliveries (state, channel, due_at, created_at)
        """,
    )
    # One statement each: a trigger body holds semicolons, which run_script splits on.
    for n, event in enumerate(_AUDIENCE_CHANGES):
        db.execute(
            f"""CREATE TRIGGER audience_changed_{n} AFTER {event}
                BEGIN UPDATE audience_version SET version = version + 1; END"""  # noqa: S608 (constant DDL)
        )


def apply(db: sqlite_utils.Database, where: str) -> None:
    """Apply pending migrations; refuse a database migrated by a newer Kairan."""
    known = set(KNOWN)
    try:
        applied = {m.name for m in MIGRATIONS.applied(db)}
        unknown = sorted(applied - known)
        if unknown:
            raise SchemaVersionError(
                f"{where}: the database was upgraded by a newer kairan "
                f"(unknown migration {unknown[0]}); upgrade kairan"
            )
        if MIGRATIONS.pending(db):
            MIGRATIONS.apply(db)
    except sqlite3.Error as e:
        raise StoreError(f"{where}: could not migrate the database") from e
