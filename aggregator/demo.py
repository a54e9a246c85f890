"""`kairan demo`: the daemon offline, with sample feeds, an SMTP sink and a
webhook receiver.

`kairan run`'s daemon runs in a fresh data directory with one-second ticks. Its
first cycle stores every member's backlog (baseline, nobody is notified); two
e-mail followers and a webhook endpoint subscribe; the second cycle is all 304s
(conditional GET, nothing parsed); in the third yokosuka has published a new
article, which is stored as new, mailed at once to the immediate follower,
POSTed (signed) to the webhook, and republished. The next morning the daily
follower gets a digest. Every mail lands as an .eml file in the data
directory's mail/ folder, every webhook body as a .json file in webhooks/, and
the portal is served by the daemon.

The daemon runs on a story clock (28 November 2026, when the sample article
appears) that the demo moves, so the mail shows the times a real morning would
and members come due without waiting half an hour.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator import endpoints, store, subscribers
from aggregator.daemon import Daemon, Report
from aggregator.db import unit_of_work
from aggregator.deliver import DeliveryReport
from aggregator.errors import KairanError
from aggregator.models import Cadence, ConsentSource, Filters, Schedule, SubscriberKind
from aggregator.poller import CycleReport
from aggregator.publish import PublishReport
from aggregator.runtime import Runtime, open_runtime
from aggregator.sandbox.demo_data import demo_feed_bytes, demo_feed_names, demo_members
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.sandbox.webhook_receiver import WebhookReceiver
from aggregator.settings import (
    DaemonSettings,
    EmailSettings,
    PollSettings,
    ServerSettings,
    Settings,
    SiteSettings,
    WebhookSettings,
)

Say = Callable[[str], None]
STEP_TIMEOUT = 60.0  # seconds each step of the story may take (slow CI machines)
REPORT_KINDS = (CycleReport, DeliveryReport, PublishReport)
MAX_IDLE_TICKS = 100  # reports of the daemon that are not yet the awaited step


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
        # The receiver is on 127.0.0.1, which the SSRF guard would refuse.
        webhooks=WebhookSettings(timeout=10.0, allow_private_addresses=True),
        server=ServerSettings(host="127.0.0.1", port=portal_port),
        daemon=DaemonSettings(poll_tick=1, deliver_tick=1),
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


def add_followers(rt: Runtime, receiver_url: str, say: Say) -> str:
    """Two e-mail followers and a webhook endpoint; returns the endpoint's secret."""
    now = rt.clock.now()
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
            subscribers.add(rt.db, new, rt.key, now)
            say(f"  {address}: {cadence} ({language})")
        url = receiver_url + "kairan"
        added = endpoints.add(
            rt.db, url, Filters(), rt.settings, rt.key, now, "cli:demo"
        )
    say(f"  {url}: webhook, signed with {added.secret[:12]}…")
    return added.secret


def describe_sent(report: DeliveryReport) -> list[str]:
    return [
        f"  sent {r.kind} {'POST' if r.channel == 'webhook' else 'mail'} to "
        f"{r.address} ({r.articles} article(s))"
        for r in report.results
        if r.outcome == "sent"
    ]


class DemoStalled(KairanError):
    """A step of the story did not happen in time (the daemon is stuck)."""


@dataclass
class Story:
    """Drives the daemon through the story by moving its clock and the feeds."""

    daemon: Daemon
    clock: StoryClock
    feeds: FeedServer
    say: Say
    # The daemon's reports by kind: waiting for one kind never drops another.
    queues: dict[type, asyncio.Queue[Report]] = field(
        default_factory=lambda: {
            kind: asyncio.Queue()
            for kind in (CycleReport, DeliveryReport, PublishReport)
        }
    )

    def observe(self, report: Report) -> None:
        self.queues[type(report)].put_nowait(report)

    def forget(self, kind: type) -> None:
        """Drop what the daemon did so far of this kind (before a new step)."""
        queue = self.queues[kind]
        while not queue.empty():
            queue.get_nowait()

    async def next(self, kind: type, what: str) -> Report:
        try:
            return await asyncio.wait_for(self.queues[kind].get(), STEP_TIMEOUT)
        except TimeoutError:
            raise DemoStalled(
                f"demo: {what} did not happen within {STEP_TIMEOUT:g} s"
            ) from None

    async def cycle(self, what: str) -> None:
        """The next cycle that polled anyone (ticks with nobody due are skipped)."""
        for _ in range(MAX_IDLE_TICKS):
            report = await self.next(CycleReport, what)
            if isinstance(report, CycleReport) and report.members:
                self.say("  " + describe(report))
                return
        raise DemoStalled(f"demo: {what} polled nobody")

    async def sends(self, what: str, count: int) -> None:
        """Wait until ``count`` messages were sent, and tell them."""
        lines: list[str] = []
        for _ in range(MAX_IDLE_TICKS):
            report = await self.next(DeliveryReport, what)
            if isinstance(report, DeliveryReport):
                lines += describe_sent(report)
            if len(lines) >= count:
                for line in lines:
                    self.say(line)
                return
        raise DemoStalled(f"demo: {what}: {len(lines)} of {count} messages sent")

    async def run(self, settings: Settings, receiver: WebhookReceiver) -> None:
        say = self.say
        say("cycle 1: poll every member (a first poll stores the backlog as baseline)")
        await self.cycle("the first poll cycle")
        say("followers subscribe:")
        with open_runtime(settings, clock=self.clock) as rt:
            receiver.secrets.append(add_followers(rt, receiver.url, say))
        self.clock.advance(timedelta(minutes=30))
        say("cycle 2: nothing changed; every request is conditional")
        await self.cycle("the second poll cycle")
        serve_feeds(self.feeds, next_cycle=True)
        self.forget(PublishReport)  # the first cycle's publish
        self.forget(DeliveryReport)
        self.clock.advance(timedelta(hours=1, minutes=30))
        say("cycle 3: yokosuka has published a new article")
        await self.cycle("the third poll cycle")
        say("delivery: the immediate follower and the webhook are told at once")
        await self.sends("the immediate mail and the webhook", 2)
        published = await self.next(PublishReport, "republishing")
        if isinstance(published, PublishReport):
            changed = len(published.written)
            say(f"  the portal is republished ({changed} files changed)")
        self.forget(DeliveryReport)
        self.clock.current = datetime(2026, 11, 28, 23, 0, 30, tzinfo=UTC)
        say("delivery the next morning at 08:00: the daily digest")
        await self.sends("the daily digest", 1)


def run_demo(say: Say, data_dir: Path | None = None, *, once: bool = False) -> None:
    """The story, told by the daemon itself; then (unless ``once``) the daemon
    keeps serving the portal and the mail's links until Ctrl+C."""
    directory = demo_data_dir(data_dir)
    mail_dir, hook_dir = directory / "mail", directory / "webhooks"
    with (
        FeedServer(record=False) as feeds,
        SmtpSink(eml_dir=mail_dir) as sink,
        WebhookReceiver(json_dir=hook_dir) as receiver,
    ):
        serve_feeds(feeds, next_cycle=False)
        say(f"sample feed server: {feeds.base_url}/ ({len(demo_feed_names())} feeds)")
        say(f"SMTP sink: {sink.url} (writes every message to {mail_dir}/)")
        say(f"webhook receiver: {receiver.url} (verifies signatures; {hook_dir}/)")
        settings = demo_settings(
            feeds.base_url + "/", directory, sink.port, free_port()
        )
        asyncio.run(tell(settings, feeds, receiver, say, once=once))


async def tell(
    settings: Settings,
    feeds: FeedServer,
    receiver: WebhookReceiver,
    say: Say,
    *,
    once: bool,
) -> None:
    clock = StoryClock()
    story = Story(Daemon(settings.path, settings, clock=clock), clock, feeds, say)
    story.daemon.observer = story.observe
    running = asyncio.create_task(story.daemon.main(signals=not once))
    try:
        await story.run(settings, receiver)
        say_results(settings, receiver, say)
        if once:
            return
        say(f"portal: {settings.site.base_url} (the daemon runs on; Ctrl+C stops)")
        await running
    finally:
        story.daemon.stop()
        await running


def say_results(settings: Settings, receiver: WebhookReceiver, say: Say) -> None:
    hook_dir = settings.data_dir / "webhooks"
    with open_runtime(settings) as rt:
        say_stored(rt, say)
    say(f"database: {settings.database_path}")
    say(f"portal files: {settings.public_dir}/ (open index.html)")
    verified = [r for r in receiver.accepted if r.verified]
    say(f"webhook: {len(verified)} verified delivery; body in:")
    for path in sorted(hook_dir.glob("*.json")):
        say(f"  {path}")
    say_mail(settings.data_dir / "mail", say)


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
