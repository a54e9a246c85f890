"""Web sign-up: the /subscribe form → a valid Signup, and the unit of work recording it.

Double opt-in (SPEC "Followers and channels"): whoever signs up through the web
is `pending` until they follow the link in the confirmation mail, and the
consent (when, "web", the client address) is recorded with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlite_utils
from starlette.datastructures import FormData

from aggregator import addresses, optin, outbox, subscribers
from aggregator.errors import UsageError
from aggregator.models import (
    Cadence,
    ConsentSource,
    Filters,
    Schedule,
    Subscriber,
    SubscriberKind,
    SubscriberState,
)
from aggregator.settings import Settings
from notifiers import render

# a pending address gets a new confirmation mail at most this often
REISSUE_INTERVAL = timedelta(minutes=10)
LANGUAGES = tuple(render.MESSAGES)  # the languages a subscriber's mail can be in
CADENCES = tuple(str(c) for c in Cadence)


@dataclass(frozen=True, slots=True)
class Signup:
    """A valid /subscribe form, as the person asked for it."""

    address: str  # normalised
    schedule: Schedule
    filters: Filters
    language: str


@dataclass(frozen=True, slots=True)
class SignupForm:
    """What the form said, to show it again when something must be corrected."""

    email: str
    schedule: str
    members: tuple[str, ...]
    language: str


def field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def parse_signup(
    form: FormData, settings: Settings
) -> tuple[Signup | None, SignupForm, dict[str, tuple[str, str]]]:
    """The sign-up, what was entered, and the problems (field → text key, detail)."""
    entered = SignupForm(
        email=field(form, "email").strip(),
        schedule=field(form, "schedule") or str(Cadence.IMMEDIATE),
        members=tuple(
            dict.fromkeys(
                v for v in form.getlist("members") if isinstance(v, str) and v
            )
        ),
        language=field(form, "language") or settings.site.language,
    )
    errors: dict[str, tuple[str, str]] = {}
    address = ""
    try:
        address = addresses.normalize_email(entered.email)
    except UsageError as e:
        errors["email"] = ("invalid_email", str(e))
    if entered.schedule not in CADENCES:
        errors["schedule"] = ("invalid_schedule", "")
    if any(settings.member(m) is None for m in entered.members):
        errors["members"] = ("unknown_member", "")
    if entered.language not in LANGUAGES:
        errors["language"] = ("invalid_language", "")
    if errors:
        return None, entered, errors
    signup = Signup(
        address=address,
        schedule=Schedule(Cadence(entered.schedule)),
        filters=Filters(members=entered.members),
        language=entered.language,
    )
    return signup, entered, errors


@dataclass(frozen=True, slots=True)
class Confirmations:
    """What issuing a double opt-in mail needs."""

    key: bytes
    now: datetime
    ttl: timedelta

    def send(self, db: sqlite_utils.Database, subscriber_id: int) -> None:
        optin.issue_confirmation(db, subscriber_id, self.key, self.now, self.ttl)
        outbox.enqueue_confirmation(db, subscriber_id, self.now)

    def sent_recently(self, db: sqlite_utils.Database, subscriber_id: int) -> bool:
        live = optin.confirmation_link_token(db, subscriber_id, self.key)
        # the link is issued `ttl` before it expires
        return live is not None and live[1] - self.ttl > self.now - REISSUE_INTERVAL


def sign_up(
    db: sqlite_utils.Database,
    signup: Signup,
    confirmations: Confirmations,
    *,
    timezone: str,
    origin: str,
) -> tuple[str, int]:
    """Record a web sign-up (call inside a unit of work); (outcome, subscriber id).

    New address: a pending subscriber and a confirmation mail; a forgotten one
    too, its suppression lasting until the link is followed. Pending: a new
    mail (and the new choices), at most once per REISSUE_INTERVAL. Unsubscribed:
    pending again under a new consent and unsubscribe link, with a new mail.
    Active, paused, bouncing or disabled: nothing.
    The caller answers the same whatever the outcome, so the form cannot be
    used to learn who subscribes.
    """
    found = subscribers.find_by_address(db, SubscriberKind.EMAIL, signup.address)
    if found is None:
        return "created", _create(db, signup, confirmations, timezone, origin)
    if found.state is SubscriberState.PENDING:
        if confirmations.sent_recently(db, found.id):
            return "throttled", found.id
        _restart(db, found, signup, confirmations)
        return "reissued", found.id
    if found.state is SubscriberState.UNSUBSCRIBED:
        subscribers.resubscribe(
            db,
            found.id,
            confirmations.key,
            confirmations.now,
            ConsentSource.WEB,
            origin,
        )
        _restart(db, found, signup, confirmations)
        return "resubscribed", found.id
    return "unchanged", found.id


def _create(
    db: sqlite_utils.Database,
    signup: Signup,
    confirmations: Confirmations,
    timezone: str,
    origin: str,
) -> int:
    new = subscribers.NewSubscriber(
        kind=SubscriberKind.EMAIL,
        address=signup.address,
        schedule=signup.schedule,
        filters=signup.filters,
        timezone=timezone,
        language=signup.language,
        confirmed=False,
        consent_source=ConsentSource.WEB,
        consent_origin=origin,
    )
    created = subscribers.add(db, new, confirmations.key, confirmations.now)
    confirmations.send(db, created.id)
    return created.id


def _restart(
    db: sqlite_utils.Database,
    found: Subscriber,
    signup: Signup,
    confirmations: Confirmations,
) -> None:
    changes = subscribers.Changes(
        schedule=signup.schedule, filters=signup.filters, language=signup.language
    )
    subscribers.update(db, found.id, changes)
    confirmations.send(db, found.id)
