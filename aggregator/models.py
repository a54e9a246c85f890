"""Frozen, slotted dataclasses that cross module boundaries (no I/O, no logic).

The hand-offs of the pipeline, in order:

    Member ──fetch──► Fetched | NotModified ──parse──► ParsedFeed(ParsedEntry…)
           ──normalize.identify──► Candidate ──dedup──► Verdict
           ──normalize.finish (only NEW / EDITED)──► Article ──ingest──► rows
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Member:
    """One publisher, as config.toml lists it (the single source of truth)."""

    id: str
    name: str
    feed: str
    site: str | None = None
    prefecture: str | None = None
    tags: tuple[str, ...] = ()
    paused: bool = False

    @property
    def is_magazine(self) -> bool:
        """A magazine collects other members' articles; it is credited last."""
        return "magazine" in self.tags


# --- fetch ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validators:
    """HTTP caching validators, kept byte for byte as the server sent them."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class CachingHints:
    """What the server said about how long the response stays fresh."""

    max_age: int | None = None  # seconds, from Cache-Control (None when no-cache)
    expires: datetime | None = None  # from Expires, UTC


@dataclass(frozen=True, slots=True)
class FetchRequest:
    member_id: str
    url: str
    validators: Validators = Validators()


@dataclass(frozen=True, slots=True)
class Fetched:
    """A 200 response whose body was read in full (and under the byte cap)."""

    url: str  # the final URL, after redirects
    status: int
    body: bytes  # decoded from Content-Encoding, not from its charset
    content_type: str | None  # the whole header, charset included
    validators: Validators
    caching: CachingHints
    moved_to: str | None  # set when the redirect chain was only 301/308 hops
    elapsed: float  # seconds


@dataclass(frozen=True, slots=True)
class NotModified:
    """A 304: nothing to parse. A 304's validators replace the stored ones."""

    url: str
    validators: Validators
    caching: CachingHints
    moved_to: str | None
    elapsed: float


FetchResult = Fetched | NotModified


# --- parse ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    """One item as the feed gave it: HTML not yet sanitised, text not trimmed.

    Datetimes are timezone-aware when the feed named a zone and naive when it did
    not; `normalize` decides what a naive one means.
    """

    guid: str | None
    link: str | None
    title: str | None  # may contain markup (Atom type="html")
    summary_html: str | None
    content_html: str | None
    published: datetime | None
    updated: datetime | None
    author: str | None = None
    author_avatar: str | None = None
    thumbnail: str | None = None
    tags: tuple[str, ...] = ()
    base: str | None = None  # xml:base / document URL, for relative links in the HTML


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    format: str  # "rss20", "atom10", "json11", … as detected
    title: str | None
    link: str | None
    feed_id: str | None  # atom:id / JSON Feed feed_url, when given
    language: str | None
    ttl_minutes: int | None  # RSS <ttl>
    entries: tuple[ParsedEntry, ...]
    warnings: tuple[str, ...] = ()  # e.g. a charset that lied; logged, not fatal


# --- identity and dedup --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Candidate:
    """A parsed entry with its identity keys and content hash, not yet sanitised.

    ``keys`` is the identity chain, strongest first, each prefixed by its kind:
    ``note:<note key>`` (global), ``guid:<member>:<guid>``, ``link:<canonical>``
    (global), ``hash:<member>:<sha256 of title and date>``.
    """

    member_id: str
    keys: tuple[str, ...]
    content_hash: str
    entry: ParsedEntry


class Verdict(enum.Enum):
    NEW = "new"
    EDITED = "edited"
    UNCHANGED = "unchanged"
    TOMBSTONED = "tombstoned"


class EntryStatus(enum.StrEnum):
    BASELINE = "baseline"  # stored by a member's first poll: never notified
    NEW = "new"
    EDITED = "edited"


@dataclass(frozen=True, slots=True)
class Article:
    """A sanitised entry, ready to store."""

    keys: tuple[str, ...]
    content_hash: str
    title: str
    link: str | None
    summary_html: str  # sanitised excerpt (note's trailing 続きをみる removed)
    content_html: str | None
    published: datetime | None  # UTC
    updated: datetime | None  # UTC
    author: str | None
    author_avatar: str | None
    thumbnail: str | None
    tags: tuple[str, ...] = ()


# --- stored state --------------------------------------------------------------


class MemberState(enum.StrEnum):
    NEW = "new"  # never fetched successfully
    OK = "ok"
    FAILING = "failing"
    GONE = "gone"  # 410: not polled until resumed


@dataclass(frozen=True, slots=True)
class FeedState:
    """A member's fetch state as the database holds it."""

    member_id: str
    url: str  # where we fetch now (moves on 301/308)
    configured_url: str
    state: MemberState
    validators: Validators
    body_hash: str | None
    baseline_done: bool
    failures: int
    next_poll_at: datetime | None
    last_polled_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_class: str | None
    moved_from: str | None
    moved_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: int
    member_id: str
    keys: tuple[str, ...]
    title: str
    link: str | None
    summary_html: str
    content_html: str | None
    published: datetime | None
    updated: datetime | None
    first_seen: datetime
    author: str | None
    author_avatar: str | None
    thumbnail: str | None
    status: EntryStatus
    content_hash: str
    tags: tuple[str, ...] = field(default=())
    atom_id: str | None = None  # its published id, once assigned (published_ids)


# --- followers -----------------------------------------------------------------


class SubscriberKind(enum.StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class SubscriberState(enum.StrEnum):
    PENDING = "pending"  # waiting for the double opt-in confirmation
    ACTIVE = "active"
    PAUSED = "paused"  # by the operator: nothing is enqueued or sent
    UNSUBSCRIBED = "unsubscribed"
    BOUNCING = "bouncing"  # too many hard bounces: no longer mailed
    DISABLED = "disabled"  # a webhook endpoint that is gone or failed for days


class Cadence(enum.StrEnum):
    IMMEDIATE = "immediate"  # one message per poll cycle with new articles
    DAILY = "daily"
    WEEKLY = "weekly"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a subscriber's mail is due; hour and weekday are in its own timezone."""

    cadence: Cadence = Cadence.IMMEDIATE
    hour: int = 8  # 0-23, local
    weekday: int = 0  # 0 = Monday … 6 = Sunday (weekly only)


@dataclass(frozen=True, slots=True)
class Filters:
    """None of them set: everything. Otherwise every set dimension must match."""

    members: tuple[str, ...] = ()  # any of these member ids
    tags: tuple[str, ...] = ()  # any of these tags (member tag, prefecture, own tag)
    keywords: tuple[str, ...] = ()  # any of these in the title or summary (NFKC)


@dataclass(frozen=True, slots=True)
class MatchSubject:
    """What a subscriber's filters are matched against, for one new article."""

    member_id: str
    tags: frozenset[str]  # the member's tags and prefecture, and the article's tags
    text: str  # title and summary as plain text


class ConsentSource(enum.StrEnum):
    CLI = "cli"
    IMPORT = "import"
    WEB = "web"


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: int
    kind: SubscriberKind
    address: str  # e-mail address or webhook URL
    state: SubscriberState
    schedule: Schedule
    filters: Filters
    timezone: str  # IANA name
    language: str  # "ja" or "en"
    created_at: datetime
    confirmed_at: datetime | None
    notify_since: datetime | None  # nothing published or first seen before it is sent
    consent_at: datetime
    consent_source: ConsentSource
    consent_origin: str | None  # who or where: operator's user, file, client IP
    hard_bounces: int = 0
    state_reason: str | None = None
    token_generation: int = 1
    failing_since: datetime | None = None  # webhooks: failing without a success since
