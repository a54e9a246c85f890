"""Pure: the operator's daily health report as plain text and as a text/plain mail.

Item texts come from the database (member ids, feed URLs, error messages quoted
from remote servers), so each is made one line with `sanitize_header_text` before
it reaches the body or a header; the header block is written and checked the way
`email_message.py` writes subscribers' mail (see its docstring for why not the
email package's folder).
"""

from __future__ import annotations

import base64
import email.utils
import enum
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from notifiers.email_message import (
    _MESSAGE_ID,
    _PLAIN_PHRASE,
    _PLAIN_TEXT,
    _address,
    _fold,
    _token,
    _words,
    check_headers,
    sanitize_header_text,
)

TEXT_LIMIT = 400  # characters of one item field; error texts can be long


class AttentionKind(enum.StrEnum):
    """What needs attention, most severe first (the report's order)."""

    DELIVERIES_FAILING = "deliveries_failing"  # followers miss articles now
    MEMBER_GONE = "member_gone"  # 410: the member is not polled any more
    MEMBER_FAILING = "member_failing"
    WEBHOOK_DISABLED = "webhook_disabled"
    SUBSCRIBER_BOUNCING = "subscriber_bouncing"
    MEMBER_MOVED = "member_moved"  # works already; config.toml should follow

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @property
    def severity(self) -> int:
        """0 is the most severe."""
        return list(AttentionKind).index(self)


@dataclass(frozen=True, slots=True)
class AttentionItem:
    kind: AttentionKind
    subject: str  # a member, a subscriber (id and address) or a channel
    detail: str  # one line: what is wrong
    advice: str  # one line: what to do, naming the kairan command
    since: datetime | None  # UTC: when it started, as far as is known


@dataclass(frozen=True, slots=True)
class OperatorReport:
    site_title: str
    generated_at: datetime  # timezone-aware
    timezone: ZoneInfo  # the site's: every time in the report is shown in it
    items: tuple[AttentionItem, ...]


def local(when: datetime, tz: ZoneInfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def clean(text: str) -> str:
    """One line of item text: no control characters, breaks or bidi overrides."""
    return sanitize_header_text(text, TEXT_LIMIT)


def headline(count: int) -> str:
    things = "thing needs" if count == 1 else "things need"
    return f"{count} {things} attention"


def item_line(item: AttentionItem, tz: ZoneInfo) -> str:
    """One item on one line, its advice included (for `kairan status`)."""
    since = f" (since {local(item.since, tz)})" if item.since else ""
    return (
        f"{item.kind.label} {clean(item.subject)}: {clean(item.detail)}{since}"
        f" → {clean(item.advice)}"
    )


def report_text(report: OperatorReport) -> str:
    """The report's body: a heading, then one numbered block per item."""
    tz = report.timezone
    lines = [
        f"{clean(report.site_title)} health report, "
        f"{local(report.generated_at, tz)} ({tz.key})",
        f"{headline(len(report.items))}.",
    ]
    for number, item in enumerate(report.items, 1):
        lines += ["", f"{number}. {item.kind.label}: {clean(item.subject)}"]
        lines.append(f"   {clean(item.detail)}")
        if item.since:
            lines.append(f"   since {local(item.since, tz)}")
        lines.append(f"   what to do: {clean(item.advice)}")
    lines += [
        "",
        "-- ",
        "Sent by Kairan once a day while something needs attention,",
        "because [operator] email is set in config.toml.",
    ]
    return "\n".join(lines) + "\n"


def report_message(
    report: OperatorReport, sender: str, recipient: str, message_id: str
) -> bytes:
    """The exact bytes to hand to SMTP: CRLF line ends, headers checked.

    Raises ValueError for a report with no item (send nothing then), a naive
    date, or an address or Message-ID that is not a plain header token.
    """
    if not report.items:
        raise ValueError("nothing needs attention: there is no report to send")
    if report.generated_at.tzinfo is None:
        raise ValueError("report date must be timezone-aware")
    title = sanitize_header_text(report.site_title)
    subject = sanitize_header_text(f"[{title}] {headline(len(report.items))}")
    name = _words("From", title, _PLAIN_PHRASE)
    headers = [
        ("From", _fold("From", [*name, f"<{_address(sender)}>"])),
        ("To", _address(recipient)),
        ("Subject", _fold("Subject", _words("Subject", subject, _PLAIN_TEXT))),
        (
            "Date",
            email.utils.format_datetime(
                report.generated_at.astimezone(report.timezone)
            ),
        ),
        ("Message-ID", _token(message_id, _MESSAGE_ID, "message id")),
        ("Auto-Submitted", "auto-generated"),  # RFC 3834 §5: no auto-replies to us
        ("X-Auto-Response-Suppress", "All"),  # the same for Exchange (MS-OXCMAIL)
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        # base64 (RFC 2045 §6.8): the same choice and reasons as email_message.py
        ("Content-Transfer-Encoding", "base64"),
    ]
    head = "".join(f"{key}: {value}\r\n" for key, value in headers)
    text = report_text(report).replace("\n", "\r\n").encode("utf-8")
    # encodebytes: lines of 76 characters (RFC 2045 §6.8), made CRLF for SMTP
    body = base64.encodebytes(text).replace(b"\n", b"\r\n")
    message = head.encode("ascii") + b"\r\n" + body
    check_headers(message, [key for key, _ in headers])
    return message
