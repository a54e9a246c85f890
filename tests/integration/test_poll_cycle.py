"""fetch → parse → normalise → store, end to end against the sandbox server."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator import store
from aggregator.db import unit_of_work
from aggregator.models import EntryStatus, FeedState, Member, MemberState, StoredEntry
from aggregator.poller import CycleReport
from aggregator.runtime import open_runtime
from aggregator.sandbox.feed_server import FeedServer, Route, static_route
from aggregator.settings import Settings
from tests.support.builders import member, settings
from tests.support.clock import FixedClock
from tests.support.feeds import Item, note_feed, note_key

ONE = Item(note_key(1), "議事録要約の試行")
TWO = Item(note_key(2), "庁内ガイドラインを改定しました")
THREE = Item(note_key(3), "チャットボットの振り返り")


class Harness:
    """A runtime over real SQLite and the real sandbox server, with a fixed clock."""

    def __init__(self, tmp_path: Path, server: FeedServer, clock: FixedClock) -> None:
        self.tmp_path = tmp_path
        self.server = server
        self.clock = clock
        self.members: tuple[Member, ...] = ()
        self.poll_overrides: dict[str, object] = {}
        self.order: list[str] = []  # members in the order their polls finished

    def settings(self) -> Settings:
        return settings(self.tmp_path, self.members, **self.poll_overrides)

    async def poll(self, *names: str, force: bool = True) -> CycleReport:
        with open_runtime(
            self.settings(), clock=self.clock, rng=random.Random(7)
        ) as rt:
            async with rt.poller(strict=False) as poller:
                return await poller.run_cycle(
                    names,
                    force=force,
                    on_member=lambda m: self.order.append(m.member_id),
                )

    def entries(self, member_id: str | None = None) -> list[StoredEntry]:
        with open_runtime(self.settings(), clock=self.clock) as rt:
            return store.list_entries(rt.db, member_id=member_id, limit=1000)

    def state(self, member_id: str) -> FeedState:
        with open_runtime(self.settings(), clock=self.clock) as rt:
            return store.feed_states(rt.db)[member_id]


@pytest.fixture
def harness(tmp_path: Path, feed_server: FeedServer, clock: FixedClock) -> Harness:
    return Harness(tmp_path, feed_server, clock)


def serve(h: Harness, path: str, *items: Item, **kw: object) -> str:
    h.server.route(path, static_route(note_feed(items), **kw))  # type: ignore[arg-type]
    return h.server.url(path)


async def test_first_poll_stores_backlog_as_baseline_then_304(harness: Harness) -> None:
    url = serve(harness, "/city.xml", ONE, TWO)
    harness.members = (member("city", url),)
    first = await harness.poll()
    assert [(m.kind, m.baseline, m.new) for m in first.members] == [("ok", 2, 0)]
    entries = harness.entries()
    assert {e.title for e in entries} == {ONE.title, TWO.title}
    assert {e.status for e in entries} == {EntryStatus.BASELINE}
    # The note-specific fields made it through.
    entry = next(e for e in entries if e.title == ONE.title)
    assert entry.thumbnail == f"https://assets.example/{ONE.key}.png"
    assert entry.author == "テスト市"
    assert "続きをみる" not in entry.summary_html
    assert f"note:{ONE.key}" in entry.keys

    stored = harness.state("city").validators
    second = await harness.poll()
    assert [m.kind for m in second.members] == ["not_modified"]
    last = harness.server.requests_to("/city.xml")[-1]
    assert last.header("If-None-Match") == stored.etag
    assert last.header("If-Modified-Since") == stored.last_modified
    assert len(harness.entries()) == 2


async def test_only_truly_new_articles_are_new(harness: Harness) -> None:
    url = serve(harness, "/city.xml", ONE)
    harness.members = (member("city", url),)
    await harness.poll()
    serve(harness, "/city.xml", TWO, ONE)
    report = await harness.poll()
    assert [(m.new, m.unchanged) for m in report.members] == [(1, 1)]
    statuses = {e.title: e.status for e in harness.entries()}
    assert statuses == {ONE.title: EntryStatus.BASELINE, TWO.title: EntryStatus.NEW}


async def test_an_edit_updates_the_copy_and_is_not_new(harness: Harness) -> None:
    url = serve(harness, "/city.xml", ONE, TWO)
    harness.members = (member("city", url),)
    await harness.poll()
    serve(harness, "/city.xml", TWO, Item(ONE.key, ONE.title + "（更新）"))
    report = await harness.poll()
    assert [(m.new, m.edited, m.unchanged) for m in report.members] == [(0, 1, 1)]
    entries = harness.entries()
    assert len(entries) == 2
    assert ONE.title + "（更新）" in {e.title for e in entries}


async def test_same_body_without_validators_is_not_parsed_again(
    harness: Harness,
) -> None:
    harness.server.route("/plain.xml", Route(body=note_feed([ONE])))
    harness.members = (member("city", harness.server.url("/plain.xml")),)
    await harness.poll()
    report = await harness.poll()
    assert [m.kind for m in report.members] == ["unchanged"]


async def test_same_note_article_via_member_and_magazine_is_one_article(
    harness: Harness,
) -> None:
    magazine_copy = Item(
        ONE.key,
        ONE.title,
        link=f"https://note.mu/city/n/{ONE.key}?magazine_key=m8f7256e10f43",
    )
    mag = serve(harness, "/mag.xml", magazine_copy, THREE)
    city = serve(harness, "/city.xml", ONE, TWO)
    harness.members = (
        member("magazine", mag, tags=("magazine",)),
        member("city", city),
    )
    await harness.poll("magazine")  # the magazine is seen first
    await harness.poll("city")
    entries = harness.entries()
    assert len(entries) == 3
    one = next(e for e in entries if f"note:{ONE.key}" in e.keys)
    assert one.member_id == "city"  # credited to the municipality, not the magazine
    with open_runtime(harness.settings()) as rt:
        seen_by = {s["member_id"] for s in store.sightings_of(rt.db, one.id)}
    assert seen_by == {"magazine", "city"}


async def test_tracking_parameter_variants_are_one_article(harness: Harness) -> None:
    plain = "https://www.city.example.jp/news/1.html"
    a = Item("x", "お知らせ", link=plain)
    b = Item(
        "x", "お知らせ", link="https://WWW.city.example.jp/news/1.html?utm_source=x#top"
    )
    harness.server.route(
        "/a.xml", static_route(note_feed([a]).replace(b"<guid>", b"<guid>a-"))
    )
    harness.server.route(
        "/b.xml", static_route(note_feed([b]).replace(b"<guid>", b"<guid>b-"))
    )
    harness.members = (
        member("a", harness.server.url("/a.xml")),
        member("b", harness.server.url("/b.xml")),
    )
    await harness.poll()
    assert len(harness.entries()) == 1


async def test_a_removed_entry_never_returns(harness: Harness) -> None:
    url = serve(harness, "/city.xml", ONE, TWO)
    harness.members = (member("city", url),)
    await harness.poll()
    victim = next(e for e in harness.entries() if e.title == ONE.title)
    with open_runtime(harness.settings()) as rt, unit_of_work(rt.db):
        store.remove_entry(rt.db, victim.id, harness.clock.now())
    serve(harness, "/city.xml", ONE, TWO, THREE)
    await harness.poll()
    titles = {e.title for e in harness.entries()}
    assert titles == {TWO.title, THREE.title}


async def test_bad_inputs_are_recorded_and_others_are_stored(harness: Harness) -> None:
    good = serve(harness, "/good.xml", ONE)
    s = harness.server
    s.route(
        "/html.xml",
        Route(body=b"<html><body>hi</body></html>", content_type="text/html"),
    )
    s.route("/500.xml", Route(status=500))
    s.route(
        "/bomb.xml",
        Route(
            body=b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
            b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><rss><channel><title>&b;</title>'
            b"</channel></rss>"
        ),
    )
    s.route("/empty.xml", Route(body=b""))
    harness.members = (
        member("good", good),
        member("html", s.url("/html.xml")),
        member("err", s.url("/500.xml")),
        member("bomb", s.url("/bomb.xml")),
        member("empty", s.url("/empty.xml")),
    )
    report = await harness.poll()
    kinds = {m.member_id: (m.kind, m.error_class) for m in report.members}
    assert kinds == {
        "good": ("ok", None),
        "html": ("error", "not_a_feed"),
        "err": ("error", "http"),
        "bomb": ("error", "hostile_xml"),
        "empty": ("error", "not_a_feed"),
    }
    assert [e.member_id for e in harness.entries()] == ["good"]
    state = harness.state("err")
    assert state.state is MemberState.FAILING
    assert state.failures == 1
    assert state.last_error == "HTTP 500"
    assert state.next_poll_at is not None
    assert state.next_poll_at > harness.clock.now()


async def test_a_broken_feed_leaves_stored_articles_untouched(harness: Harness) -> None:
    url = serve(harness, "/city.xml", ONE, TWO)
    harness.members = (member("city", url),)
    await harness.poll()
    before = harness.entries()
    harness.server.route("/city.xml", Route(body=b"\x00\xff garbage"))
    report = await harness.poll()
    assert report.members[0].kind == "error"
    assert harness.entries() == before
    assert harness.state("city").last_error_class in {"not_a_feed", "parse"}


async def test_410_marks_gone_until_resumed(harness: Harness) -> None:
    harness.server.route("/gone.xml", Route(status=410))
    harness.members = (member("gone", harness.server.url("/gone.xml")),)
    await harness.poll()
    assert harness.state("gone").state is MemberState.GONE
    assert (await harness.poll(force=True)).members == ()  # not polled any more
    with open_runtime(harness.settings()) as rt, unit_of_work(rt.db):
        store.resume_member(rt.db, "gone")
    serve(harness, "/gone.xml", ONE)
    report = await harness.poll(force=False)
    assert [m.kind for m in report.members] == ["ok"]
    assert harness.state("gone").state is MemberState.OK


async def test_301_moves_the_stored_url_and_302_does_not(harness: Harness) -> None:
    new = serve(harness, "/new.xml", ONE)
    harness.server.route("/old.xml", Route(status=301, redirect=new))
    harness.server.route("/temp.xml", Route(status=302, redirect=new))
    harness.members = (
        member("moved", harness.server.url("/old.xml")),
        member("temp", harness.server.url("/temp.xml")),
    )
    report = await harness.poll()
    assert {m.member_id: m.moved_to for m in report.members} == {
        "moved": new,
        "temp": None,
    }
    moved = harness.state("moved")
    assert (moved.url, moved.moved_from) == (new, harness.server.url("/old.xml"))
    assert harness.state("temp").url == harness.server.url("/temp.xml")
    await harness.poll("moved")
    assert len(harness.server.requests_to("/old.xml")) == 1


async def test_retry_after_is_honoured(harness: Harness) -> None:
    harness.server.route(
        "/busy.xml", Route(status=429, headers={"Retry-After": "7200"})
    )
    harness.members = (member("busy", harness.server.url("/busy.xml")),)
    await harness.poll()
    state = harness.state("busy")
    assert state.next_poll_at is not None
    assert state.next_poll_at >= harness.clock.now() + timedelta(seconds=7200)
    assert state.last_error_class == "http"


async def test_due_selection_follows_next_poll_time(harness: Harness) -> None:
    url = serve(harness, "/city.xml", ONE)
    harness.members = (member("city", url),)
    await harness.poll(force=False)
    assert (await harness.poll(force=False)).members == ()  # not due yet
    harness.clock.advance(31 * 60 * 1.2)  # past interval + jitter
    assert len((await harness.poll(force=False)).members) == 1


async def test_a_crash_mid_feed_rolls_the_whole_feed_back(harness: Harness) -> None:
    boom = Item(note_key(9), "boom")
    url = serve(harness, "/city.xml", ONE, boom, TWO)
    ok = serve(harness, "/ok.xml", THREE)
    harness.members = (member("city", url), member("ok", ok))
    with open_runtime(harness.settings()) as rt:
        # A real failure inside the transaction: the database refuses one row.
        rt.db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON entries WHEN NEW.title = 'boom' "
            "BEGIN SELECT RAISE(ABORT, 'simulated failure'); END"
        )
    report = await harness.poll()
    kinds = {m.member_id: m.kind for m in report.members}
    assert kinds == {"city": "internal_error", "ok": "ok"}
    assert [e.member_id for e in harness.entries()] == ["ok"]  # nothing half-stored
    assert harness.state("city").last_error_class == "internal"
    assert not harness.state("city").baseline_done
    with open_runtime(harness.settings()) as rt:
        rt.db.execute("DROP TRIGGER refuse")
    report = await harness.poll("city")
    assert report.members[0].baseline == 3  # still the baseline: nothing was lost
    assert len(harness.entries("city")) == 3


async def test_strict_mode_reraises_internal_errors(harness: Harness) -> None:
    url = serve(harness, "/city.xml", ONE)
    harness.members = (member("city", url),)
    with open_runtime(harness.settings(), clock=harness.clock) as rt:
        rt.db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON entries "
            "BEGIN SELECT RAISE(ABORT, 'simulated failure'); END"
        )
        async with rt.poller(strict=True) as poller:
            with pytest.raises(Exception, match="simulated failure"):
                await poller.run_cycle(force=True)


async def test_cp932_feed_is_stored_exactly(harness: Harness) -> None:
    text = "①髙﨑～の取り組み"
    body = (
        '<?xml version="1.0" encoding="Shift_JIS"?><rss version="2.0"><channel>'
        f"<title>t</title><item><title>{text}</title><link>https://e.jp/1</link>"
        "<guid>https://e.jp/1</guid></item></channel></rss>"
    ).encode("cp932")
    harness.server.route(
        "/sjis.xml", Route(body=body, content_type="application/rss+xml")
    )
    harness.members = (member("sjis", harness.server.url("/sjis.xml")),)
    await harness.poll()
    assert [e.title for e in harness.entries()] == [text]


async def test_a_slow_member_does_not_hold_up_the_others(harness: Harness) -> None:
    harness.poll_overrides = {"timeout": 1.0}
    harness.server.route("/slow.xml", Route(body=note_feed([ONE]), delay=3.0))
    fast = [
        serve(harness, f"/fast{n}.xml", Item(note_key(10 + n), f"記事{n}"))
        for n in range(3)
    ]
    harness.members = (
        member("slow", harness.server.url("/slow.xml")),
        *(member(f"fast{n}", url) for n, url in enumerate(fast)),
    )
    report = await harness.poll()
    assert harness.order[-1] == "slow"  # every fast member finished first
    kinds = {m.member_id: (m.kind, m.error_class) for m in report.members}
    assert kinds["slow"] == ("error", "timeout")
    assert {k for k, v in kinds.items() if v == ("ok", None)} == {
        "fast0",
        "fast1",
        "fast2",
    }
    assert len(harness.entries()) == 3
