"""The demo's sample feeds (note-shaped RSS, one per shipped member) and its members.

The feeds live in ``demo_feeds/`` inside the package and are read through
importlib.resources, so the demo works from an installed wheel. ``demo_feeds/next/``
holds the feeds as they look one poll cycle later (a new article has appeared).
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from aggregator.models import Member

_CITY = ("municipality",)
_MAGAZINE = "https://govgov.ai/m/m8f7256e10f43"

# The shipped config.toml's members, without their feeds (a test holds the two
# together): the demo serves each one's sample feed from a local server instead.
# id, name, site, prefecture, tags
_MEMBERS: tuple[tuple[str, str, str, str | None, tuple[str, ...]], ...] = (
    ("govgov-magazine", "自治体AI活用マガジン", _MAGAZINE, None, ("magazine",)),
    ("yokosuka", "横須賀市", "https://govgov.ai/", "神奈川県", _CITY),
    ("tokyo", "東京都", "https://note.com/kouzoukaikaku", "東京都", ("prefecture",)),
    ("kobe", "神戸市", "https://kobe-note.jp/", "兵庫県", _CITY),
    ("shiki", "志木市", "https://note.com/shiki_system", "埼玉県", _CITY),
    ("meguro", "目黒区", "https://note.com/meguro_city", "東京都", _CITY),
    ("kuwana", "桑名市", "https://kuwana-city.note.jp/", "三重県", _CITY),
)


def _feeds_dir() -> Traversable:
    return files("aggregator.sandbox") / "demo_feeds"


def demo_feed_names() -> list[str]:
    """The sample feeds' names (a member id each), sorted."""
    return sorted(
        entry.name.removesuffix(".xml")
        for entry in _feeds_dir().iterdir()
        if entry.is_file() and entry.name.endswith(".xml")
    )


def demo_feed_bytes(name: str, *, next_cycle: bool = False) -> bytes:
    """A sample feed's bytes; with ``next_cycle``, as it is one poll later (a feed
    that does not change between cycles is the same file)."""
    if name not in demo_feed_names():
        raise KeyError(f"no demo feed named {name!r}")
    later = _feeds_dir() / "next" / f"{name}.xml"
    if next_cycle and later.is_file():
        return later.read_bytes()
    return (_feeds_dir() / f"{name}.xml").read_bytes()


def demo_members(base_url: str) -> tuple[Member, ...]:
    """The shipped members, each reading its sample feed at base_url + id + ".xml"."""
    base = base_url if base_url.endswith("/") else base_url + "/"
    return tuple(
        Member(id_, name, f"{base}{id_}.xml", site, prefecture, tags)
        for id_, name, site, prefecture, tags in _MEMBERS
    )
