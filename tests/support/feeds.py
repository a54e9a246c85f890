"""Build note-shaped RSS feeds for tests, item by item."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from xml.sax.saxutils import escape

JST = timezone(timedelta(hours=9))


@dataclass(frozen=True)
class Item:
    key: str  # the note key: "n" + 12 hex
    title: str
    body: str = "生成AIの活用について報告します。"
    published: datetime = datetime(2026, 11, 20, 10, 0, tzinfo=JST)
    link: str | None = None  # default: https://note.com/city/n/<key>

    @property
    def url(self) -> str:
        return self.link or f"https://note.com/city/n/{self.key}"


def note_key(n: int) -> str:
    return f"n{n:012x}"


def note_feed(items: Sequence[Item], title: str = "テスト市") -> bytes:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/" '
        'xmlns:note="https://note.com"><channel>',
        f"<title>{escape(title)}</title><link>https://note.com/city</link>",
        "<language>ja</language>",
    ]
    for item in items:
        description = (
            f"<p>{escape(item.body)}</p><br/><a href='{item.url}'>続きをみる</a>"
        )
        parts.append(
            f"<item><title>{escape(item.title)}</title>"
            f"<media:thumbnail>https://assets.example/{item.key}.png</media:thumbnail>"
            f"<description><![CDATA[{description}]]></description>"
            f"<note:creatorName>{escape(title)}</note:creatorName>"
            f"<pubDate>{format_datetime(item.published)}</pubDate>"
            f"<link>{escape(item.url)}</link><guid>{escape(item.url)}</guid></item>"
        )
    parts.append("</channel></rss>")
    return "".join(parts).encode("utf-8")
