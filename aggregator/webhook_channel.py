"""The webhook channel: a claimed delivery → its fixed JSON body → a signed POST."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from aggregator import compose, sanitize
from aggregator.clock import Clock
from aggregator.deliver import Outgoing
from aggregator.models import Member, StoredEntry
from aggregator.settings import Settings
from notifiers import webhook_payload
from notifiers.errors import PermanentDeliveryError
from notifiers.webhook import WebhookResponse


class Poster(Protocol):
    async def post(
        self,
        url: str,
        message_id: str,
        body: bytes,
        secrets: Sequence[str],
        sent_at: datetime,
    ) -> WebhookResponse: ...


def webhook_article(
    entry: StoredEntry, members: Mapping[str, Member]
) -> webhook_payload.WebhookArticle:
    """The wire view of a stored article: never the internal row."""
    if entry.atom_id is None:
        raise PermanentDeliveryError(f"article {entry.id} has no published id")
    member = members.get(entry.member_id)
    return webhook_payload.WebhookArticle(
        id=entry.atom_id,
        url=entry.link,
        title=entry.title,
        summary=sanitize.to_text(entry.summary_html),
        published=entry.published,
        updated=entry.updated,
        author=entry.author,
        thumbnail=entry.thumbnail,
        member=webhook_payload.WebhookMember(
            id=entry.member_id,
            name=member.name if member else entry.member_id,
            prefecture=member.prefecture if member else None,
            tags=member.tags if member else (),
        ),
    )


@dataclass
class WebhookChannel:
    """One POST per delivery, at most `webhooks.per_endpoint` at once per URL.

    ``wall`` stamps each attempt's webhook-timestamp: receivers compare it with
    their own clock (Standard Webhooks allows a few minutes), so it is the real
    time of the attempt, not the article's or the batch's.
    """

    settings: Settings
    poster: Poster
    wall: Clock
    name: str = "webhook"
    members: dict[str, Member] = field(init=False, repr=False)
    _gates: dict[int, asyncio.Semaphore] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.members = compose.members_by_id(self.settings)

    @property
    def concurrency(self) -> int:
        return self.settings.webhooks.concurrency

    @property
    def retry_schedule(self) -> tuple[int, ...]:
        # The setting lists the wait before every attempt, the first included.
        return self.settings.webhooks.retry_schedule[1:]

    def payload(self, outgoing: Outgoing) -> bytes:
        """The body, built once at the first claim; its timestamp is the event's."""
        if not outgoing.entries:
            raise PermanentDeliveryError("the article is no longer stored")
        article = webhook_article(outgoing.entries[0], self.members)
        return webhook_payload.article_body(article, outgoing.claim.created_at)

    def _gate(self, subscriber_id: int) -> asyncio.Semaphore:
        """The endpoint's own limit, made at its first send (not once per send)."""
        gate = self._gates.get(subscriber_id)
        if gate is None:
            gate = asyncio.Semaphore(self.settings.webhooks.per_endpoint)
            self._gates[subscriber_id] = gate
        return gate

    async def send(self, outgoing: Outgoing) -> None:
        claim = outgoing.claim
        body = claim.payload if claim.payload is not None else self.payload(outgoing)
        if not outgoing.secrets:
            raise PermanentDeliveryError("the endpoint has no signing secret")
        async with self._gate(claim.subscriber.id):
            await self.poster.post(
                claim.subscriber.address,
                claim.message_id,
                body,
                outgoing.secrets,
                self.wall.now(),
            )
