"""Pure: members → OPML 2.0, the one writer for members.opml and `members export-opml`.

OPML 2.0 (http://2005.opml.org/spec2.html), "Subscription lists": one
`outline type="rss"` per member with text, title and xmlUrl (required), htmlUrl
when known, and `category`. Two namespaced attributes (the spec's "Extending
OPML") carry the member's id and prefecture, so that an exported or published
list imported into a Kairan gives back the same members; other readers ignore
them. Reading OPML stays in aggregator/opml.py, which owns the import rules.
"""

from __future__ import annotations

import email.utils
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from aggregator.fields import strip_controls
from notifiers.published import Artefact, Snapshot

NS = "urn:kairan:opml"
ID, PREFECTURE = f"{{{NS}}}id", f"{{{NS}}}prefecture"
ET.register_namespace("kairan", NS)

PATH = "members.opml"
MEDIA_TYPE = "text/x-opml; charset=utf-8"  # OPML 2.0 Notes §8
DOCS = "http://opml.org/spec2.opml"

# In `category`, "," separates categories and "/" the levels of one; neither can
# be escaped, so inside a name they become their full-width forms, which read the
# same (most names here are Japanese) and keep the list intact.
_SEPARATORS = str.maketrans({",": "\uff0c", "/": "\uff0f"})


@dataclass(frozen=True, slots=True)
class Outline:
    """One member as an OPML outline: what both the export and members.opml list."""

    id: str
    name: str
    feed_url: str
    site: str | None
    prefecture: str | None
    tags: tuple[str, ...]


def build_members_opml(snapshot: Snapshot) -> Artefact:
    """members.opml: every active member, in the snapshot's order (by name)."""
    outlines = (
        Outline(m.id, m.name, m.feed_url, m.site, m.prefecture, m.tags)
        for m in snapshot.members
    )
    body = build_document(snapshot.site.title, outlines, modified=snapshot.built_at)
    return Artefact(PATH, body, MEDIA_TYPE)


def build_document(
    title: str, outlines: Iterable[Outline], modified: datetime | None = None
) -> bytes:
    """An OPML 2.0 document; `modified` becomes head/dateModified (RFC 822)."""
    root = ET.Element("opml", version="2.0")
    head = ET.SubElement(root, "head")
    _text_element(head, "title", title)
    if modified is not None:
        rfc822 = email.utils.format_datetime(modified.astimezone(UTC), usegmt=True)
        _text_element(head, "dateModified", rfc822)
    _text_element(head, "docs", DOCS)
    body = ET.SubElement(root, "body")
    for outline in outlines:
        ET.SubElement(body, "outline", _attributes(outline))
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def _category(prefecture: str | None, tags: Iterable[str]) -> str:
    """The prefecture as a category ("/神奈川県") and the tags as tags: the spec
    says "to represent a tag, the category string should contain no slashes"."""
    place = _name(prefecture or "")
    names = [f"/{place}"] if place else []
    names += [tag for tag in map(_name, tags) if tag and tag != place]
    return ",".join(dict.fromkeys(names))  # repeated tags once


def _attributes(outline: Outline) -> dict[str, str]:
    # Insertion order is the serialised order: the standard attributes first.
    attrs = {"type": "rss", "text": outline.name, "title": outline.name}
    attrs["xmlUrl"] = outline.feed_url
    if outline.site:
        attrs["htmlUrl"] = outline.site
    if categories := _category(outline.prefecture, outline.tags):
        attrs["category"] = categories
    attrs[ID] = outline.id
    if outline.prefecture:
        attrs[PREFECTURE] = outline.prefecture
    # ElementTree escapes markup but writes XML-illegal characters as they are
    # (XML 1.0 §2.2), which would make the whole file unreadable.
    return {key: strip_controls(value) for key, value in attrs.items()}


def _text_element(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = strip_controls(text)


def _name(text: str) -> str:
    return strip_controls(text).strip().translate(_SEPARATORS)
