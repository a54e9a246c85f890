"""`kairan demo`: the pipeline offline, with sample feeds and an SMTP sink.

Three cycles into a fresh data directory: the first stores every member's
backlog (baseline, nobody is notified); two followers subscribe; the second cycle
is all 304s (conditional GET, nothing parsed); in the third yokosuka has published
a new article, which is stored as new and mailed at once to the immediate
follower. The next morning the daily follower gets a digest. Every mail lands as
an .eml file in the data directory's mail/ folder, and the combined feeds and
the portal are published to its public/ folder.

The demo runs on a story clock (28 November 2026, when the sample article
appears), so the mail shows the times a real morning would.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator import store, subscribers
from aggregator.db import unit_of_work
from aggregator.deliver import DeliveryReport
from aggregator.models import Cadence, ConsentSource, Filters, Schedule, SubscriberKind
from aggregator.poller import CycleReport
from aggregator.publish import publish
from aggregator.runtime import Runtime, open_runtime
from aggregator.sandbox.demo_data import demo_feed_bytes, demo_feed_names, demo_members
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.settings import EmailSettings, PollSettings, Settings, SiteSettings

Say = Callable[[str], None]


# 28 Nov 2026 09:30 JST: before yokosuka's sample article of 11:00 appears.
STORY_START = datetime(2026, 11, 28, 0, 30, tzinfo=UTC)
FOLLOWERS = (
    # address, cadence, language
    ("taro@example.jp", Cadence.IMMEDIATE, "ja"),
    ("reader@example.com", Cadence.DAILY, "en"),
)


@dataclass
class StoryClock:
    """Wall time that starts at STORY_START and moves only when the story does."""

    current: datetime = STORY_START

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return time.monotonic()

    def advance(self, delta: timedelta) -> None:
        self.current += delta


def demo_data_dir(data_dir: Path | None) -> Path:
    """The given directory, or a new one under the system's temp directory.

    It is kept afterwards either way, so the mail written there can be opened.
    """
    if data_dir is None:
        return Path(tempfile.mkdtemp(prefix="kairan-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


def serve_feeds(server: FeedServer, *, next_cycle: bool) -> None:
    server.routes(
        {
            f"/{name}.xml": static_route(demo_feed_bytes(name, next_cycle=next_cycle))
            for name in demo_feed_names()
        }
    )


def free_port() -> int:
    """A port nobody listens on now: the portal's address goes into every link."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def demo_settings(
    base_url: str, data_dir: Path, smtp_port: int, portal_port: int
) -> Settings:
    return Settings(
        path=data_dir / "config.toml",
        data_dir=data_dir,
        site=SiteSettings(
            title="自治体AI活用ポータル (demo)",
            base_url=f"http://127.0.0.1:{portal_port}/",
            contact="https://example.jp/kairan-demo",
        ),
        poll=PollSettings(timeout=10.0),
        email=EmailSettings(
            host="127.0.0.1",
            port=smtp_port,
            from_address="kairan-demo@example.jp",
            sender_name="自治体AI活用ポータル事務局 (demo)",
            postal_address="〒100-0001 東京都千代田区千代田1-1 (架空)",
            timeout=10.0,
        ),
        members=demo_members(base_url),
    )


def describe(cycle: CycleReport) -> str:
    kinds: dict[str, int] = {}
    for member in cycle.members:
        kinds[member.kind] = kinds.get(member.kind, 0) + 1
    new = sum(m.new for m in cycle.members)
    baseline = sum(m.baseline for m in cycle.members)
    outcome = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return (
        f"{len(cycle.members)} feeds polled ({outcome}): "
        f"{baseline} stored as baseline, {new} new, "
        f"{sum(m.edited for m in cycle.members)} edited"
    )


def add_followers(rt: Runtime, say: Say) -> None:
    with unit_of_work(rt.db):
        for address, cadence, language in FOLLOWERS:
            new = subscribers.NewSubscriber(
                kind=SubscriberKind.EMAIL,
                address=address,
                schedule=Schedule(cadence, hour=8),
                filters=Filters(),
                timezone=rt.settings.site.timezone,
                language=language,
                confirmed=True,
                consent_source=ConsentSource.CLI,
                consent_origin="cli:demo",
            )
            subscribers.add(rt.db, new, rt.key, rt.clock.now())
            say(f"  {address}: {cadence} ({language})")


def describe_mail(report: DeliveryReport) -> str:
    sent = [r for r in report.results if r.outcome == "sent"]
    if not sent:
        return "  nothing due"
    return "\n".join(
        f"  sent {r.kind} mail to {r.address} ({r.articles} article(s))" for r in sent
    )


async def story(
    rt: Runtime, clock: StoryClock, server: FeedServer, say: Say
) -> list[CycleReport]:
    reports = []
    async with rt.poller() as poller:
        say("cycle 1: poll every member (a first poll stores the backlog as baseline)")
        reports.append(await poller.run_cycle(force=True))
        say("  " + describe(reports[-1]))
        say("two followers subscribe:")
        add_followers(rt, say)
        clock.advance(timedelta(minutes=30))
        say("cycle 2: nothing changed; every request is conditional")
        reports.append(await poller.run_cycle(force=True))
        say("  " + describe(reports[-1]))
        serve_feeds(server, next_cycle=True)
        clock.advance(timedelta(hours=1, minutes=30))
        say("cycle 3: yokosuka has published a new article")
        reports.append(await poller.run_cycle(force=True))
        say("  " + describe(reports[-1]))
    async with rt.delivery_pass() as delivery:
        say("delivery: the immediate follower is told at once")
        say(describe_mail(await delivery.run()))
        clock.current = datetime(2026, 11, 28, 23, 0, 30, tzinfo=UTC)
        say("delivery the next morning at 08:00: the daily digest")
        say(describe_mail(await delivery.run()))
    return reports


Serve = Callable[[Runtime], None]


def run_demo(
    say: Say, data_dir: Path | None = None, serve: Serve | None = None
) -> list[CycleReport]:
    """The story; then, with `serve`, the portal and follower links stay up
    (served by `serve(runtime)`, which returns when the user stops it)."""
    directory = demo_data_dir(data_dir)
    mail_dir = directory / "mail"
    with FeedServer(record=False) as server, SmtpSink(eml_dir=mail_dir) as sink:
        serve_feeds(server, next_cycle=False)
        say(f"sample feed server: {server.base_url}/ ({len(demo_feed_names())} feeds)")
        say(f"SMTP sink: {sink.url} (writes every message to {mail_dir}/)")
        settings = demo_settings(
            server.base_url + "/", directory, sink.port, free_port()
        )
        clock = StoryClock()
        with open_runtime(settings, clock=clock) as rt:
            reports = asyncio.run(story(rt, clock, server, say))
            say_stored(rt, say)
            published = publish(rt.db, rt.settings, clock.now())
            say(f"database: {settings.database_path}")
            say(
                f"published {len(published.written)} files (feeds, OPML, portal) to "
                f"{published.out_dir}/; open {published.out_dir / 'index.html'}"
            )
            say_mail(mail_dir, say)
            if serve is None:
                say("rerun with --serve to browse the portal and follow mail links")
            else:
                say(f"portal: {settings.site.base_url} (Ctrl+C stops)")
                serve(rt)
    return reports


def say_mail(mail_dir: Path, say: Say) -> None:
    files = sorted(mail_dir.glob("*.eml"))
    say(f"mail ({len(files)} messages; open them in any mail program):")
    for path in files:
        say(f"  {path}")


def say_stored(rt: Runtime, say: Say) -> None:
    entries = store.list_entries(rt.db, limit=1000)
    names = {m.id: m.name for m in rt.settings.members}
    counts = store.member_counts(rt.db, rt.clock.now())
    say(f"stored {len(entries)} articles, each once:")
    for member_id, count in sorted(counts.items()):
        say(f"  {names.get(member_id, member_id)}: {count.articles}")
    say("newest:")
    tz = rt.settings.site.tz
    for entry in entries[:5]:
        when = (entry.published or entry.first_seen).astimezone(tz)
        say(
            f"  [{entry.status.value}] {when:%Y-%m-%d} "
            f"{names.get(entry.member_id, entry.member_id)}: {entry.title}"
        )
