"""Builders for follower tests: subscribers with sensible defaults, e-mail settings."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import sqlite_utils

from aggregator import outbox_view, subscribers
from aggregator.db import unit_of_work
from aggregator.models import (
    Cadence,
    ConsentSource,
    Filters,
    Schedule,
    Subscriber,
    SubscriberKind,
)
from aggregator.settings import EmailSettings, Settings

KEY = b"k" * 32  # a fixed site key: tokens are reproducible in tests
EVERYTHING = Filters()


def with_email(base: Settings, port: int, **overrides: Any) -> Settings:
    """`base` sending through a local SMTP server on `port`."""
    email = EmailSettings(
        host="127.0.0.1",
        port=port,
        from_address="kairan@example.jp",
        sender_name="回覧テスト事務局",
        postal_address="東京都千代田区1-1",
        timeout=5.0,
        **overrides,
    )
    return dataclasses.replace(base, email=email)


def add_subscriber(
    db: sqlite_utils.Database,
    address: str,
    now: datetime,
    *,
    cadence: Cadence = Cadence.IMMEDIATE,
    hour: int = 8,
    weekday: int = 0,
    filters: Filters = EVERYTHING,
    timezone: str = "Asia/Tokyo",
    language: str = "ja",
    confirmed: bool = True,
    key: bytes = KEY,
) -> Subscriber:
    new = subscribers.NewSubscriber(
        kind=SubscriberKind.EMAIL,
        address=address,
        schedule=Schedule(cadence, hour, weekday),
        filters=filters,
        timezone=timezone,
        language=language,
        confirmed=confirmed,
        consent_source=ConsentSource.CLI,
        consent_origin="cli:test",
    )
    with unit_of_work(db):
        return subscribers.add(db, new, key, now)


def states(db: sqlite_utils.Database) -> list[tuple[str, int | None, str]]:
    """Every delivery as (address, entry id, state), in id order."""
    return [
        (row.address, row.entry_id, row.state)
        for row in reversed(outbox_view.list_deliveries(db))
    ]
