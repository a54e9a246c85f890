"""render: subjects, wording, local times, excerpts, untrusted links, the footer.

The builders at the top (`sender`, `recipient`, `article`, `request`) are shared with
test_email_message.py.
"""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import UTC, datetime
from typing import Any

import jinja2
import pytest

from notifiers import render as render_module
from notifiers.mail import (
    MailArticle,
    MailKind,
    MailRequest,
    Recipient,
    RenderedMail,
    Sender,
)
from notifiers.render import EXCERPT_LENGTH, excerpt, render, templates_dir, web_url

DATE = datetime(
    2026, 12, 3, 0, 0, tzinfo=UTC
)  # 09:00 in Tokyo, 19:00 the day before in NY
PUBLISHED = datetime(2026, 12, 3, 0, 30, tzinfo=UTC)
SUMMER = datetime(2026, 7, 1, 12, 5, tzinfo=UTC)  # New York on daylight saving time
UNSUBSCRIBE = "https://kairan.example.jp/unsubscribe/tok-ABC123"
MAILTO = "mailto:unsubscribe@kairan.example.jp?subject=unsubscribe"
UNSAFE_URLS = (
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html;base64,PHNjcmlwdD4=",
    "vbscript:msgbox(1)",
    "ftp://example.jp/file",
    "/relative/path",
    "http:no-host",
    "https://example.jp/a b",
    "https://example.jp/\u2028x",
)


def sender(**overrides: Any) -> Sender:
    fields: dict[str, Any] = {
        "site_title": "Kairan",
        "base_url": "https://kairan.example.jp/",
        "from_address": "kairan@example.jp",
        "sender_name": "回覧運営事務局",
        "postal_address": "神奈川県横須賀市小川町11番地",
        "contact": "info@example.jp",
        "reply_to": "info@example.jp",
    }
    fields.update(overrides)
    return Sender(**fields)


def recipient(language: str = "ja", **overrides: Any) -> Recipient:
    reasons = {
        "ja": "すべての新着記事の配信に登録されたため",
        "en": "you asked for every new article",
    }
    fields: dict[str, Any] = {
        "address": "taro@example.com",
        "language": language,
        "timezone": "Asia/Tokyo",
        "reason": reasons[language],
        "unsubscribe_url": UNSUBSCRIBE,
        "unsubscribe_mailto": MAILTO,
    }
    fields.update(overrides)
    return Recipient(**fields)


def article(number: int = 1, **overrides: Any) -> MailArticle:
    fields: dict[str, Any] = {
        "title": f"生成AIで議事録作成を効率化 その{number}",
        "url": f"https://note.com/yokosuka/n/n{number:012x}",
        "member_name": "横須賀市",
        "prefecture": "神奈川県",
        "published": PUBLISHED,
        "thumbnail": f"https://assets.example.jp/{number}.png",
        "summary_html": f"<p>横須賀市の取り組み{number}を&amp;紹介します。</p>",
    }
    fields.update(overrides)
    return MailArticle(**fields)


def request(
    kind: MailKind = MailKind.DAILY,
    articles: tuple[MailArticle, ...] | None = None,
    language: str = "ja",
    **overrides: Any,
) -> MailRequest:
    if articles is None:
        articles = (
            () if kind is MailKind.CONFIRM else (article(1), article(2), article(3))
        )
    fields: dict[str, Any] = {
        "kind": kind,
        "sender": sender(),
        "recipient": recipient(language),
        "message_id": "<digest-42@kairan.example.jp>",
        "date": DATE,
        "list_id": "Kairan <kairan.example.jp>",
        "articles": articles,
    }
    if kind is MailKind.CONFIRM:
        fields["confirm_url"] = "https://kairan.example.jp/confirm/c-XYZ"
        fields["confirm_expires"] = datetime(2026, 12, 5, 0, 0, tzinfo=UTC)
    fields.update(overrides)
    return MailRequest(**fields)


def rendered(**overrides: Any) -> RenderedMail:
    return render(request(**overrides))


def with_zone(zone: str, language: str = "ja", **overrides: Any) -> MailRequest:
    return request(
        language=language, recipient=recipient(language, timezone=zone), **overrides
    )


# --- the environment --------------------------------------------------------------


def test_templates_dir_is_the_checkouts_templates() -> None:
    names = {path.name for path in (templates_dir() / "email").iterdir()}
    assert {"digest.txt.j2", "digest.html.j2", "confirm.html.j2"} <= names
    assert {"immediate.txt.j2", "_footer.txt.j2", "_footer.html.j2"} <= names


def test_environment_is_built_once_and_escapes_html_only() -> None:
    env = render_module.environment()
    assert render_module.environment() is env
    assert env.autoescape("email/digest.html.j2") is True  # type: ignore[operator]
    assert env.autoescape("email/digest.txt.j2") is False  # type: ignore[operator]


def test_undefined_names_raise() -> None:
    with pytest.raises(jinja2.UndefinedError):
        render_module.environment().from_string("{{ missing }}").render()


# --- subjects ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ja", "【Kairan】生成AIで議事録作成を効率化 その1"),
        ("en", "[Kairan] 生成AIで議事録作成を効率化 その1"),
    ],
)
def test_immediate_with_one_article_names_it(language: str, expected: str) -> None:
    mail = rendered(kind=MailKind.IMMEDIATE, articles=(article(1),), language=language)
    assert mail.subject == expected


@pytest.mark.parametrize(
    ("language", "expected"),
    [("ja", "【Kairan】新着記事 3件"), ("en", "[Kairan] 3 new articles")],
)
def test_immediate_with_several_articles_counts_them(
    language: str, expected: str
) -> None:
    assert rendered(kind=MailKind.IMMEDIATE, language=language).subject == expected


@pytest.mark.parametrize(
    ("kind", "language", "zone", "expected"),
    [
        (
            MailKind.DAILY,
            "ja",
            "Asia/Tokyo",
            "【Kairan】2026年12月3日の新着記事（3件）",
        ),
        (
            MailKind.DAILY,
            "en",
            "America/New_York",
            "[Kairan] Daily digest for 2 Dec 2026: 3 new articles",
        ),
        (
            MailKind.WEEKLY,
            "ja",
            "Asia/Tokyo",
            "【Kairan】2026年12月3日までの1週間の新着記事（3件）",
        ),
        (
            MailKind.WEEKLY,
            "en",
            "Asia/Tokyo",
            "[Kairan] Weekly digest to 3 Dec 2026: 3 new articles",
        ),
    ],
)
def test_digest_subject_has_the_local_date(
    kind: MailKind, language: str, zone: str, expected: str
) -> None:
    assert render(with_zone(zone, language, kind=kind)).subject == expected


def test_a_one_article_digest_says_article_not_articles() -> None:
    mail = rendered(language="en", articles=(article(1),))
    assert mail.subject == "[Kairan] Daily digest for 3 Dec 2026: 1 new article"


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ja", "【Kairan】配信登録の確認のお願い"),
        ("en", "[Kairan] Please confirm your subscription"),
    ],
)
def test_confirm_subject(language: str, expected: str) -> None:
    assert rendered(kind=MailKind.CONFIRM, language=language).subject == expected


@pytest.mark.parametrize(
    "title",
    [
        "Hello\r\nBcc: x@evil",
        "Hello\nBcc: x@evil",
        "Hello\u2028Bcc: x@evil",
        "Hello\x85Bcc:\x00 x@evil",
    ],
)
def test_subject_is_one_line_whatever_the_title(title: str) -> None:
    mail = rendered(kind=MailKind.IMMEDIATE, articles=(article(title=title),))
    assert mail.subject == "【Kairan】Hello Bcc: x@evil"


def test_an_empty_title_is_called_untitled() -> None:
    mail = rendered(kind=MailKind.IMMEDIATE, articles=(article(title=" \r\n"),))
    assert mail.subject == "【Kairan】（無題）"
    assert "■ （無題）\n" in mail.text


def test_a_long_title_is_capped_with_an_ellipsis() -> None:
    mail = rendered(kind=MailKind.IMMEDIATE, articles=(article(title="長" * 400),))
    assert len(mail.subject) == 150
    assert mail.subject.endswith("長…")


# --- times, wording, excerpts -----------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "language", "published", "expected"),
    [
        ("Asia/Tokyo", "ja", PUBLISHED, "2026年12月3日 09:30"),
        ("Asia/Tokyo", "en", PUBLISHED, "3 Dec 2026, 09:30 (JST)"),
        ("America/New_York", "en", PUBLISHED, "2 Dec 2026, 19:30 (EST)"),
        ("America/New_York", "ja", PUBLISHED, "2026年12月2日 19:30 (EST)"),
        ("America/New_York", "en", SUMMER, "1 Jul 2026, 08:05 (EDT)"),
    ],
)
def test_published_time_is_in_the_recipients_zone(
    zone: str, language: str, published: datetime, expected: str
) -> None:
    mail = render(with_zone(zone, language, articles=(article(published=published),)))
    assert expected in mail.text
    assert expected in mail.html


def test_a_tokyo_reader_sees_no_zone_name() -> None:
    assert "JST" not in rendered().text


def test_member_and_prefecture_are_shown_in_both_parts() -> None:
    ja, en = rendered(), rendered(language="en")
    assert "横須賀市（神奈川県）・2026年12月3日 09:30" in ja.text
    assert "横須賀市（神奈川県）・2026年12月3日 09:30" in ja.html
    assert "横須賀市 (神奈川県) · 3 Dec 2026, 09:30 (JST)" in en.text


def test_an_article_without_prefecture_or_date_shows_the_member_alone() -> None:
    mail = rendered(articles=(article(prefecture=None, published=None),))
    assert "\n  横須賀市\n" in mail.text


@pytest.mark.parametrize(
    ("language", "words"),
    [
        (
            "ja",
            "2026年12月3日の新着記事|新着記事は3件です。|配信停止|配信理由|送信者|住所",
        ),
        ("en", "New articles, 3 Dec 2026|3 new articles.|Unsubscribe|Sender|Address"),
    ],
)
def test_wording_follows_the_language(language: str, words: str) -> None:
    mail = rendered(language=language)
    for word in words.split("|"):
        assert word in mail.text
        assert word in mail.html
    assert f'<html lang="{language}">' in mail.html


def test_unknown_language_or_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="language"):
        render(request(recipient=dataclasses.replace(recipient(), language="fr")))
    with pytest.raises(ValueError, match="timezone"):
        render(with_zone("Mars/Olympus"))


def test_excerpt_is_plain_text_cut_near_the_limit() -> None:
    html = "<p>a&amp;b   <b>c</b>\n\n d&lt;script&gt;</p><script>evil()</script>"
    assert excerpt(html) == "a&b c d<script>"
    long = excerpt("<p>" + "議会" * 100 + "</p>")
    assert len(long) == EXCERPT_LENGTH
    assert long.endswith("…")
    words = excerpt("<p>" + "word " * 50 + "</p>")
    assert words.endswith("word…")
    assert len(words) <= EXCERPT_LENGTH


def test_summary_html_never_reaches_the_mail() -> None:
    summary = '<p><a href="https://x.example/">リンク</a><img src="https://x.example/i.png">本文</p>'
    mail = rendered(articles=(article(summary_html=summary),))
    assert "リンク本文" in mail.text
    assert "リンク本文" in mail.html
    assert "https://x.example/" not in mail.html + mail.text


# --- untrusted links ---------------------------------------------------------------


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_web_url_refuses_anything_but_http_and_https(url: str) -> None:
    assert web_url(url) is None


@pytest.mark.parametrize("url", ["https://example.jp/a?b=1&c=2", "HTTP://example.jp/"])
def test_web_url_keeps_web_links(url: str) -> None:
    assert web_url(url) == url


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_a_non_web_link_shows_the_title_as_plain_text(url: str) -> None:
    unsafe = article(1, title="危ないリンク", url=url, thumbnail=url)
    mail = rendered(articles=(unsafe, article(2)))
    assert '">危ないリンク</p>' in mail.html
    assert "危ないリンク</a>" not in mail.html
    assert (
        mail.html.count("<a href=") == 1 + 3
    )  # article 2, see all, unsubscribe, contact
    assert url not in mail.html
    assert url not in mail.text
    assert "javascript:" not in mail.html.lower()
    assert mail.html.count("<img ") == 1  # article 2's thumbnail only


def test_script_in_a_title_is_escaped() -> None:
    hostile = article(
        1, title='<script>alert("x")</script>"onload=', url="https://e.jp/?a=1&b=<2>"
    )
    mail = rendered(articles=(hostile,))
    assert "<script" not in mail.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&#34;onload=" in mail.html
    assert 'href="https://e.jp/?a=1&amp;b=&lt;2&gt;"' in mail.html
    # plain text needs no escaping
    assert '<script>alert("x")</script>"onload=' in mail.text


def test_thumbnails_are_html_only_with_alt_text() -> None:
    mail = rendered()
    assert '<img src="https://assets.example.jp/1.png" alt="' in mail.html
    assert 'alt="生成AIで議事録作成を効率化 その1"' in mail.html
    assert "assets.example.jp" not in mail.text


def test_html_loads_nothing_but_the_thumbnails() -> None:
    html = rendered().html
    assert re.findall(r'src="([^"]*)"', html) == [
        f"https://assets.example.jp/{number}.png" for number in (1, 2, 3)
    ]
    for external in ("<link", "<style", "<script", "url(", "@import", "<iframe"):
        assert external not in html
    assert 'content="width=device-width, initial-scale=1"' in html
    assert "max-width:600px" in html


def test_immediate_mail_heading() -> None:
    ja = rendered(kind=MailKind.IMMEDIATE)
    en = rendered(kind=MailKind.IMMEDIATE, language="en")
    assert ja.text.startswith("Kairanの新着記事\n新着記事は3件です。\n")
    assert en.text.startswith("New on Kairan\n3 new articles.\n")
    assert ">Kairanの新着記事</h1>" in ja.html


def test_text_part_alone_holds_every_link_and_the_unsubscribe_url() -> None:
    mail = rendered(articles=(article(1), article(2, url="javascript:x"), article(3)))
    for number in (1, 3):
        assert f"\n  https://note.com/yokosuka/n/n{number:012x}\n" in mail.text
    assert f"配信停止: {UNSUBSCRIBE}\n" in mail.text
    assert "https://kairan.example.jp/\n" in mail.text


# --- the footer (特定電子メール法) ----------------------------------------------------


@pytest.mark.parametrize("kind", [MailKind.IMMEDIATE, MailKind.DAILY, MailKind.CONFIRM])
def test_footer_names_the_sender_in_both_parts(kind: MailKind) -> None:
    mail = rendered(kind=kind)
    for part in (mail.text, mail.html):
        assert "送信者: 回覧運営事務局" in part
        assert "住所: 神奈川県横須賀市小川町11番地" in part
        assert "info@example.jp" in part
    assert "\n-- \n" in mail.text
    assert '<a href="mailto:info@example.jp"' in mail.html


def test_footer_says_why_and_how_to_stop() -> None:
    mail = rendered()
    for part in (mail.text, mail.html):
        assert "配信理由: すべての新着記事の配信に登録されたため" in part
        assert (
            "このメールに返信するか、下記のお問い合わせ先にご連絡いただいても" in part
        )
    assert f'<a href="{UNSUBSCRIBE}"' in mail.html


def test_sender_name_falls_back_to_the_site_title() -> None:
    mail = rendered(
        sender=sender(sender_name="", contact="https://kairan.example.jp/contact")
    )
    assert "送信者: Kairan\n" in mail.text
    assert '<a href="https://kairan.example.jp/contact"' in mail.html


def test_list_mail_without_web_unsubscribe_url_is_refused() -> None:
    bad = recipient(unsubscribe_url="javascript:x")
    with pytest.raises(ValueError, match="unsubscribe"):
        render(request(recipient=bad))


def test_list_mail_without_articles_is_refused() -> None:
    with pytest.raises(ValueError, match="without articles"):
        render(request(kind=MailKind.IMMEDIATE, articles=()))


# --- confirmation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "zone", "expires", "ignore"),
    [
        (
            "ja",
            "Asia/Tokyo",
            "リンクの有効期限: 2026年12月5日 09:00",
            "お心当たりのない場合は、このメールを破棄してください。",
        ),
        (
            "en",
            "America/New_York",
            "The link works until 4 Dec 2026, 19:00 (EST).",
            "If this wasn't you, ignore this mail",
        ),
    ],
)
def test_confirm_has_link_expiry_request_and_ignore_wording(
    language: str, zone: str, expires: str, ignore: str
) -> None:
    mail = render(with_zone(zone, language, kind=MailKind.CONFIRM))
    reason = recipient(language).reason
    for part in (mail.text, html.unescape(mail.html)):
        assert "https://kairan.example.jp/confirm/c-XYZ" in part
        assert expires in part
        assert reason in part
        assert ignore in part
    assert "\nhttps://kairan.example.jp/confirm/c-XYZ\n" in mail.text
    assert UNSUBSCRIBE not in mail.text + mail.html  # not list mail


def test_confirm_without_link_or_expiry_is_refused() -> None:
    with pytest.raises(ValueError, match="confirm_url"):
        render(request(kind=MailKind.CONFIRM, confirm_url="javascript:x"))
    with pytest.raises(ValueError, match="confirm_url"):
        render(request(kind=MailKind.CONFIRM, confirm_expires=None))


def test_a_shared_digest_is_filled_in_per_recipient_and_feed_cannot_fake_it() -> None:
    """One digest for many readers is rendered once; each gets only their own link."""
    base = request()
    other = dataclasses.replace(
        base,
        recipient=dataclasses.replace(
            base.recipient,
            address="b@example.jp",
            reason="reason <b>",
            unsubscribe_url="https://kairan.example.jp/unsubscribe/BBB",
        ),
    )
    first, second = render(base), render(other)
    assert base.recipient.unsubscribe_url in first.text
    assert "https://kairan.example.jp/unsubscribe/BBB" in second.text
    assert base.recipient.unsubscribe_url not in second.text
    assert "reason &lt;b&gt;" in second.html
    assert "unsubscribe.invalid" not in second.text + second.html

    trap = dataclasses.replace(
        base.articles[0],
        url="https://unsubscribe.invalid/kairan-recipient-url",
        title="kairan-recipient-reason",
    )
    tricked = render(dataclasses.replace(base, articles=(trap, *base.articles[1:])))
    assert tricked.text.count(base.recipient.unsubscribe_url) == 1  # the footer only
    assert "kairan-recipient-reason" in tricked.text
