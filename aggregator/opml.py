"""OPML 2.0 in and out for the member list (pure: bytes ⇄ Members).

The writer is notifiers/opml.py, shared with the published members.opml.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from urllib.parse import urlsplit

from aggregator import xmlguard
from aggregator.errors import UsageError
from aggregator.models import Member
from notifiers.opml import ID, PREFECTURE, Outline, build_document

SLUG_BAD = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return SLUG_BAD.sub("-", ascii_text.lower()).strip("-")[:63]


def slug_for(title: str, feed: str, taken: set[str]) -> str:
    """An id for an imported member: from its title, else its feed URL; unique."""
    parts = urlsplit(feed)
    path = [p for p in parts.path.split("/") if p and p not in {"rss", "feed", "atom"}]
    base = slugify(title) or slugify("-".join([*path[:1], parts.hostname or ""]))
    base = base or "member"
    slug, n = base, 2
    while slug in taken:
        slug = f"{base[:60]}-{n}"
        n += 1
    taken.add(slug)
    return slug


def parse_opml(data: bytes, source: str, taken: set[str]) -> list[Member]:
    """Every outline with an xmlUrl, as a Member (ids made unique against ``taken``)."""
    text = data.decode("utf-8", errors="replace")
    problem = xmlguard.find_declarations(text)
    if problem:
        raise UsageError(f"{source}: {problem}")
    try:
        root = ET.fromstring(xmlguard.strip_doctype(text))  # noqa: S314 - guarded above
    except ET.ParseError as e:
        raise UsageError(f"{source}: not valid OPML: {e}") from e
    if root.tag != "opml":
        raise UsageError(f"{source}: not an OPML document (root is <{root.tag}>)")
    members = []
    for outline in root.iter("outline"):
        feed = (outline.get("xmlUrl") or "").strip()
        if not feed:
            continue
        members.append(outline_member(outline, feed, taken))
    return members


def outline_member(outline: ET.Element, feed: str, taken: set[str]) -> Member:
    name = (outline.get("title") or outline.get("text") or feed).strip()
    prefecture = (outline.get(PREFECTURE) or "").strip() or None
    categories = [
        c.strip().strip("/") for c in (outline.get("category") or "").split(",")
    ]
    wanted = (outline.get(ID) or "").strip()
    if wanted and wanted not in taken and slugify(wanted) == wanted:
        taken.add(wanted)
        member_id = wanted
    else:
        member_id = slug_for(name, feed, taken)
    return Member(
        id=member_id,
        name=name,
        feed=feed,
        site=(outline.get("htmlUrl") or "").strip() or None,
        prefecture=prefecture,
        tags=tuple(c for c in categories if c and c != prefecture),
    )


def build_opml(title: str, members: Sequence[Member]) -> bytes:
    """`kairan members export-opml`: every configured member, in config order."""
    outlines = [
        Outline(m.id, m.name, m.feed, m.site, m.prefecture, m.tags) for m in members
    ]
    return build_document(title, outlines)
