"""Pure: a claimed batch and its stored articles → the MailRequest notifiers render.

Everything a message says is decided here from plain data (settings, subscriber,
entries, tokens), so `kairan digest preview`, the delivery pass and the tests
build exactly the same message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlsplit

from aggregator.models import Cadence, Filters, Member, StoredEntry, Subscriber
from aggregator.settings import Settings
from notifiers.mail import MailArticle, MailKind, MailRequest, Recipient, Sender


@dataclass(frozen=True, slots=True)
class Envelope:
    """The identity of one message, fixed at claim time."""

    kind: MailKind
    message_id: str
    date: datetime  # UTC
    unsubscribe_token: str
    confirm_token: str | None = None
    confirm_expires: datetime | None = None


def site_host(settings: Settings) -> str:
    return urlsplit(settings.site.base_url).hostname or "localhost"


def sender(settings: Settings) -> Sender:
    email, site = settings.email, settings.site
    return Sender(
        site_title=site.title,
        base_url=site.base_url,
        from_address=email.from_address,
        sender_name=email.sender_name or site.title,
        postal_address=email.postal_address,
        contact=site.contact or email.reply_to or email.from_address,
        reply_to=email.reply_to,
    )


def unsubscribe_mailbox(settings: Settings) -> str:
    email = settings.email
    return email.unsubscribe_address or email.reply_to or email.from_address


_CADENCE_WORDS = {
    "ja": {
        Cadence.IMMEDIATE: "新着記事のお知らせ（随時）",
        Cadence.DAILY: "新着記事のまとめ（毎日）",
        Cadence.WEEKLY: "新着記事のまとめ（毎週）",
    },
    "en": {
        Cadence.IMMEDIATE: "new-article alerts (as they appear)",
        Cadence.DAILY: "a daily digest of new articles",
        Cadence.WEEKLY: "a weekly digest of new articles",
    },
}


def reason(subscriber: Subscriber, site_title: str) -> str:
    """Why this person receives the mail, in their language (特定電子メール法)."""
    what = _CADENCE_WORDS[subscriber.language][subscriber.schedule.cadence]
    scope = describe_filters(subscriber.filters, subscriber.language)
    if subscriber.language == "ja":
        return (
            f"このメールは、{subscriber.address} が「{site_title}」の{what}"
            f"（{scope}）に登録されているためお送りしています。"
        )
    return (
        f"You receive this because {subscriber.address} subscribed to {what} "
        f"from {site_title} ({scope})."
    )


def describe_filters(filters: Filters, language: str) -> str:
    ja = language == "ja"
    parts: list[str] = []
    labels = (
        ("会員", "members", filters.members),
        ("タグ", "tags", filters.tags),
        ("キーワード", "keywords", filters.keywords),
    )
    for label_ja, label_en, values in labels:
        if values:
            joined = ("、" if ja else ", ").join(values)
            parts.append(f"{label_ja}: {joined}" if ja else f"{label_en}: {joined}")
    if not parts:
        return "すべての記事" if ja else "all articles"
    return ("／" if ja else "; ").join(parts)


def mail_article(entry: StoredEntry, members: Mapping[str, Member]) -> MailArticle:
    member = members.get(entry.member_id)
    return MailArticle(
        title=entry.title,
        url=entry.link,
        member_name=member.name if member else entry.member_id,
        prefecture=member.prefecture if member else None,
        published=entry.published or entry.first_seen,
        thumbnail=entry.thumbnail,
        summary_html=entry.summary_html,
    )


def members_by_id(settings: Settings) -> dict[str, Member]:
    """Built once per pass, not per message: a pass mails thousands of times."""
    return {m.id: m for m in settings.members}


def mail_request(
    settings: Settings,
    subscriber: Subscriber,
    envelope: Envelope,
    entries: Sequence[StoredEntry],
    members: Mapping[str, Member],
) -> MailRequest:
    base = settings.site.base_url
    token = envelope.unsubscribe_token
    recipient = Recipient(
        address=subscriber.address,
        language=subscriber.language,
        timezone=subscriber.timezone,
        reason=reason(subscriber, settings.site.title),
        unsubscribe_url=f"{base}unsubscribe/{token}",
        unsubscribe_mailto=(
            f"mailto:{unsubscribe_mailbox(settings)}"
            f"?subject={quote('unsubscribe ' + token)}"
        ),
    )
    ordered = sorted(
        entries, key=lambda e: (e.published or e.first_seen, e.id), reverse=True
    )
    return MailRequest(
        kind=envelope.kind,
        sender=sender(settings),
        recipient=recipient,
        message_id=envelope.message_id,
        date=envelope.date,
        list_id=f"{settings.site.title} <kairan.{site_host(settings)}>",
        articles=tuple(mail_article(e, members) for e in ordered),
        confirm_url=(
            f"{base}confirm/{envelope.confirm_token}"
            if envelope.confirm_token
            else None
        ),
        confirm_expires=envelope.confirm_expires,
    )
