"""Synthetic note-shaped RSS 2.0 feeds for the polling benchmark.

Each article is rendered from a seed of its own (feed index, serial), so an article
looks the same in every version of its feed: a feed with one new item of twenty
differs from its previous version by that item (and lastBuildDate) only, as a
real note feed does. The shape follows NOTE-FEEDS.md: media:thumbnail as element
text, note:creatorName/creatorImage, and a CDATA excerpt ending in 続きをみる.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

JST = timezone(timedelta(hours=9))
# Every date is in the past, so that Kairan never clamps a "future" article.
_EPOCH = datetime(2025, 1, 6, 9, 0, tzinfo=JST)
# Multiplying by an odd constant modulo 2**48 is a bijection: distinct
# (index, serial) pairs give distinct, random-looking 12-hex note keys.
_KEY_MIX = 0x9E3779B97F4B
_KEY_SPACE = 2**48
_SERIALS_PER_FEED = 2**16
_IMAGES = "https://assets.st-note.com/production/uploads/images"

_SUBJECTS = (
    "生成AI",
    "議事録の自動作成",
    "問い合わせチャットボット",
    "文書の要約",
    "庁内ガイドライン",
    "職員研修",
    "プロンプト集",
    "窓口業務",
    "翻訳支援",
    "広報文の下書き",
)
_VERBS = (
    "を試行導入しました",
    "の効果を検証しました",
    "について職員アンケートを行いました",
    "の運用ルールを改定しました",
    "で業務時間を削減しました",
    "の勉強会を開きました",
)
_SENTENCES = (
    "本市では昨年度から、庁内の定型業務に生成AIを活用する取り組みを進めています。",
    "今回は、実際に使ってみた職員の声と、見えてきた課題をまとめました。",
    "個人情報を入力しないこと、出力は必ず人が確認することを原則としています。",
    "議事録の作成にかかる時間は、一件あたり平均で四割ほど短くなりました。",
    "一方で、固有名詞や数字の誤りが残ることがあり、確認の手順を定めました。",
    "他の自治体の皆さまとも知見を共有し、よりよい使い方を探っていきます。",
    "導入にあたっては、情報政策課と各課の担当者が週に一度集まって検討しました。",
    "研修では、良い指示文と悪い指示文を比べる演習がとくに好評でした。",
    "今後は、住民の皆さまからの問い合わせ対応への活用も検討していきます。",
    "ご意見やご質問は、記事へのコメントでお気軽にお寄せください。",
)


@dataclass(frozen=True, slots=True)
class FeedSet:
    """N feeds on disk: feed ``i`` is ``directory / path(i)``, newest item first."""

    directory: Path
    count: int
    items: int

    @staticmethod
    def urlname(index: int) -> str:
        return f"bench{index:04d}"

    def path(self, index: int) -> str:
        """The feed's path as served (and below ``directory``), note's /rss pattern."""
        return f"{self.urlname(index)}/rss"

    def write(self, index: int, newest: int) -> int:
        """Write feed ``index`` whose newest article is ``newest``; returns its size."""
        body = feed_xml(index, self.items, newest)
        file = self.directory / self.path(index)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(body)
        return len(body)

    def write_all(self) -> list[int]:
        """Write every feed at its first version; returns the sizes in bytes."""
        return [self.write(i, self.items - 1) for i in range(self.count)]


def note_key(index: int, serial: int) -> str:
    """The note key ("n" + 12 hex) of article ``serial`` of feed ``index``."""
    if not 0 <= serial < _SERIALS_PER_FEED:
        raise ValueError(f"serial {serial} out of range")
    mixed = (index * _SERIALS_PER_FEED + serial) * _KEY_MIX % _KEY_SPACE
    return f"n{mixed:012x}"


def published(serial: int) -> datetime:
    return _EPOCH + timedelta(hours=7 * serial)


def feed_xml(index: int, items: int, newest: int) -> bytes:
    """Feed ``index``: its ``items`` articles from ``newest`` down, newest first."""
    urlname = FeedSet.urlname(index)
    name = f"ベンチ市{index:04d}"
    serials = range(newest, max(newest - items, -1), -1)
    body = "".join(_item(index, urlname, name, serial) for serial in serials)
    return (_channel(urlname, name, published(newest)) + body + _CLOSE).encode("utf-8")


_CLOSE = "  </channel>\n</rss>\n"


def _channel(urlname: str, name: str, built: datetime) -> str:
    site = f"https://note.com/{urlname}"
    icon = "https://assets.st-note.com/poc-image/manual/note-common-images/production/svg/production.ico"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" \
xmlns:media="http://search.yahoo.com/mrss/" xmlns:note="https://note.com" \
xmlns:webfeeds="http://webfeeds.org/rss/1.0">
  <channel>
    <title>{escape(name)}</title>
    <description>{escape(name)}の生成AI活用の取り組みを紹介します。</description>
    <link>{site}</link>
    <atom:link rel="self" type="application/rss+xml" href="{site}/rss"/>
    <copyright>{escape(name)}</copyright>
    <webfeeds:icon>{icon}</webfeeds:icon>
    <webfeeds:logo>{icon}</webfeeds:logo>
    <webfeeds:accentColor>249F80</webfeeds:accentColor>
    <language>ja</language>
    <lastBuildDate>{format_datetime(built)}</lastBuildDate>
"""


def _item(index: int, urlname: str, name: str, serial: int) -> str:
    rng = random.Random(index * _SERIALS_PER_FEED + serial)
    key = note_key(index, serial)
    link = f"https://note.com/{urlname}/n/{key}"
    title = f"{rng.choice(_SUBJECTS)}{rng.choice(_VERBS)}（第{serial + 1}回）"
    picture = f"{rng.randrange(10**8)}/rectangle_large_type_2_{_hex(rng)}.png"
    thumbnail = f"{_IMAGES}/{picture}?width=800"
    return (
        f"<item><title>{escape(title)}</title>"
        f"<media:thumbnail>{thumbnail}</media:thumbnail>"
        f"<description><![CDATA[{_excerpt(rng)}"
        f"<br/><a href='{link}'>続きをみる</a>]]></description>"
        f"<note:creatorImage>{_avatar(index)}</note:creatorImage>"
        f"<note:creatorName>{escape(name)}</note:creatorName>"
        f"<pubDate>{format_datetime(published(serial))}</pubDate>"
        f"<link>{link}</link><guid>{link}</guid></item>\n"
    )


def _avatar(index: int) -> str:
    """The creator's avatar: one per feed, as in a creator's own note feed."""
    rng = random.Random(-1 - index)
    return f"{_IMAGES}/{rng.randrange(10**8)}/profile_{_hex(rng)}.png?width=330"


def _excerpt(rng: random.Random) -> str:
    """A note paragraph (name = id = a UUID) of one sentence, an image in some."""
    ident = uuid.UUID(int=rng.getrandbits(128))
    text = rng.choice(_SENTENCES)
    paragraphs = [f'<p name="{ident}" id="{ident}">{text}</p>']
    if rng.random() < 0.1:
        ident = uuid.UUID(int=rng.getrandbits(128))
        src = f"{_IMAGES}/{rng.randrange(10**8)}/picture_pc_{_hex(rng)}.png"
        paragraphs.append(
            f'<figure name="{ident}" id="{ident}"><img src="{src}" alt="" '
            'width="620" height="349"></figure>'
        )
    return "".join(paragraphs)


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(128):032x}"
