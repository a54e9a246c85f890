"""email_message.build: MIME structure, headers, RFC 8058, header injection, goldens.

Every assertion reads the serialised bytes back with the email package's parser.
The golden digests (tests/fixtures/mail/*.eml, Date, Message-ID and boundary
normalised) are rewritten after a deliberate change with

    python -m tests.unit.test_email_message --regen

and the diff is then read like any other change.
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import re
import sys
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from notifiers.email_message import build, check_headers, sanitize_header_text
from notifiers.mail import MailKind, MailRequest, RenderedMail
from notifiers.render import render
from tests.unit.test_render import (
    DATE,
    MAILTO,
    UNSUBSCRIBE,
    article,
    recipient,
    request,
    sender,
)

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "mail"
LIST_HEADERS = ["List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"]
HEAD = ["From", "To", "Subject", "Date", "Message-ID"]
TAIL = ["Reply-To", "Auto-Submitted", "X-Auto-Response-Suppress", "Content-Language"]
NAMES = [*HEAD, *LIST_HEADERS, *TAIL, "MIME-Version", "Content-Type"]
CONFIRM_NAMES = [*HEAD, *TAIL, "MIME-Version", "Content-Type"]
EVIL_WORD = "=?utf-8?b?" + base64.b64encode(b"x\r\nBcc: x@evil").decode() + "?="


def parse(message: bytes) -> EmailMessage:
    parser = BytesParser(policy=email.policy.default)
    return parser.parsebytes(message)


def built(req: MailRequest | None = None, **overrides: Any) -> bytes:
    req = req or request(**overrides)
    return build(req, render(req))


def with_subject(subject: str, **overrides: Any) -> EmailMessage:
    req = request(**overrides)
    return parse(build(req, RenderedMail(subject=subject, text="t", html="<p>h</p>")))


def parts(message: EmailMessage) -> list[EmailMessage]:
    return [cast(EmailMessage, part) for part in message.iter_parts()]


def text_of(part: EmailMessage) -> str:
    return cast(str, part.get_content()).replace("\r\n", "\n")


# --- structure ----------------------------------------------------------------------


def test_multipart_alternative_with_text_first_then_html() -> None:
    message = parse(built())
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    for part in (text, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "base64"
    mail = render(request())
    assert text_of(text) == mail.text
    assert text_of(html) == mail.html


def test_every_line_ends_with_crlf_and_stays_short() -> None:
    message = built(
        articles=(article(title="長い題名" * 40), article(2)),
        sender=sender(sender_name="とても長い送信者の名称" * 4),
    )
    assert b"\n" not in message.replace(b"\r\n", b"")
    assert b"\r" not in message.replace(b"\r\n", b"")
    assert max(len(line) for line in message.split(b"\r\n")) <= 78
    assert message.endswith(b"--\r\n")


def test_the_same_request_gives_the_same_bytes() -> None:
    assert built() == built()  # a resend after a crash is an identical duplicate
    other = built(message_id="<digest-43@kairan.example.jp>")
    boundary = re.compile(rb'boundary="([^"]+)"')
    assert boundary.findall(built()) != boundary.findall(other)


# --- headers ------------------------------------------------------------------------


def test_every_header_of_a_digest() -> None:
    message = parse(built())
    assert list(message.keys()) == NAMES
    assert message["From"].addresses[0].display_name == "回覧運営事務局"
    assert message["From"].addresses[0].addr_spec == "kairan@example.jp"
    assert message["To"] == "taro@example.com"
    assert message["Subject"] == "【Kairan】2026年12月3日の新着記事（3件）"
    assert message["Date"] == email.utils.format_datetime(DATE)
    assert message["Message-ID"] == "<digest-42@kairan.example.jp>"
    assert message["List-Id"] == "Kairan <kairan.example.jp>"
    assert message["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>, <{MAILTO}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Reply-To"] == "info@example.jp"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "ja"
    assert message["MIME-Version"] == "1.0"


def test_the_to_header_is_the_bare_address() -> None:
    assert b"\r\nTo: taro@example.com\r\n" in built()


def test_confirm_is_not_list_mail() -> None:
    message = parse(built(kind=MailKind.CONFIRM))
    assert list(message.keys()) == CONFIRM_NAMES
    assert message["Subject"] == "【Kairan】配信登録の確認のお願い"


def test_no_reply_to_unless_set_and_the_site_title_without_sender_name() -> None:
    message = parse(built(sender=sender(reply_to=None, sender_name="")))
    assert "Reply-To" not in message
    assert message["From"] == "Kairan <kairan@example.jp>"


def test_english_mail_says_so() -> None:
    message = parse(built(language="en"))
    assert message["Content-Language"] == "en"
    assert message["Subject"] == "[Kairan] Daily digest for 3 Dec 2026: 3 new articles"
    assert b"\r\nSubject: [Kairan] Daily digest for 3 Dec 2026: 3 new articles\r\n" in (
        built(language="en")
    )  # plain ASCII is left readable


def test_a_japanese_list_name_is_encoded() -> None:
    message = parse(built(list_id="回覧 新着 <kairan.example.jp>"))
    assert message["List-Id"] == "回覧 新着 <kairan.example.jp>"


# --- header injection (CVE-2024-6923 and encoded-word tricks) -----------------------


@pytest.mark.parametrize(
    "title",
    [
        "Hello\r\nBcc: x@evil",
        "Hello\nBcc: x@evil",
        "Hello\rBcc: x@evil",
        "Hello\u2028Bcc: x@evil",
        "Hello\u2029\x85\x0b\x0cBcc: x@evil",
        f"Hello {EVIL_WORD}",
        "=?utf-8?q?Hello=0D=0ABcc:_x@evil?=",
        "新着\r\n\r\n<html>Bcc: x@evil",
    ],
)
def test_a_title_cannot_add_a_header(title: str) -> None:
    req = request(kind=MailKind.IMMEDIATE, articles=(article(title=title),))
    raw = built(req)
    message = parse(raw)
    assert list(message.keys()) == NAMES
    assert "Bcc" not in message
    assert message["Subject"] == "【Kairan】" + sanitize_header_text(title)
    assert b"\nBcc" not in raw.split(b"\r\n\r\n", 1)[0]


def test_an_encoded_word_in_a_title_reads_back_literally() -> None:
    message = with_subject(f"News {EVIL_WORD}")
    assert message["Subject"] == f"News {EVIL_WORD}"
    message = with_subject("=?iso-2022-jp?b?GyRCJEskWxsoQg==?=")  # would decode to にほ
    assert message["Subject"] == "=?iso-2022-jp?b?GyRCJEskWxsoQg==?="


@pytest.mark.parametrize(
    "subject", ["x" * 140, "short " + "y" * 80 + " end", "a b " * 37, "日本語" * 50]
)
def test_a_long_subject_folds_within_78_characters(subject: str) -> None:
    req = request()
    raw = build(req, RenderedMail(subject=subject, text="t", html="h"))
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert parse(raw)["Subject"] == sanitize_header_text(subject)


@given(st.text(max_size=200))
def test_any_subject_is_one_header_that_reads_back_sanitised(subject: str) -> None:
    message = with_subject(subject)
    assert list(message.keys()) == NAMES
    assert message["Subject"] == sanitize_header_text(subject)


@given(st.text(max_size=80))
def test_any_sender_name_is_one_header(name: str) -> None:
    req = request(sender=sender(sender_name=name or "x"))
    raw = build(req, RenderedMail(subject="s", text="t", html="h"))
    assert list(parse(raw).keys()) == NAMES
    assert rfc2047_display_name(raw) == sanitize_header_text(name or "x")


def rfc2047_display_name(message: bytes) -> str:
    """From's display name decoded as RFC 2047 §6.2 says: the space between two
    encoded-words is dropped (Python's address parser keeps it, so it is not used)."""
    head = message.split(b"\r\n\r\n", 1)[0].decode("ascii")
    head = head.replace("\r\n ", " ").replace("\r\n", "\n")
    found = re.search(r"^From: (?:(.*) )?<[^<>]*>$", head, re.MULTILINE)
    assert found is not None
    return str(make_header(decode_header(found.group(1) or "")))


@pytest.mark.parametrize(
    "address",
    [
        "taro@example.com\r\nBcc: x@evil",
        "taro@example.com\n",
        "Taro <taro@example.com>",
        '"Taro" taro@example.com',
        "taro@example.com, x@evil",
        "taro@example.com (comment)",
        "taro",
        "太郎@example.com",
    ],
)
def test_a_bad_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        built(recipient=recipient(address=address))
    with pytest.raises(ValueError, match="address"):
        built(sender=sender(from_address=address))
    with pytest.raises(ValueError, match="address"):
        built(sender=sender(reply_to=address))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("message_id", "<a@b>\r\nBcc: x@evil"),
        ("message_id", "no-brackets@example.jp"),
        ("list_id", "Kairan <kairan.example.jp>\r\nBcc: x@evil"),
        ("list_id", "Kairan"),
    ],
)
def test_a_bad_id_is_refused(field: str, value: str) -> None:
    overrides: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match="id"):
        built(request(**overrides))


@pytest.mark.parametrize(
    ("url", "mailto"),
    [
        (UNSUBSCRIBE + "\r\nBcc: x@evil", MAILTO),
        (UNSUBSCRIBE + ">, <https://evil.example/", MAILTO),
        ("ftp://kairan.example.jp/u", MAILTO),
        (UNSUBSCRIBE, "https://not-a-mailto.example/"),
        (UNSUBSCRIBE, MAILTO + " x"),
    ],
)
def test_a_bad_unsubscribe_uri_is_refused(url: str, mailto: str) -> None:
    req = request(recipient=recipient(unsubscribe_url=url, unsubscribe_mailto=mailto))
    with pytest.raises(ValueError, match="unsubscribe"):
        build(req, RenderedMail(subject="s", text="t", html="h"))


def test_a_naive_date_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        built(date=DATE.replace(tzinfo=None))


@pytest.mark.parametrize(
    "head",
    [
        b"From: a@b\r\nBcc: x@evil",  # a header we did not write
        b"From: a@b\nTo: c@d",  # bare LF
        b"From: a@b\rTo: c@d",  # bare CR
        b" continued\r\nFrom: a@b",  # a continuation with nothing before it
        b"From: a@b\r\nFrom: c@d",  # twice
        b"From: \xe3\x81\x82",  # raw UTF-8
        b"From: " + b"a" * 999,  # over RFC 5322's 998
    ],
)
def test_check_headers_refuses_a_block_we_did_not_write(head: bytes) -> None:
    with pytest.raises(ValueError, match=r"header|line"):
        check_headers(head + b"\r\n\r\nbody\r\n", ["From"])


def test_check_headers_accepts_folded_lines() -> None:
    check_headers(b"From: a\r\n b\r\nTo: c\r\n\r\nbody", ["From", "To"])
    with pytest.raises(ValueError, match="blank line"):
        check_headers(b"From: a\r\n", ["From"])


def test_sanitize_header_text() -> None:
    hostile = " a\r\n\tb\u2028c\u2029d\x85e\x00f\u202eg "
    assert sanitize_header_text(hostile) == "a b c d efg"
    assert sanitize_header_text("市役所\u3000お知らせ") == "市役所\u3000お知らせ"
    assert sanitize_header_text("x" * 200) == "x" * 149 + "…"
    assert sanitize_header_text("abc def", limit=5) == "abc…"


# --- bodies -------------------------------------------------------------------------


def test_html_part_holds_no_script_or_javascript_link() -> None:
    hostile = article(
        1,
        title="<script>alert(1)</script>",
        url="javascript:alert(1)",
        thumbnail="javascript:alert(2)",
        summary_html="<script>alert(3)</script><p onclick='x'>本文</p>",
    )
    text, html = parts(parse(built(articles=(hostile, article(2)))))
    assert "<script" not in text_of(html)
    assert "javascript:" not in text_of(html).lower()
    assert "javascript:" not in text_of(text).lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</p>" in text_of(html)


def test_text_part_holds_every_web_link_and_the_unsubscribe_url() -> None:
    articles = tuple(article(number) for number in range(1, 21))
    text, _ = parts(parse(built(articles=articles)))
    for item in articles:
        assert f"{item.url}\n" in text_of(text)
    assert UNSUBSCRIBE in text_of(text)


# --- golden files -------------------------------------------------------------------


def golden_requests() -> dict[str, MailRequest]:
    ja = request(
        articles=(
            article(1),
            article(2, thumbnail=None),
            article(3, member_name="目黒区", prefecture="東京都", url=None),
        )
    )
    en = request(
        language="en",
        kind=MailKind.WEEKLY,
        recipient=recipient("en", timezone="America/New_York"),
        articles=(
            article(1, title="Generative AI for council minutes"),
            article(2, member_name="自治体AI活用マガジン", prefecture=None),
            article(3, summary_html="<p>A longer summary. " * 12 + "</p>"),
        ),
    )
    return {"digest_ja.eml": ja, "digest_en.eml": en}


def normalise(message: bytes) -> bytes:
    """Date, Message-ID and the boundary replaced by fixed words."""
    boundary = re.search(rb'boundary="([^"]+)"', message)
    assert boundary is not None
    message = message.replace(boundary.group(1), b"BOUNDARY")
    message = re.sub(rb"\r\nDate: [^\r]+", b"\r\nDate: DATE", message, count=1)
    return re.sub(rb"\r\nMessage-ID: [^\r]+", b"\r\nMessage-ID: <ID>", message, count=1)


@pytest.mark.parametrize("name", sorted(golden_requests()))
def test_golden_digest(name: str) -> None:
    actual = normalise(built(golden_requests()[name]))
    expected = (GOLDEN / name).read_bytes()
    # the readable parts first, so that a failure shows a useful diff
    got, want = parse(actual), parse(expected)
    assert list(got.items()) == list(want.items())
    assert [text_of(p) for p in parts(got)] == [text_of(p) for p in parts(want)]
    assert actual == expected


def regenerate() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name, req in golden_requests().items():
        (GOLDEN / name).write_bytes(normalise(built(req)))


if __name__ == "__main__" and sys.argv[1:] == ["--regen"]:
    regenerate()
