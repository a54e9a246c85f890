"""Jinja2 (autoescape, StrictUndefined, ja/en): MailRequest → RenderedMail.

Feed text is untrusted: titles become one line, only http(s) URLs become links or
images, and summaries reach the mail as a short plain-text excerpt, never as HTML.
Every word a reader sees is in MESSAGES or in templates/email.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    select_autoescape,
)
from markupsafe import Markup, escape

from aggregator.sanitize import to_text
from notifiers.email_message import display_name, sanitize_header_text
from notifiers.mail import MailArticle, MailKind, MailRequest, RenderedMail

EXCERPT_LENGTH = 120  # characters of summary text per article
TITLE_LENGTH = 300  # a title in the body; subjects are capped shorter
_WEB_SCHEMES = frozenset({"http", "https"})
_DIGESTS = frozenset({MailKind.DAILY, MailKind.WEEKLY})  # one template for both
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Messages:
    """Every phrase of one language; `{…}` fields are filled by render."""

    lang: str
    subject_one: str  # {site} {title}
    subject_many: str  # {site} {count}
    subject_daily: str  # {site} {date} {count}
    subject_weekly: str  # {site} {date} {count}
    subject_confirm: str  # {site}
    count_one: str  # {n}
    count_many: str  # {n}
    heading_immediate: str  # {site}
    heading_daily: str  # {date}
    heading_weekly: str  # {date}
    count_line: str  # {count}
    see_all: str  # {site}
    untitled: str
    date: str  # {year} {month} {day} {mon}
    datetime: str  # {date} {hour} {minute}
    home_zone: str | None  # the zone name that is not shown (None: always shown)
    with_prefecture: str  # {name} {prefecture}
    meta_separator: str
    bullet: str
    confirm_heading: str
    confirm_intro: str  # {site}
    confirm_button: str
    confirm_expires: str  # {expires}
    confirm_request: str
    confirm_ignore: str
    unsubscribe: str
    unsubscribe_other: str
    reason: str
    sender: str
    address: str
    contact: str


MESSAGES = {
    "ja": Messages(
        lang="ja",
        subject_one="【{site}】{title}",
        subject_many="【{site}】新着記事 {count}",
        subject_daily="【{site}】{date}の新着記事（{count}）",
        subject_weekly="【{site}】{date}までの1週間の新着記事（{count}）",
        subject_confirm="【{site}】配信登録の確認のお願い",
        count_one="{n}件",
        count_many="{n}件",
        heading_immediate="{site}の新着記事",
        heading_daily="{date}の新着記事",
        heading_weekly="{date}までの1週間の新着記事",
        count_line="新着記事は{count}です。",
        see_all="{site}ですべての記事を見る",
        untitled="（無題）",
        date="{year}年{month}月{day}日",
        datetime="{date} {hour:02d}:{minute:02d}",
        home_zone="JST",
        with_prefecture="{name}（{prefecture}）",
        meta_separator="・",
        bullet="■",
        confirm_heading="配信登録の確認",
        confirm_intro=(
            "{site}の新着記事メールの配信登録を受け付けました。"
            "次のリンクを開いて、登録を完了してください。"
        ),
        confirm_button="登録を完了する",
        confirm_expires="リンクの有効期限: {expires}",
        confirm_request="登録内容",
        confirm_ignore=(
            "お心当たりのない場合は、このメールを破棄してください。"
            "登録は完了せず、今後メールが届くこともありません。"
        ),
        unsubscribe="配信停止",
        unsubscribe_other=(
            "このメールに返信するか、下記のお問い合わせ先にご連絡いただいても"
            "配信を停止できます。"
        ),
        reason="配信理由",
        sender="送信者",
        address="住所",
        contact="お問い合わせ",
    ),
    "en": Messages(
        lang="en",
        subject_one="[{site}] {title}",
        subject_many="[{site}] {count}",
        subject_daily="[{site}] Daily digest for {date}: {count}",
        subject_weekly="[{site}] Weekly digest to {date}: {count}",
        subject_confirm="[{site}] Please confirm your subscription",
        count_one="{n} new article",
        count_many="{n} new articles",
        heading_immediate="New on {site}",
        heading_daily="New articles, {date}",
        heading_weekly="New articles in the week to {date}",
        count_line="{count}.",
        see_all="See all articles on {site}",
        untitled="(untitled)",
        date="{day} {mon} {year}",
        datetime="{date}, {hour:02d}:{minute:02d}",
        home_zone=None,
        with_prefecture="{name} ({prefecture})",
        meta_separator=" · ",
        bullet="*",
        confirm_heading="Confirm your subscription",
        confirm_intro=(
            "We received a request to send new articles from {site} to this "
            "address. Open the link below to confirm it."
        ),
        confirm_button="Confirm my subscription",
        confirm_expires="The link works until {expires}.",
        confirm_request="You asked for",
        confirm_ignore=(
            "If this wasn't you, ignore this mail: nothing is subscribed and you "
            "will not hear from us again."
        ),
        unsubscribe="Unsubscribe",
        unsubscribe_other=(
            "You can also stop these mails by replying to this one or by writing "
            "to the contact below."
        ),
        reason="Why you receive this",
        sender="Sender",
        address="Address",
        contact="Contact",
    ),
}


@dataclass(frozen=True, slots=True)
class ArticleView:
    """One article as the templates show it: every field already safe to print."""

    title: str  # one line
    url: str | None  # http(s) only
    thumbnail: str | None  # http(s) only
    meta: str  # member, prefecture and local time
    excerpt: str  # plain text


@dataclass(frozen=True, slots=True)
class RenderedArticle:
    """An article rendered once per language and zone, then reused by every mail.

    `html` is the output of the autoescaping _article.html.j2 macro (Markup), so the
    digest templates print it without escaping it twice; no feed text is marked safe.
    """

    title: str
    text: str
    html: Markup


@dataclass(frozen=True, slots=True)
class FooterView:
    sender_name: str
    postal_address: str
    contact: str
    contact_href: str | None  # mailto: or http(s) link to the contact, if it is one
    reason: str | None  # None on a confirmation: the body says what was asked for
    unsubscribe_url: str | None  # None on a confirmation (not list mail)


def templates_dir() -> Path:
    """The wheel's notifiers/templates, else the source checkout's templates/."""
    here = Path(__file__).resolve().parent
    shipped = here / "templates"
    return shipped if shipped.is_dir() else here.parent / "templates"


@functools.cache
def environment() -> Environment:
    """One Environment per process; templates are compiled once (auto_reload off)."""
    return Environment(
        loader=FileSystemLoader(templates_dir()),
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",),
            disabled_extensions=("txt.j2",),
            default_for_string=True,
            default=True,
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


@functools.cache
def _template(name: str) -> Template:
    return environment().get_template(f"email/{name}")


# Stand-ins for what differs between the recipients of one digest. A list mail is
# rendered once per (articles, language, zone, local date) with these in place,
# then each recipient's values are put in: a 10,000-subscriber digest pass
# renders its templates a handful of times, not 10,000 times.
_STAND_IN_HOST = "unsubscribe.invalid"  # RFC 2606: can never be a real address
_URL_MARK = f"https://{_STAND_IN_HOST}/kairan-recipient-url"
_REASON_MARK = "kairan-recipient-reason"


def render(request: MailRequest) -> RenderedMail:
    """Subject, text and HTML of one mail, in the recipient's language and zone.

    Raises ValueError for a request that cannot make a mail: an unknown language or
    timezone, a list mail without articles, a confirmation without its link.
    """
    if request.kind is MailKind.CONFIRM or not _shareable(request.articles):
        return _render(request)
    recipient = request.recipient
    if web_url(recipient.unsubscribe_url) is None:
        raise ValueError("list mail needs an http(s) unsubscribe url")
    shared = _shared(_generic(request))
    text, html = shared.text, shared.html
    for mark, value in (
        (_URL_MARK, recipient.unsubscribe_url),
        (_REASON_MARK, recipient.reason),
    ):
        text = text.replace(mark, value)
        html = html.replace(mark, str(escape(value)))
    if _STAND_IN_HOST in text or _STAND_IN_HOST in html:
        raise ValueError("a template used a recipient value that render() cannot fill")
    return RenderedMail(subject=shared.subject, text=text, html=html)


def _generic(request: MailRequest) -> MailRequest:
    """The request with every per-recipient value replaced by its stand-in."""
    zone = _zone(request.recipient.timezone)
    day = request.date.astimezone(zone).replace(hour=0, minute=0, second=0)
    recipient = replace(
        request.recipient,
        address=f"recipient@{_STAND_IN_HOST}",
        reason=_REASON_MARK,
        unsubscribe_url=_URL_MARK,
        unsubscribe_mailto=f"mailto:recipient@{_STAND_IN_HOST}",
    )
    return replace(request, recipient=recipient, message_id="", date=day)


@functools.lru_cache(maxsize=64)
def _shareable(articles: tuple[MailArticle, ...]) -> bool:
    """False when feed text carries a stand-in, which must never be filled in
    (an article link must not become the reader's unsubscribe link)."""
    return not any(
        mark in text
        for a in articles
        for text in (a.title, a.url or "", a.thumbnail or "", a.summary_html)
        for mark in (_STAND_IN_HOST, _REASON_MARK)
    )


@functools.lru_cache(maxsize=64)
def _shared(generic: MailRequest) -> RenderedMail:
    return _render(generic)


def _render(request: MailRequest) -> RenderedMail:
    t = MESSAGES.get(request.recipient.language)
    if t is None:
        raise ValueError(f"no messages for language {request.recipient.language!r}")
    zone = _zone(request.recipient.timezone)
    site = sanitize_header_text(request.sender.site_title)
    list_mail = request.kind is not MailKind.CONFIRM
    if list_mail:
        subject, context = _listing(request, t, zone, site)
    else:
        subject, context = _confirm(request, t, zone, site)
    subject = sanitize_header_text(subject)
    context.update(t=t, subject=subject, footer=_footer(request, list_mail=list_mail))
    name = "digest" if request.kind in _DIGESTS else request.kind.value
    return RenderedMail(
        subject=subject,
        text=_template(f"{name}.txt.j2").render(context),
        html=_template(f"{name}.html.j2").render(context),
    )


def _listing(
    request: MailRequest, t: Messages, zone: ZoneInfo, site: str
) -> tuple[str, dict[str, object]]:
    articles = [_rendered_article(a, t.lang, zone) for a in request.articles]
    if not articles:
        raise ValueError(f"{request.kind} mail without articles")
    count = (t.count_one if len(articles) == 1 else t.count_many).format(
        n=len(articles)
    )
    date = format_date(request.date.astimezone(zone), t)
    if request.kind is MailKind.IMMEDIATE:
        heading = t.heading_immediate.format(site=site)
        if len(articles) == 1:
            subject = t.subject_one.format(site=site, title=articles[0].title)
        else:
            subject = t.subject_many.format(site=site, count=count)
    elif request.kind is MailKind.DAILY:
        heading = t.heading_daily.format(date=date)
        subject = t.subject_daily.format(site=site, date=date, count=count)
    else:
        heading = t.heading_weekly.format(date=date)
        subject = t.subject_weekly.format(site=site, date=date, count=count)
    return subject, {
        "heading": heading,
        "count_line": t.count_line.format(count=count),
        "articles": articles,
        "site_url": web_url(request.sender.base_url),
        "see_all": t.see_all.format(site=site),
    }


def _confirm(
    request: MailRequest, t: Messages, zone: ZoneInfo, site: str
) -> tuple[str, dict[str, object]]:
    url = web_url(request.confirm_url or "")
    if url is None or request.confirm_expires is None:
        raise ValueError("a confirmation needs an http(s) confirm_url and its expiry")
    expires = format_datetime(request.confirm_expires.astimezone(zone), t)
    return t.subject_confirm.format(site=site), {
        "heading": t.confirm_heading,
        "intro": t.confirm_intro.format(site=site),
        "confirm_url": url,
        "expires": t.confirm_expires.format(expires=expires),
        "reason": request.recipient.reason,
    }


def _footer(request: MailRequest, *, list_mail: bool) -> FooterView:
    sender, recipient = request.sender, request.recipient
    unsubscribe = web_url(recipient.unsubscribe_url) if list_mail else None
    if list_mail and unsubscribe is None:
        raise ValueError("list mail needs an http(s) unsubscribe url")
    return FooterView(
        sender_name=display_name(sender),
        postal_address=sender.postal_address,
        contact=sender.contact,
        contact_href=_contact_href(sender.contact),
        reason=recipient.reason if list_mail else None,
        unsubscribe_url=unsubscribe,
    )


def _contact_href(contact: str) -> str | None:
    if "@" in contact and ":" not in contact and " " not in contact:
        return f"mailto:{contact}"
    return web_url(contact)


@functools.lru_cache(maxsize=4096)  # a digest run mails the same articles to many
def _rendered_article(
    article: MailArticle, lang: str, zone: ZoneInfo
) -> RenderedArticle:
    t = MESSAGES[lang]
    view = _article_view(article, t, zone)
    return RenderedArticle(
        title=view.title,
        text=_article_macro("_article.txt.j2")(view, t),
        html=_article_macro("_article.html.j2")(view),  # Markup: autoescaped
    )


def _article_macro(name: str) -> Callable[..., Any]:
    """The `article` macro of a template, to call from Python: str or Markup."""
    return _template(name).module.article  # type: ignore[attr-defined, no-any-return]


def _article_view(article: MailArticle, t: Messages, zone: ZoneInfo) -> ArticleView:
    member = sanitize_header_text(article.member_name, TITLE_LENGTH)
    if article.prefecture:
        prefecture = sanitize_header_text(article.prefecture, TITLE_LENGTH)
        member = t.with_prefecture.format(name=member, prefecture=prefecture)
    meta = member
    if article.published is not None:
        published = format_datetime(article.published.astimezone(zone), t)
        meta = f"{member}{t.meta_separator}{published}"
    return ArticleView(
        title=sanitize_header_text(article.title, TITLE_LENGTH) or t.untitled,
        url=web_url(article.url or ""),
        thumbnail=web_url(article.thumbnail or ""),
        meta=meta,
        excerpt=excerpt(article.summary_html),
    )


def web_url(value: str) -> str | None:
    """`value` if it is an absolute http(s) URL with a host and no spaces or controls.

    Anything else (javascript:, data:, vbscript:, relative, junk) is None, so it is
    never a link or an image; the template then shows the title as plain text.
    """
    # isprintable() is False for every control, separator and format character but
    # the ASCII space, which a URL does not hold either
    if not value.isprintable() or " " in value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in _WEB_SCHEMES and parts.hostname else None


@functools.lru_cache(maxsize=4096)
def excerpt(summary_html: str, limit: int = EXCERPT_LENGTH) -> str:
    """The summary as plain text, cut to `limit` characters with "…"."""
    text = to_text(summary_html)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 3 // 4:  # Latin text: end on a word, if one ends near the cut
        cut = cut[:space]
    return cut.rstrip() + "…"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown timezone {name!r}") from error


def format_date(local: datetime, t: Messages) -> str:
    """A local date in the reader's language (2026年12月3日, 3 Dec 2026)."""
    return t.date.format(
        year=local.year, month=local.month, day=local.day, mon=_MONTHS[local.month - 1]
    )


def format_datetime(local: datetime, t: Messages) -> str:
    text = t.datetime.format(
        date=format_date(local, t), hour=local.hour, minute=local.minute
    )
    zone = local.tzname() or ""
    return text if zone == t.home_zone else f"{text} ({zone})"
