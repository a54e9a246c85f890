"""What an e-mail is made from: plain DTOs handed over by the delivery pass.

`render.py` turns a MailRequest into text and HTML, `email_message.py` into the
bytes that go over SMTP. Nothing here reads the database or the clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class MailKind(enum.StrEnum):
    IMMEDIATE = "immediate"  # the new articles of one poll cycle
    DAILY = "daily"
    WEEKLY = "weekly"
    CONFIRM = "confirm"  # double opt-in: "click to confirm your subscription"


@dataclass(frozen=True, slots=True)
class MailArticle:
    title: str  # plain text, straight from the feed (untrusted)
    url: str | None  # the article's link (untrusted: may be any scheme)
    member_name: str
    prefecture: str | None
    published: datetime | None  # UTC; shown in the recipient's timezone
    thumbnail: str | None  # URL (untrusted)
    summary_html: str  # sanitised HTML excerpt; the renderer shortens it to text


@dataclass(frozen=True, slots=True)
class Sender:
    """The site and the identity Japan's specified e-mail act asks for."""

    site_title: str
    base_url: str  # ends with "/"
    from_address: str  # bare address, e.g. kairan@example.jp
    sender_name: str  # 送信者の氏名又は名称
    postal_address: str  # 住所
    contact: str  # where to write with questions (address or URL)
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str  # validated bare address
    language: str  # "ja" or "en"
    timezone: str  # IANA name
    reason: str  # why they receive this, in their language, e.g. the filters chosen
    unsubscribe_url: str  # https://…/unsubscribe/TOKEN (RFC 8058 one-click target)
    unsubscribe_mailto: str  # mailto:…?subject=unsubscribe


@dataclass(frozen=True, slots=True)
class MailRequest:
    kind: MailKind
    sender: Sender
    recipient: Recipient
    message_id: str  # "<…@host>", fixed when the batch was claimed
    date: datetime  # UTC, fixed when the batch was claimed
    list_id: str  # e.g. "Kairan <kairan.example.jp>"
    articles: tuple[MailArticle, ...] = ()
    confirm_url: str | None = None  # CONFIRM only
    confirm_expires: datetime | None = None  # CONFIRM only, UTC


@dataclass(frozen=True, slots=True)
class RenderedMail:
    subject: str  # one line, already sanitised
    text: str
    html: str
