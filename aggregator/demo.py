"""`kairan demo`: the pipeline offline, against the sandbox's sample feeds.

Three cycles into a throw-away data directory: the first stores every member's
backlog (baseline, nobody would be notified), the second is all 304s (conditional
GET, nothing parsed), and in the third yokosuka has published a new article, which
is stored as new.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from aggregator import store
from aggregator.poller import CycleReport
from aggregator.runtime import Runtime, open_runtime
from aggregator.sandbox.demo_data import demo_feed_bytes, demo_feed_names, demo_members
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.settings import PollSettings, Settings, SiteSettings

Say = Callable[[str], None]


@contextmanager
def demo_data_dir(data_dir: Path | None) -> Iterator[Path]:
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        yield data_dir
        return
    with tempfile.TemporaryDirectory(prefix="kairan-demo-") as tmp:
        yield Path(tmp)


def serve_feeds(server: FeedServer, *, next_cycle: bool) -> None:
    server.routes(
        {
            f"/{name}.xml": static_route(demo_feed_bytes(name, next_cycle=next_cycle))
            for name in demo_feed_names()
        }
    )


def demo_settings(base_url: str, data_dir: Path) -> Settings:
    return Settings(
        path=data_dir / "config.toml",
        data_dir=data_dir,
        site=SiteSettings(
            title="自治体AI活用ポータル (demo)",
            base_url="http://127.0.0.1/",
            contact="https://example.jp/kairan-demo",
        ),
        poll=PollSettings(timeout=10.0),
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


async def cycles(rt: Runtime, server: FeedServer, say: Say) -> list[CycleReport]:
    reports = []
    async with rt.poller() as poller:
        say("cycle 1: poll every member (a first poll stores the backlog as baseline)")
        reports.append(await poller.run_cycle(force=True))
        say("  " + describe(reports[-1]))
        say("cycle 2: nothing changed; every request is conditional")
        reports.append(await poller.run_cycle(force=True))
        say("  " + describe(reports[-1]))
        serve_feeds(server, next_cycle=True)
        say("cycle 3: yokosuka has published a new article")
        reports.append(await poller.run_cycle(force=True))
        say("  " + describe(reports[-1]))
    return reports


def run_demo(say: Say, data_dir: Path | None = None) -> list[CycleReport]:
    with FeedServer(record=False) as server, demo_data_dir(data_dir) as directory:
        serve_feeds(server, next_cycle=False)
        say(f"sample feed server: {server.base_url}/ ({len(demo_feed_names())} feeds)")
        settings = demo_settings(server.base_url + "/", directory)
        with open_runtime(settings) as rt:
            reports = asyncio.run(cycles(rt, server, say))
            say_stored(rt, say)
        say(f"database: {settings.database_path}" + ("" if data_dir else " (removed)"))
    return reports


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
