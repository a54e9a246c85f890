"""poll → publish → data/public/: what is written, what is kept, ids that last."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from aggregator import publish
from aggregator.runtime import Runtime, open_runtime
from aggregator.sandbox.feed_server import FeedServer, static_route
from aggregator.settings import Settings
from tests.integration.test_cli import Cli
from tests.support.builders import member, settings
from tests.support.clock import FixedClock
from tests.support.feeds import Item, note_feed, note_key

START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
ONE = Item(note_key(1), "議事録要約の試行", published=START - timedelta(days=2))
TWO = Item(note_key(2), "庁内ガイドライン", published=START - timedelta(days=1))
# A feed whose guids are not IRIs: its entries get tag: URIs.
PLAIN_GUIDS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Town</title><link>https://town.example/</link>
<item><title>Town news</title><link>https://town.example/news/1</link>
<guid isPermaLink="false">news-1</guid>
<pubDate>Sat, 28 Nov 2026 10:00:00 +0900</pubDate></item>
</channel></rss>"""


class World:
    def __init__(self, rt: Runtime, server: FeedServer, clock: FixedClock) -> None:
        self.rt, self.server, self.clock = rt, server, clock

    async def poll(self) -> None:
        async with self.rt.poller() as poller:
            await poller.run_cycle((), force=True)

    def publish(self, config: Settings | None = None) -> publish.PublishReport:
        return publish.publish(self.rt.db, config or self.rt.settings, self.clock.now())

    @property
    def out(self) -> Path:
        return self.rt.settings.public_dir

    def atom(self, path: str = "feed.atom") -> feedparser.FeedParserDict:
        parsed = feedparser.parse((self.out / path).read_bytes())
        assert not parsed.bozo, parsed.get("bozo_exception")
        return parsed


@pytest.fixture
def world(
    tmp_path: Path, feed_server: FeedServer, clock: FixedClock
) -> Iterator[World]:
    members = (
        member("city", feed_server.url("/city.xml"), prefecture="東京都"),
        member("town", feed_server.url("/town.xml"), tags=("町",)),
    )
    feed_server.route("/city.xml", static_route(note_feed([ONE, TWO])))
    feed_server.route("/town.xml", static_route(PLAIN_GUIDS))
    with open_runtime(
        settings(tmp_path, members), clock=clock, rng=random.Random(1)
    ) as rt:
        yield World(rt, feed_server, clock)


async def test_publish_writes_every_artefact_with_stable_ids(world: World) -> None:
    await world.poll()
    report = world.publish()
    for path in (
        "feed.atom",
        "feed.json",
        "members.opml",
        "index.html",
        "members/city.atom",
        "members/city.html",
        "members/town.atom",
    ):
        assert path in report.written
        assert (world.out / path).is_file()
    feed = world.atom()
    ids = {e.title: e.id for e in feed.entries}
    assert ids[ONE.title] == ONE.url  # the guid, an IRI
    assert ids["Town news"].startswith("tag:localhost,2026-12-01:")
    assert report.ids_assigned == 3
    items = json.loads((world.out / "feed.json").read_text("utf-8"))["items"]
    assert {i["title"]: i["id"] for i in items} == ids


async def test_a_second_publish_rewrites_nothing(world: World) -> None:
    await world.poll()
    world.publish()
    stamps = {p: p.stat().st_mtime_ns for p in world.out.rglob("*") if p.is_file()}
    again = world.publish()
    assert (again.written, again.removed, again.ids_assigned) == ((), (), 0)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


async def test_an_edit_keeps_the_id_and_order_and_changes_updated(
    world: World,
) -> None:
    await world.poll()
    world.publish()
    before = {e.id: e for e in world.atom().entries}
    world.clock.advance(3600)
    edited = Item(ONE.key, ONE.title + "（更新）", published=ONE.published)
    world.server.route("/city.xml", static_route(note_feed([edited, TWO])))
    await world.poll()
    report = world.publish()
    assert "feed.atom" in report.written
    # an untouched member's feed and page are not rewritten
    assert "members/town.atom" not in report.written
    assert "members/town.html" not in report.written
    after = world.atom()
    assert [e.id for e in after.entries] == list(before)  # same ids, same order
    changed = next(e for e in after.entries if e.id == ONE.url)
    assert changed.title == edited.title
    assert changed.updated != before[ONE.url].updated
    assert changed.published == before[ONE.url].published


async def test_a_removed_member_loses_its_pages(world: World) -> None:
    await world.poll()
    world.publish()
    assert (world.out / "members/town.atom").is_file()
    without_town = dataclasses.replace(
        world.rt.settings, members=world.rt.settings.members[:1]
    )
    report = world.publish(without_town)
    assert "members/town.atom" in report.removed
    assert not (world.out / "members/town.atom").exists()
    assert (world.out / "members/city.atom").is_file()


@pytest.fixture
def cli(tmp_path: Path, feed_server: FeedServer) -> Cli:
    return Cli(tmp_path / "config.toml", feed_server)


def test_kairan_publish_prints_what_it_wrote(cli: Cli) -> None:
    cli.members(("a", cli.serve("a", ONE)))
    cli.ok("poll")
    first = cli.json("publish")
    assert "feed.atom" in first["written"]
    again = cli.json("publish")
    assert again["written"] == []
    assert again["unchanged"] == len(first["written"])
    text = cli.ok("publish")
    assert text.startswith("published to ")
    assert "index.html" in text
