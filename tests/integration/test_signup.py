"""Signing up again, on a real database: a forgotten address, an unsubscribed one.

The web flow itself (form → pending → confirm) is in test_server.py; these pin
the rules in subscribers.add and subscribers.resubscribe that it stands on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlite_utils

from aggregator import optin, subscribers, tokens
from aggregator.db import open_database, unit_of_work
from aggregator.errors import UsageError
from aggregator.models import (
    ConsentSource,
    Filters,
    Schedule,
    SubscriberKind,
    SubscriberState,
)
from tests.support.clock import FixedClock
from tests.support.followers import KEY, add_subscriber

TARO = "taro@example.jp"
TTL = timedelta(days=7)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    database = open_database(tmp_path / "kairan.db")
    try:
        yield database
    finally:
        database.close()


def new(source: ConsentSource, *, confirmed: bool) -> subscribers.NewSubscriber:
    return subscribers.NewSubscriber(
        kind=SubscriberKind.EMAIL,
        address=TARO,
        schedule=Schedule(),
        filters=Filters(),
        timezone="Asia/Tokyo",
        language="ja",
        confirmed=confirmed,
        consent_source=source,
        consent_origin=f"{source}:test",
    )


def forgotten(db: sqlite_utils.Database, clock: FixedClock) -> None:
    taro = add_subscriber(db, TARO, clock.now())
    with unit_of_work(db):
        subscribers.forget(db, taro.id, clock.now())


def test_only_a_web_sign_up_may_add_a_forgotten_address(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    forgotten(db, clock)
    refused = [
        new(ConsentSource.CLI, confirmed=False),
        new(ConsentSource.CLI, confirmed=True),
        new(ConsentSource.IMPORT, confirmed=False),
        new(ConsentSource.WEB, confirmed=True),  # no one confirmed it yet
    ]
    for attempt in refused:
        with pytest.raises(UsageError, match="asked to be forgotten"), unit_of_work(db):
            subscribers.add(db, attempt, KEY, clock.now())

    with unit_of_work(db):
        added = subscribers.add(
            db, new(ConsentSource.WEB, confirmed=False), KEY, clock.now()
        )

    assert added.state is SubscriberState.PENDING
    assert subscribers.list_subscribers(db) == [added]
    assert subscribers.is_suppressed(db, TARO) is not None  # until it is confirmed


def test_resubscribe_takes_only_an_unsubscribed_subscriber(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    active = add_subscriber(db, "active@example.jp", clock.now())
    pending = add_subscriber(db, "pending@example.jp", clock.now(), confirmed=False)

    for someone in (active, pending):
        with pytest.raises(UsageError, match="not unsubscribed"), unit_of_work(db):
            subscribers.resubscribe(
                db, someone.id, KEY, clock.now(), ConsentSource.CLI, "cli:ops"
            )
        assert subscribers.get(db, someone.id) == someone


def test_resubscribe_starts_a_new_consent_and_voids_the_old_links(
    db: sqlite_utils.Database, clock: FixedClock
) -> None:
    # pending with a live confirmation link, then unsubscribed before using it
    taro = add_subscriber(db, TARO, clock.now(), confirmed=False)
    with unit_of_work(db):
        optin.issue_confirmation(db, taro.id, KEY, clock.now(), TTL)
        subscribers.unsubscribe(db, taro.id, clock.now(), "test")
    live = optin.confirmation_link_token(db, taro.id, KEY)
    assert live is not None
    old_unsubscribe = subscribers.unsubscribe_url_token(KEY, taro)
    clock.advance(3600)

    with unit_of_work(db):
        again = subscribers.resubscribe(
            db, taro.id, KEY, clock.now(), ConsentSource.CLI, "cli:ops"
        )

    assert again.state is SubscriberState.PENDING
    assert again.state_reason == "subscribed again"
    assert (again.consent_at, again.consent_source, again.consent_origin) == (
        clock.now(),
        ConsentSource.CLI,
        "cli:ops",
    )
    assert (again.confirmed_at, again.notify_since) == (None, None)
    assert again.token_generation == taro.token_generation + 1
    assert subscribers.by_unsubscribe_token(db, old_unsubscribe) is None
    new_unsubscribe = subscribers.unsubscribe_url_token(KEY, again)
    assert subscribers.by_unsubscribe_token(db, new_unsubscribe) == again
    assert tokens.looks_like_token(new_unsubscribe)
    # the link mailed before unsubscribing cannot confirm the new consent
    with unit_of_work(db):
        outcome = optin.confirm(db, live[0], clock.now())
    assert outcome.outcome == "expired"
    assert subscribers.get(db, taro.id).state is SubscriberState.PENDING
