"""The soak's world: its timeline, config.toml, subscribers, and the changing feeds.

Nothing here is measured. The timeline is in the daemon's (accelerated) time:
a warm-up for the baseline poll, then one burst of changed feeds at the start of
every real minute; every local hour boundary (a digest's due time) falls
`DIGEST_AFTER` after a burst, so each burst's articles are enqueued before it
(a poll interval plus slack) and none after it, whatever the poll's phase.
"""

from __future__ import annotations

import html
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import tomlkit

from aggregator import subscribers
from aggregator.db import unit_of_work
from aggregator.models import Cadence, ConsentSource, Filters, Schedule, SubscriberKind
from aggregator.runtime import open_runtime
from aggregator.settings import Settings
from bench import feeds
from bench.poll import config_toml as poll_config_toml
from bench.poll import member_id
from bench.soak_daemon import FastClock

SPEED = 10.0  # the daemon's clock runs 10× real time: the 300 s interval is 30 s
MINUTE = 60 * SPEED  # daemon seconds in one real minute: one burst each
WARM_UP = MINUTE  # daemon seconds for the baseline poll before the first burst
DIGEST_AFTER = 450.0  # daemon seconds from a burst to the next hour boundary
INTERVAL = 300  # poll.interval: the SPEC's minimum
HOUR = 3600
ZONES = ("Asia/Tokyo", "UTC", "Europe/Berlin", "America/New_York")  # whole hours
TAGS = ("municipality", "prefecture", "education", "health")
# Only in titles (bench.feeds' subjects and verbs), never in the excerpts.
KEYWORDS = ("アンケート", "勉強会", "チャットボット", "翻訳支援", "ガイドライン")
CHANGE_SHARE = 0.05  # of the feeds, each real minute


@dataclass(frozen=True, slots=True)
class Timeline:
    """When things happen, in the daemon's time."""

    origin: datetime  # the daemon's time at spawn (T0)
    minutes: int

    @classmethod
    def starting_near(cls, now: datetime, minutes: int) -> Timeline:
        """T0 within an hour of ``now``, so that an hour boundary falls
        `DIGEST_AFTER` after the third burst (the second for shorter runs).

        The daemon's scheduler ticks on the real clock, so T0 may be before or
        after real time: only the injected clock follows it.
        """
        burst = min(2, minutes - 1)
        lead = timedelta(seconds=WARM_UP + burst * MINUTE + DIGEST_AFTER)
        hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return cls(hour + timedelta(hours=1) - lead, minutes)

    def burst(self, k: int) -> datetime:
        return self.origin + timedelta(seconds=WARM_UP + k * MINUTE)

    @property
    def end(self) -> datetime:
        """A real minute after the last burst: the oracle's cut (a digest due by
        then is sent in the run, a later one queued). The drain follows it."""
        return self.burst(self.minutes)

    @property
    def next_digest(self) -> datetime:
        """The first hour boundary after the end: the drain stops before it."""
        return self.digest_moments()[-1] + timedelta(hours=1)

    def digest_moments(self) -> list[datetime]:
        """The hour boundaries from T0 to the end: digests due within the run."""
        first = self.burst(min(2, self.minutes - 1)) + timedelta(seconds=DIGEST_AFTER)
        while first - timedelta(hours=1) > self.origin:  # bounded by T0
            first -= timedelta(hours=1)
        moments = []
        while first <= self.end:  # bounded by the run's length
            moments.append(first)
            first += timedelta(hours=1)
        return moments

    def clock(self, origin_mono: float) -> FastClock:
        return FastClock(self.origin, origin_mono, SPEED)


# --- subscribers ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Follower:
    """One subscriber as the soak made it (the oracle's copy, not the product's)."""

    address: str
    cadence: Cadence
    hour: int
    weekday: int
    zone: str
    members: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()

    def matches(self, article: Article) -> bool:
        if self.members and article.member not in self.members:
            return False
        if self.tags and article.tag not in self.tags:
            return False
        return not self.keywords or any(k in article.text for k in self.keywords)

    def due(self, enqueued: datetime) -> datetime:
        """When a row enqueued at ``enqueued`` is due (SPEC: the first local
        hour:00 strictly after, on the weekday for weekly)."""
        if self.cadence is Cadence.IMMEDIATE:
            return enqueued
        zone = ZoneInfo(self.zone)
        local = enqueued.astimezone(zone)
        for days in range(9):  # bounded: a week and a day
            day = local.date() + timedelta(days=days)
            at = datetime(day.year, day.month, day.day, self.hour, tzinfo=zone)
            weekly = self.cadence is Cadence.WEEKLY
            if at > local and (not weekly or at.weekday() == self.weekday):
                return at.astimezone(UTC)
        raise AssertionError("no due time within nine days")  # pragma: no cover


def member_tag(index: int) -> str:
    return TAGS[index % len(TAGS)]


def followers(count: int, members: int, timeline: Timeline) -> list[Follower]:
    """Half immediate, 30% daily, 20% weekly, in four zones; a third filtered.

    Digests: a third due at the first hour boundary of the run, a third at the
    second (queued when the run has none), a third twelve hours off (queued).
    """
    rng = random.Random(6)
    moments = timeline.digest_moments()
    first = moments[0]
    second = moments[1] if len(moments) > 1 else first + timedelta(hours=1)
    made = []
    for i in range(count):
        zone = ZONES[i % len(ZONES)]
        cadence = (
            (Cadence.IMMEDIATE,) * 5 + (Cadence.DAILY,) * 3 + (Cadence.WEEKLY,) * 2
        )
        when = (first, second, first + timedelta(hours=12))[(i // 10) % 3]
        local = when.astimezone(ZoneInfo(zone))
        kind = i % 6
        made.append(
            Follower(
                address=f"soak{i:04d}@example.jp",
                cadence=cadence[i % 10],
                hour=local.hour,
                weekday=local.weekday(),
                zone=zone,
                members=tuple(
                    member_id(m) for m in rng.sample(range(members), min(20, members))
                )
                if kind == 1
                else (),
                tags=(TAGS[i % len(TAGS)],) if kind == 2 else (),
                keywords=(KEYWORDS[i % len(KEYWORDS)],) if kind == 3 else (),
            )
        )
    return made


def add_followers(settings: Settings, made: Sequence[Follower], now: datetime) -> None:
    """Active, confirmed subscribers through the real `subscribers.add`."""
    with open_runtime(settings) as rt, unit_of_work(rt.db):
        for i, follower in enumerate(made):
            new = subscribers.NewSubscriber(
                kind=SubscriberKind.EMAIL,
                address=follower.address,
                schedule=Schedule(follower.cadence, follower.hour, follower.weekday),
                filters=Filters(
                    members=follower.members,
                    tags=follower.tags,
                    keywords=follower.keywords,
                ),
                timezone=follower.zone,
                language=("ja", "en")[i % 2],
                confirmed=True,
                consent_source=ConsentSource.CLI,
                consent_origin="cli:soak",
            )
            subscribers.add(rt.db, new, rt.key, now)


# --- config.toml ---------------------------------------------------------------------


def config_toml(
    feed_urls: Sequence[str], data_dir: Path, smtp_port: int, http_port: int, hour: int
) -> str:
    """The poll bench's members (tagged), the SPEC's minimum interval, ticks at
    the defaults' tenth (60 s and 30 s at 10×), mail to the sink."""
    members = [(member_id(i), url) for i, url in enumerate(feed_urls)]
    document = tomlkit.loads(poll_config_toml(members, data_dir, 50))
    for index, member in enumerate(document["members"]):
        member["tags"] = [member_tag(index)]
    document["poll"]["interval"] = f"{INTERVAL}s"
    document["daemon"] = {
        "poll_tick": f"{round(60 / SPEED)}s",
        "deliver_tick": f"{round(30 / SPEED)}s",
        # APScheduler's cron is in real time: keep housekeeping out of the run
        "housekeeping_hour": hour,
    }
    document["server"] = {"host": "127.0.0.1", "port": http_port}
    document["email"] = {
        "host": "127.0.0.1",
        "port": smtp_port,
        "from": "kairan@example.jp",
        "sender_name": "回覧ソーク事務局",
        "postal_address": "東京都千代田区1-1",
        "concurrency": 4,
    }
    return tomlkit.dumps(document)


# --- feeds ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Article:
    """One new article: where and when it appeared, and what filters see of it."""

    url: str
    member: str
    tag: str
    text: str  # title and excerpt, as plain text
    appeared: datetime  # daemon time written into its pubDate
    appeared_wall: float  # real time.time() just before the server served it


_TITLE = re.compile(r"<item><title>(.*?)</title>")
_EXCERPT = re.compile(r"<!\[CDATA\[(.*?)\]\]>")
_LINK = re.compile(r"<link>(https://note\.com/bench\d{4}/n/[^<]+)</link>")
_TAG = re.compile(r"<[^>]+>")


@dataclass
class ChangingFeeds:
    """N feeds on disk whose new items carry the daemon time they appeared at."""

    feeds: feeds.FeedSet
    stamps: dict[tuple[int, int], datetime] = field(default_factory=dict)
    newest: dict[int, int] = field(default_factory=dict)

    def write_all(self) -> None:
        """The first version of every feed: its backlog, stored silently."""
        for index in range(self.feeds.count):
            self.newest[index] = self.feeds.items - 1
            self._write(index)

    def add_item(self, index: int, at: datetime) -> tuple[str, str]:
        """Feed ``index`` gains one article published ``at``: its (url, text)."""
        serial = self.newest[index] + 1
        self.newest[index] = serial
        self.stamps[index, serial] = at.replace(microsecond=0)
        body = self._write(index)
        title = _TITLE.search(body)
        excerpt = _EXCERPT.search(body)
        link = _LINK.search(body)
        if title is None or excerpt is None or link is None:
            raise RuntimeError(f"feed {index}: no first item")
        text = html.unescape(title.group(1)) + "\n" + _TAG.sub("", excerpt.group(1))
        return link.group(1), text

    def _write(self, index: int) -> str:
        newest = self.newest[index]
        body = feeds.feed_xml(index, self.feeds.items, newest).decode("utf-8")
        for serial in range(max(newest - self.feeds.items + 1, 0), newest + 1):
            stamp = self.stamps.get((index, serial))
            if stamp is not None:
                old = f"<pubDate>{format_datetime(feeds.published(serial))}</pubDate>"
                body = body.replace(old, f"<pubDate>{format_datetime(stamp)}</pubDate>")
        file = self.feeds.directory / self.feeds.path(index)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(body, encoding="utf-8")
        return body

    def burst(self, rng: random.Random, at: datetime) -> list[tuple[int, str, str]]:
        """5% of the feeds, chosen at random, each gain one article."""
        count = max(1, round(self.feeds.count * CHANGE_SHARE))
        chosen = sorted(rng.sample(range(self.feeds.count), count))
        return [(index, *self.add_item(index, at)) for index in chosen]
