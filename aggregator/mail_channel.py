"""The e-mail channel: a claimed batch → MailRequest → rendered MIME bytes → SMTP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from aggregator import compose, subscribers
from aggregator.deliver import Outgoing
from aggregator.models import Member, StoredEntry, Subscriber
from aggregator.settings import Settings
from notifiers import email_message, render
from notifiers.errors import PermanentDeliveryError
from notifiers.mail import MailKind, MailRequest


class Mailer(Protocol):
    async def send(
        self, envelope_from: str, recipient: str, message: bytes
    ) -> None: ...


def envelope_for(
    key: bytes,
    subscriber: Subscriber,
    kind: str,
    message_id: str,
    date: datetime,
    confirm: tuple[str, datetime] | None = None,
) -> compose.Envelope:
    return compose.Envelope(
        kind=MailKind(kind),
        message_id=message_id,
        date=date,
        unsubscribe_token=subscribers.unsubscribe_url_token(key, subscriber),
        confirm_token=confirm[0] if confirm else None,
        confirm_expires=confirm[1] if confirm else None,
    )


def request_for(
    settings: Settings,
    key: bytes,
    subscriber: Subscriber,
    envelope_kind: str,
    message_id: str,
    date: datetime,
    entries: Sequence[StoredEntry],
    members: Mapping[str, Member],
    confirm: tuple[str, datetime] | None = None,
) -> MailRequest:
    envelope = envelope_for(key, subscriber, envelope_kind, message_id, date, confirm)
    return compose.mail_request(settings, subscriber, envelope, entries, members)


def message_bytes(request: MailRequest) -> bytes:
    return email_message.build(request, render.render(request))


@dataclass
class EmailChannel:
    settings: Settings
    key: bytes
    mailer: Mailer
    name: str = "email"
    members: dict[str, Member] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.members = compose.members_by_id(self.settings)

    @property
    def concurrency(self) -> int:
        return self.settings.email.concurrency

    @property
    def retry_schedule(self) -> tuple[int, ...]:
        return self.settings.email.retry_schedule

    def payload(self, outgoing: Outgoing) -> None:
        """None: a mail is rendered again for each attempt, the same bytes for
        the same articles (its Message-ID and Date are fixed with its batch)."""
        return None

    async def send(self, outgoing: Outgoing) -> None:
        claim = outgoing.claim
        if claim.kind == "confirm" and outgoing.confirm is None:
            raise PermanentDeliveryError("the confirmation was already used")
        request = request_for(
            self.settings,
            self.key,
            claim.subscriber,
            claim.kind,
            claim.message_id,
            claim.created_at,
            outgoing.entries,
            self.members,
            outgoing.confirm,
        )
        await self.mailer.send(
            self.settings.email.from_address,
            claim.subscriber.address,
            message_bytes(request),
        )
