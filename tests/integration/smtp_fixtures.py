"""Helpers for tests that use the sandbox SMTP sink: TLS contexts, settings, mail."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from email import policy
from email.message import EmailMessage
from typing import Any

import trustme

from aggregator.sandbox.smtp_sink import SmtpSink
from aggregator.settings import EmailSettings

SENDER = "kairan@example.jp"


@dataclass(frozen=True)
class TlsContexts:
    """A throw-away CA's certificate for 127.0.0.1, and a client that trusts it."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def make_tls_contexts() -> TlsContexts:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return TlsContexts(server=server, client=client)


def email_settings(sink: SmtpSink, **changes: Any) -> EmailSettings:
    """Settings pointing at ``sink``, with short timeouts so failures show quickly."""
    base = EmailSettings(
        host=sink.host,
        port=sink.port,
        from_address=SENDER,
        timeout=2.0,
        concurrency=2,
    )
    return replace(base, **changes)


def message_bytes(
    to: str = "follower@example.jp",
    subject: str = "新着記事",
    body: str = "横須賀市の新しい記事です。\n.で始まる行\n",
) -> bytes:
    """A small UTF-8 message with CRLF line ends, as email_message.py will build."""
    message = EmailMessage()
    message["From"] = f"Kairan <{SENDER}>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body, cte="8bit")
    return message.as_bytes(policy=policy.SMTP)
