"""The demo's sample feeds: well-formed, note-shaped; the magazine repeats members."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from aggregator import config
from aggregator.sandbox import demo_data

REPO = Path(__file__).parents[2]
NS = {
    "media": "http://search.yahoo.com/mrss/",
    "note": "https://note.com",
    "atom": "http://www.w3.org/2005/Atom",
}
NOTE_KEY = re.compile(r"/n/(n[0-9a-f]{12})(?:\?|$)")
ITEM_CHILDREN = [
    "title",
    "{http://search.yahoo.com/mrss/}thumbnail",
    "description",
    "{https://note.com}creatorImage",
    "{https://note.com}creatorName",
    "pubDate",
    "link",
    "guid",
]
NAMES = demo_data.demo_feed_names()
MAGAZINE = "govgov-magazine"


def items(name: str, *, next_cycle: bool = False) -> list[ET.Element]:
    body = demo_data.demo_feed_bytes(name, next_cycle=next_cycle)
    root = ET.fromstring(body)  # noqa: S314 -- our own shipped files, not remote input
    assert root.tag == "rss"
    assert root.get("version") == "2.0"
    return root.findall("./channel/item")


def text(item: ET.Element, path: str) -> str:
    found = item.findtext(path, namespaces=NS)
    assert found is not None, path
    return found


def note_key(link: str) -> str:
    match = NOTE_KEY.search(link)
    assert match, link
    return match[1]


def published(item: ET.Element) -> datetime:
    return parsedate_to_datetime(text(item, "pubDate"))


def test_there_is_one_feed_per_shipped_member() -> None:
    shipped = config.load_settings(REPO / "config.toml", {}).members
    assert sorted(m.id for m in shipped) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_feed_is_note_shaped(name: str) -> None:
    found = items(name)
    assert 3 <= len(found) <= 8
    for item in found:
        assert [child.tag for child in item] == ITEM_CHILDREN
        assert text(item, "guid") == text(item, "link")
        assert text(item, "media:thumbnail").startswith("http://127.0.0.1/")
        assert text(item, "note:creatorImage").startswith("http://127.0.0.1/")
        assert text(item, "note:creatorName")
        description = text(item, "description")
        assert description.startswith("<p name=")
        assert description.endswith(
            f"<br/><a href='{text(item, 'link')}'>続きをみる</a>"
        )
        assert "架空のサンプル" in description
        assert text(item, "pubDate").endswith(" +0900")
        assert (published(item).year, published(item).month) == (2026, 11)
    dates = [published(item) for item in found]
    assert dates == sorted(dates, reverse=True)  # newest first, as note sends them


@pytest.mark.parametrize("name", [n for n in NAMES if n != MAGAZINE])
def test_member_feed_links_point_at_the_members_host(name: str) -> None:
    member = next(m for m in demo_data.demo_members("http://x/") if m.id == name)
    assert member.site is not None
    for item in items(name):
        link = text(item, "link")
        assert link.startswith(member.site.rstrip("/") + "/n/n"), link
        assert "?" not in link


def test_magazine_repeats_member_articles_under_other_urls() -> None:
    member_keys = {
        note_key(text(item, "link"))
        for name in NAMES
        if name != MAGAZINE
        for item in items(name)
    }
    magazine = items(MAGAZINE)
    links = [text(item, "link") for item in magazine]
    repeated = [link for link in links if note_key(link) in member_keys]
    assert 4 <= len(repeated) <= 6
    assert all(link.endswith("?magazine_key=m8f7256e10f43") for link in links)
    assert sum(link.startswith("https://note.mu/") for link in repeated) == 1
    others = [
        item for item in magazine if note_key(text(item, "link")) not in member_keys
    ]
    assert sorted(text(item, "note:creatorName") for item in others) == [
        "つくば市",
        "千葉市",
    ]


def test_every_article_has_its_own_note_key() -> None:
    keys = [
        note_key(text(item, "link"))
        for name in NAMES
        if name != MAGAZINE
        for item in items(name)
    ]
    assert len(keys) == len(set(keys))


def test_next_cycle_adds_one_newer_article_to_yokosuka() -> None:
    now = items("yokosuka")
    later = items("yokosuka", next_cycle=True)
    assert [ET.tostring(i) for i in later[1:]] == [ET.tostring(i) for i in now]
    assert published(later[0]) > published(now[0])
    assert note_key(text(later[0], "link")) not in {
        note_key(text(i, "link")) for i in now
    }


@pytest.mark.parametrize("name", [n for n in NAMES if n != "yokosuka"])
def test_next_cycle_leaves_other_feeds_unchanged(name: str) -> None:
    assert demo_data.demo_feed_bytes(
        name, next_cycle=True
    ) == demo_data.demo_feed_bytes(name)


def test_unknown_feed_name_is_refused() -> None:
    with pytest.raises(KeyError):
        demo_data.demo_feed_bytes("nowhere")


def test_demo_members_match_the_shipped_config_but_read_local_feeds() -> None:
    shipped = config.load_settings(REPO / "config.toml", {}).members
    demo = demo_data.demo_members("http://127.0.0.1:8765")
    assert [m.feed for m in demo] == [
        f"http://127.0.0.1:8765/{m.id}.xml" for m in shipped
    ]
    assert [dataclasses.replace(m, feed="") for m in demo] == [
        dataclasses.replace(m, feed="") for m in shipped
    ]
