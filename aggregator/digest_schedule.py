"""Pure: the next due time for immediate/daily/weekly at a local hour in a timezone.

A digest is due at ``schedule.hour``:00 local time in the subscriber's timezone
(every day, or on ``schedule.weekday``). Local days are walked as calendar dates
and each date's wall time is converted to UTC once, so DST is handled by zoneinfo
and never by adding 24 hours to an instant:

- a wall time inside a spring-forward gap is resolved with ``fold=0`` (PEP 495:
  the offset in force before the gap) and then read back in UTC. For every gap
  that starts on the hour (New York, London, Lord Howe's 30-minute one) that is
  the instant the clocks jump, e.g. 02:00 on 2026-03-08 in New York is
  07:00 UTC = 03:00 EDT; where a gap starts mid-hour (Chatham's 02:45 → 03:45),
  03:00 becomes 04:00 local, the missing wall time moved by the gap's length;
- an ambiguous wall time (fall-back) is its first occurrence (``fold=0``), and
  since each local date yields one instant, the second occurrence is never a
  due time: a digest is sent at most once per local day.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from aggregator.errors import UsageError
from aggregator.models import Cadence, Schedule

_DAY = timedelta(days=1)
_WEEK = timedelta(days=7)

_EN_NAMES = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)
_JA_NAMES = ("月", "火", "水", "木", "金", "土", "日")

# Every accepted spelling, after NFKC + casefold: "0"-"6", "mon", "monday", "月",
# "月曜", "月曜日".
_WEEKDAYS: dict[str, int] = {
    spelling: n
    for n, (en, ja) in enumerate(zip(_EN_NAMES, _JA_NAMES, strict=True))
    for spelling in (str(n), en[:3].lower(), en.lower(), ja, f"{ja}曜", f"{ja}曜日")
}


def next_due(schedule: Schedule, tz: ZoneInfo, now: datetime) -> datetime:
    """When mail enqueued at ``now`` is due, in UTC.

    Immediate: ``now``. Daily/weekly: the first instant strictly after ``now``
    whose local wall time is ``schedule.hour``:00 (on ``schedule.weekday`` for
    weekly), with gaps and folds resolved as the module docstring says.
    """
    now = _utc(now)
    if schedule.cadence is Cadence.IMMEDIATE:
        return now
    step = _step(schedule)
    day = _aligned(now.astimezone(tz).date(), schedule, forward=True)
    due = _at_local_hour(day, schedule.hour, tz)
    while due <= now:  # at most twice: the next date's hour lies after `now`
        day += step
        due = _at_local_hour(day, schedule.hour, tz)
    return due


def window_start(schedule: Schedule, tz: ZoneInfo, due: datetime) -> datetime:
    """The digest time before ``due``, in UTC: a digest holds "articles since" it.

    The latest scheduled instant strictly before ``due``; for a due time that
    `next_due` produced, ``next_due(schedule, tz, window_start(...)) == due``.
    Immediate mail has no window: the result is ``due`` itself.
    """
    due = _utc(due)
    if schedule.cadence is Cadence.IMMEDIATE:
        return due
    step = _step(schedule)
    day = _aligned(due.astimezone(tz).date(), schedule, forward=False)
    start = _at_local_hour(day, schedule.hour, tz)
    while start >= due:  # at most twice, as in next_due
        day -= step
        start = _at_local_hour(day, schedule.hour, tz)
    return start


def parse_weekday(text: str) -> int:
    """0 (Monday) … 6 (Sunday) from "0"-"6", "mon"/"monday" or "月"/"月曜"/"月曜日"."""
    key = unicodedata.normalize("NFKC", text).strip().casefold()
    try:
        return _WEEKDAYS[key]
    except KeyError:
        raise UsageError(
            f"unknown weekday {text!r}: use 0-6 (0 = monday), mon-sun or 月-日"
        ) from None


def weekday_name(n: int, language: str) -> str:
    """The day's name for a subscriber's mail: "Monday" (en) or "月曜日" (ja)."""
    if not 0 <= n <= 6:
        raise ValueError(f"weekday must be 0-6, got {n}")
    if language == "en":
        return _EN_NAMES[n]
    if language == "ja":
        return f"{_JA_NAMES[n]}曜日"
    raise ValueError(f"no weekday names for language {language!r}")


def _utc(moment: datetime) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got {moment!r}")
    return moment.astimezone(UTC)


def _step(schedule: Schedule) -> timedelta:
    if not 0 <= schedule.hour <= 23:
        raise ValueError(f"schedule hour must be 0-23, got {schedule.hour}")
    if schedule.cadence is Cadence.DAILY:
        return _DAY
    if not 0 <= schedule.weekday <= 6:
        raise ValueError(f"schedule weekday must be 0-6, got {schedule.weekday}")
    return _WEEK


def _aligned(day: date, schedule: Schedule, *, forward: bool) -> date:
    """The nearest date on or after (or before) ``day`` when a digest may fall."""
    if schedule.cadence is Cadence.DAILY:
        return day
    if forward:
        return day + timedelta(days=(schedule.weekday - day.weekday()) % 7)
    return day - timedelta(days=(day.weekday() - schedule.weekday) % 7)


def _at_local_hour(day: date, hour: int, tz: ZoneInfo) -> datetime:
    # fold=0 is datetime's default: first occurrence of an ambiguous time, and
    # the pre-transition offset for a time in a gap (see the module docstring)
    return datetime(day.year, day.month, day.day, hour, tzinfo=tz).astimezone(UTC)
