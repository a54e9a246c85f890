"""notifiers.operator_report: the text layout, the mail's headers, injection."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from zoneinfo import ZoneInfo

import pytest

from notifiers.email_message import check_headers
from notifiers.operator_report import (
    AttentionItem,
    AttentionKind,
    OperatorReport,
    item_line,
    report_message,
    report_text,
)

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = datetime(2025, 3, 4, 23, 30, tzinfo=UTC)  # 08:30 on the 5th in Tokyo
SENDER = "kairan@example.jp"
OPERATOR = "operator@example.jp"
MESSAGE_ID = "<report.20250305@example.jp>"
NAMES = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
]

FAILING = AttentionItem(
    kind=AttentionKind.MEMBER_FAILING,
    subject="yokosuka (横須賀市)",
    detail="https://yokosuka.example.jp/feed: 4 failed polls in a row, "
    "last error: HTTP 500",
    advice="check the feed URL in a browser; `kairan poll yokosuka` retries now",
    since=datetime(2025, 3, 3, 1, 0, tzinfo=UTC),
)
DISABLED = AttentionItem(
    kind=AttentionKind.WEBHOOK_DISABLED,
    subject="7 (https://hooks.example.jp/kairan)",
    detail="endpoint disabled: 410 Gone",
    advice="`kairan subscribers resume 7` once it works",
    since=None,
)


def report(*items: AttentionItem, title: str = "回覧板") -> OperatorReport:
    return OperatorReport(
        site_title=title, generated_at=NOW, timezone=TOKYO, items=items
    )


def parse(message: bytes) -> EmailMessage:
    parsed = BytesParser(policy=email.policy.default).parsebytes(message)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_text_layout_is_stable() -> None:
    assert report_text(report(FAILING, DISABLED)) == (
        "回覧板 health report, 2025-03-05 08:30 (Asia/Tokyo)\n"
        "2 things need attention.\n"
        "\n"
        "1. member failing: yokosuka (横須賀市)\n"
        "   https://yokosuka.example.jp/feed: 4 failed polls in a row, "
        "last error: HTTP 500\n"
        "   since 2025-03-03 10:00\n"
        "   what to do: check the feed URL in a browser; `kairan poll yokosuka` "
        "retries now\n"
        "\n"
        "2. webhook disabled: 7 (https://hooks.example.jp/kairan)\n"
        "   endpoint disabled: 410 Gone\n"
        "   what to do: `kairan subscribers resume 7` once it works\n"
        "\n"
        "-- \n"
        "Sent by Kairan once a day while something needs attention,\n"
        "because [operator] email is set in config.toml.\n"
    )


def test_item_line_is_one_line_with_its_advice() -> None:
    assert item_line(FAILING, TOKYO) == (
        "member failing yokosuka (横須賀市): https://yokosuka.example.jp/feed: "
        "4 failed polls in a row, last error: HTTP 500 (since 2025-03-03 10:00) "
        "→ check the feed URL in a browser; `kairan poll yokosuka` retries now"
    )


def test_kinds_order_by_severity() -> None:
    assert [k.severity for k in AttentionKind] == list(range(len(AttentionKind)))
    assert AttentionKind.DELIVERIES_FAILING.severity == 0
    assert AttentionKind.MEMBER_MOVED.label == "member moved"


def test_message_headers_and_body() -> None:
    message = report_message(report(FAILING, DISABLED), SENDER, OPERATOR, MESSAGE_ID)
    check_headers(message, NAMES)  # exactly these, in this order
    parsed = parse(message)
    assert parsed["Subject"] == "[回覧板] 2 things need attention"
    assert parsed["From"].addresses[0].addr_spec == SENDER
    assert parsed["From"].addresses[0].display_name == "回覧板"
    assert parsed["To"] == OPERATOR
    assert parsed["Message-ID"] == MESSAGE_ID
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Date"].datetime == NOW
    assert parsed["Date"].datetime.utcoffset() == TOKYO.utcoffset(NOW)
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed["Content-Transfer-Encoding"] == "base64"
    body = parsed.get_content()
    assert body.replace("\r\n", "\n") == report_text(report(FAILING, DISABLED))


def test_one_item_is_singular() -> None:
    parsed = parse(report_message(report(DISABLED), SENDER, OPERATOR, MESSAGE_ID))
    assert parsed["Subject"] == "[回覧板] 1 thing needs attention"


def test_ascii_subject_stays_plain() -> None:
    message = report_message(
        report(DISABLED, title="Kairan"), SENDER, OPERATOR, MESSAGE_ID
    )
    assert b"\r\nSubject: [Kairan] 1 thing needs attention\r\n" in message


def test_injected_line_breaks_become_spaces() -> None:
    evil = AttentionItem(
        kind=AttentionKind.MEMBER_GONE,
        subject="evil\r\nBcc: victim@example.com",
        detail="HTTP 410\nX-Injected: yes\u2028\u202eeulav",
        advice="`kairan members remove evil`\x00\x1b[31m",
        since=None,
    )
    title = "回覧\r\nBcc: victim@example.com"
    message = report_message(report(evil, title=title), SENDER, OPERATOR, MESSAGE_ID)
    check_headers(message, NAMES)  # no smuggled Bcc or X-Injected header
    parsed = parse(message)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "[回覧 Bcc: victim@example.com] 1 thing needs attention"
    lines = parsed.get_content().splitlines()
    assert "1. member gone: evil Bcc: victim@example.com" in lines
    assert "   HTTP 410 X-Injected: yes eulav" in lines
    assert "   what to do: `kairan members remove evil`[31m" in lines
    assert not any(line.startswith(("Bcc:", "X-Injected:")) for line in lines)


@pytest.mark.parametrize(
    ("sender", "recipient", "message_id"),
    [
        ("kairan@example.jp\r\nBcc: x@evil.example", OPERATOR, MESSAGE_ID),
        (SENDER, "operator@example.jp, other@evil.example", MESSAGE_ID),
        (SENDER, OPERATOR, "<id@example.jp>\r\nBcc: x@evil.example"),
    ],
)
def test_bad_header_tokens_are_refused(
    sender: str, recipient: str, message_id: str
) -> None:
    with pytest.raises(ValueError, match="plain header token"):
        report_message(report(DISABLED), sender, recipient, message_id)


def test_no_item_means_no_message() -> None:
    with pytest.raises(ValueError, match="nothing needs attention"):
        report_message(report(), SENDER, OPERATOR, MESSAGE_ID)


def test_naive_date_is_refused() -> None:
    naive = OperatorReport("Kairan", datetime(2025, 3, 5, 8, 30), TOKYO, (DISABLED,))  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        report_message(naive, SENDER, OPERATOR, MESSAGE_ID)
