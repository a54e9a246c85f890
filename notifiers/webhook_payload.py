"""Pure: the versioned webhook wire type (schemas/webhook-event.v1.json) and its bytes.

The body follows the Standard Webhooks payload structure, ``{"type", "timestamp",
"data"}`` (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/
standard-webhooks.md, "Payload structure"). It is a wire type of its own, not the
internal article row, so the store can change without breaking receivers.

The bytes are deterministic: fixed key order, compact separators, UTF-8 rather than
``\\u`` escapes. A retry must send a byte-identical body (issue 5 §2), and receivers
verify the signature over exactly these bytes. Every string is cleaned with
`strip_controls`, as in notifiers/jsonfeed.py: a lone surrogate cannot be written
as UTF-8 at all, and C0/C1 controls only trouble receivers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from typing import Any

from aggregator.fields import strip_controls
from aggregator.timefmt import to_db

EVENT_ARTICLE_CREATED = "article.created"
EVENT_PING = "ping"
PING_MESSAGE = "Kairan webhook test"
SCHEMA_FILE = "webhook-event.v1.json"


@dataclass(frozen=True, slots=True)
class WebhookMember:
    id: str
    name: str
    prefecture: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WebhookArticle:
    id: str  # the article's published id (the same as its Atom / JSON Feed id)
    url: str | None
    title: str
    summary: str  # plain text
    published: datetime | None  # aware
    updated: datetime | None  # aware
    author: str | None
    thumbnail: str | None
    member: WebhookMember


def article_body(article: WebhookArticle, timestamp: datetime) -> bytes:
    """The ``article.created`` body; ``timestamp`` is when the event happened (the
    article was found), fixed at enqueue time so that every retry repeats it."""
    member = article.member
    data: dict[str, object] = {
        "id": strip_controls(article.id),
        "url": _optional(article.url),
        "title": strip_controls(article.title),
        "summary": strip_controls(article.summary),
        "published": _time(article.published),
        "updated": _time(article.updated),
        "author": _optional(article.author),
        "thumbnail": _optional(article.thumbnail),
        "member": {
            "id": strip_controls(member.id),
            "name": strip_controls(member.name),
            "prefecture": _optional(member.prefecture),
            "tags": [strip_controls(tag) for tag in member.tags],
        },
    }
    return _envelope(EVENT_ARTICLE_CREATED, timestamp, data)


def ping_body(timestamp: datetime) -> bytes:
    """The ``ping`` body of ``kairan subscribers test``. Standard Webhooks requires a
    ``data`` object, so it carries a message."""
    return _envelope(EVENT_PING, timestamp, {"message": PING_MESSAGE})


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of these bodies, shipped in the package."""
    text = files("notifiers").joinpath("schemas", SCHEMA_FILE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _envelope(event: str, timestamp: datetime, data: dict[str, object]) -> bytes:
    document = {"type": event, "timestamp": _time(timestamp), "data": data}
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _time(value: datetime | None) -> str | None:
    """RFC 3339 §5.6 in UTC with "Z", to the second, as the store keeps times;
    a naive datetime is refused (ValueError)."""
    return to_db(value)


def _optional(value: str | None) -> str | None:
    return None if value is None else strip_controls(value)
