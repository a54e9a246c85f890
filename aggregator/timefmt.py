"""UTC timestamps as stored: ISO 8601 with a Z, to the second (sorts as text)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import overload


@overload
def to_db(value: datetime) -> str: ...
@overload
def to_db(value: datetime | None) -> str | None: ...
def to_db(value: datetime | None) -> str | None:
    return None if value is None else _stamp(value)


@lru_cache(maxsize=4096)  # one ingest formats the same `now` for every row
def _stamp(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime cannot be stored")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_db(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value).astimezone(UTC)


def from_db_required(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)
