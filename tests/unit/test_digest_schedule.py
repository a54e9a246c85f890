"""digest_schedule: local-hour digests across timezones and DST, weekday parsing."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.digest_schedule import (
    next_due,
    parse_weekday,
    weekday_name,
    window_start,
)
from aggregator.errors import UsageError
from aggregator.models import Cadence, Schedule

TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
CHATHAM = ZoneInfo("Pacific/Chatham")
ZONES = (TOKYO, NEW_YORK, LONDON, LORD_HOWE, CHATHAM)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def daily(hour: int) -> Schedule:
    return Schedule(Cadence.DAILY, hour=hour)


def weekly(weekday: int, hour: int) -> Schedule:
    return Schedule(Cadence.WEEKLY, hour=hour, weekday=weekday)


# --- immediate and ordinary days ----------------------------------------------------


def test_immediate_is_due_now():
    now = utc(2026, 12, 1, 3, 0)
    assert next_due(Schedule(Cadence.IMMEDIATE), TOKYO, now) == now
    assert window_start(Schedule(Cadence.IMMEDIATE), TOKYO, now) == now


def test_daily_later_today():
    # 07:00 JST: today's 08:00 JST is still ahead
    assert next_due(daily(8), TOKYO, utc(2026, 11, 30, 22, 0)) == utc(2026, 11, 30, 23)


def test_daily_tomorrow_once_the_hour_has_passed():
    # 12:00 JST
    assert next_due(daily(8), TOKYO, utc(2026, 12, 1, 3, 0)) == utc(2026, 12, 1, 23)


def test_daily_is_strictly_after_now():
    due = utc(2026, 11, 30, 23)  # 08:00 JST
    assert next_due(daily(8), TOKYO, due) == due + DAY
    assert next_due(daily(8), TOKYO, due - timedelta(microseconds=1)) == due


def test_midnight_digest():
    # 23:59 JST on 2026-12-01 → 00:00 JST on 2026-12-02
    assert next_due(daily(0), TOKYO, utc(2026, 12, 1, 14, 59)) == utc(2026, 12, 1, 15)


def test_result_is_utc_even_for_a_now_given_in_another_zone():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=TOKYO)
    due = next_due(daily(8), TOKYO, now)
    assert due.tzinfo is UTC
    assert due == utc(2026, 12, 1, 23)
    assert next_due(Schedule(Cadence.IMMEDIATE), TOKYO, now).tzinfo is UTC


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (utc(2026, 11, 29, 12), utc(2026, 11, 29, 23)),  # Sunday → Monday 08:00 JST
        (utc(2026, 11, 29, 22, 59), utc(2026, 11, 29, 23)),  # Monday 07:59 JST
        (utc(2026, 11, 29, 23), utc(2026, 12, 6, 23)),  # Monday 08:00 JST exactly
        (utc(2026, 12, 1, 3), utc(2026, 12, 6, 23)),  # Tuesday
    ],
)
def test_weekly_on_monday_at_eight_in_tokyo(now, expected):
    assert next_due(weekly(0, 8), TOKYO, now) == expected


def test_weekly_weekday_is_the_local_one():
    # Friday 20:00 UTC is already Saturday 05:00 in Tokyo: a Saturday 09:00 digest
    # is due the same UTC day, not a week later
    due = next_due(weekly(5, 9), TOKYO, utc(2026, 12, 4, 20))
    assert due == utc(2026, 12, 5, 0)
    assert due.astimezone(TOKYO).weekday() == 5


# --- DST ------------------------------------------------------------------------


def test_new_york_spring_forward_gap_is_the_instant_the_clocks_jump():
    # 2026-03-08: 02:00 EST → 03:00 EDT; 02:00 does not exist that day
    due = next_due(daily(2), NEW_YORK, utc(2026, 3, 7, 12))
    assert due == utc(2026, 3, 8, 7)
    local = due.astimezone(NEW_YORK)
    assert (local.hour, local.minute, local.utcoffset()) == (3, 0, -4 * HOUR)
    # and the next day is 02:00 EDT again
    assert next_due(daily(2), NEW_YORK, due) == utc(2026, 3, 9, 6)


def test_new_york_spring_forward_day_is_23_hours_long():
    first = next_due(daily(8), NEW_YORK, utc(2026, 3, 7, 12))  # 08:00 EST
    second = next_due(daily(8), NEW_YORK, first)  # 08:00 EDT
    assert (first, second) == (utc(2026, 3, 7, 13), utc(2026, 3, 8, 12))
    assert second - first == 23 * HOUR


def test_new_york_fall_back_ambiguous_hour_is_the_first_occurrence_only():
    # 2026-11-01: 02:00 EDT → 01:00 EST; 01:00 happens at 05:00 and 06:00 UTC
    first = next_due(daily(1), NEW_YORK, utc(2026, 10, 31, 12))
    assert first == utc(2026, 11, 1, 5)
    assert first.astimezone(NEW_YORK).utcoffset() == -4 * HOUR
    # neither at the first occurrence nor during the repeated hour is 06:00 UTC
    # (the second 01:00) offered: the next digest is the next local day's
    for now in (first, utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)):
        assert next_due(daily(1), NEW_YORK, now) == utc(2026, 11, 2, 6)


def test_new_york_fall_back_day_is_25_hours_long():
    first = next_due(daily(8), NEW_YORK, utc(2026, 10, 31, 1))  # Oct 30 21:00 EDT
    second = next_due(daily(8), NEW_YORK, first)
    assert (first, second) == (utc(2026, 10, 31, 12), utc(2026, 11, 1, 13))
    assert second - first == 25 * HOUR


def test_london_spring_forward_gap():
    # 2026-03-29: 01:00 GMT → 02:00 BST
    due = next_due(daily(1), LONDON, utc(2026, 3, 28, 12))
    assert due == utc(2026, 3, 29, 1)
    assert due.astimezone(LONDON).hour == 2
    assert next_due(daily(1), LONDON, due) == utc(2026, 3, 30, 0)


def test_london_fall_back_ambiguous_hour():
    # 2026-10-25: 02:00 BST → 01:00 GMT; 01:00 happens at 00:00 and 01:00 UTC
    due = next_due(daily(1), LONDON, utc(2026, 10, 24, 12))
    assert due == utc(2026, 10, 25, 0)
    assert next_due(daily(1), LONDON, due) == utc(2026, 10, 26, 1)


def test_lord_howe_half_hour_gap():
    # 2026-10-04: 02:00 +10:30 → 02:30 +11
    due = next_due(daily(2), LORD_HOWE, utc(2026, 10, 3, 0))
    local = due.astimezone(LORD_HOWE)
    assert (local.day, local.hour, local.minute) == (4, 2, 30)
    assert due == utc(2026, 10, 3, 15, 30)


def test_chatham_gap_starting_mid_hour_moves_the_wall_time_by_the_gap():
    # 2026-09-27: 02:45 +12:45 → 03:45 +13:45; 03:00 resolved with fold=0 is
    # 14:15 UTC, read back as 04:00 local (documented choice, not 03:45)
    due = next_due(daily(3), CHATHAM, utc(2026, 9, 26, 0))
    assert due == utc(2026, 9, 26, 14, 15)
    local = due.astimezone(CHATHAM)
    assert (local.day, local.hour, local.minute) == (27, 4, 0)


def test_weekly_across_dst_keeps_the_local_hour():
    # Sunday 2026-03-01 and 2026-03-08 in New York, 09:00 local each time
    first = next_due(weekly(6, 9), NEW_YORK, utc(2026, 2, 28, 12))
    second = next_due(weekly(6, 9), NEW_YORK, first)
    assert (first, second) == (utc(2026, 3, 1, 14), utc(2026, 3, 8, 13))


# --- window_start -------------------------------------------------------------------


def test_window_start_is_the_previous_digest_time():
    due = utc(2026, 12, 1, 23)  # Wednesday 08:00 JST
    assert window_start(daily(8), TOKYO, due) == due - DAY
    assert window_start(weekly(2, 8), TOKYO, due) == due - 7 * DAY
    assert window_start(weekly(0, 8), TOKYO, due) == due - 2 * DAY


def test_window_start_of_an_unscheduled_instant():
    # 12:00 JST on a Tuesday: the daily window opened at 08:00 that morning
    assert window_start(daily(8), TOKYO, utc(2026, 12, 1, 3)) == utc(2026, 11, 30, 23)


def test_window_start_across_spring_forward_is_23_hours():
    due = utc(2026, 3, 8, 12)  # 08:00 EDT
    assert window_start(daily(8), NEW_YORK, due) == utc(2026, 3, 7, 13)


# --- bad input --------------------------------------------------------------------


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        next_due(daily(8), TOKYO, datetime(2026, 12, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    "schedule",
    [daily(24), daily(-1), weekly(7, 8), weekly(-1, 8)],
)
def test_impossible_schedule_is_refused(schedule):
    with pytest.raises(ValueError, match="must be"):
        next_due(schedule, TOKYO, utc(2026, 12, 1))


# --- properties across zones -----------------------------------------------------

_ANY_NOW = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
    max_value=datetime(2037, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def _offset_changes(tz: ZoneInfo) -> list[datetime]:
    """Noon UTC of each day in 2025-2027 after which ``tz`` changed its offset."""
    noons = [utc(2025, 1, 1, 12) + n * DAY for n in range(3 * 366)]
    return [
        a
        for a, b in itertools.pairwise(noons)
        if a.astimezone(tz).utcoffset() != b.astimezone(tz).utcoffset()
    ]


_NEAR_DST = st.sampled_from(
    [(tz, change) for tz in ZONES for change in _offset_changes(tz)]
).flatmap(
    lambda pair: st.tuples(
        st.just(pair[0]),
        st.integers(-3 * 24 * 60, 3 * 24 * 60).map(
            lambda minutes: pair[1] + timedelta(minutes=minutes)
        ),
    )
)
# many examples fall within three days of a DST change, where the bugs would be
_ZONE_AND_NOW = st.one_of(st.tuples(st.sampled_from(ZONES), _ANY_NOW), _NEAR_DST)
_SCHEDULE = st.builds(
    Schedule,
    cadence=st.sampled_from([Cadence.DAILY, Cadence.WEEKLY]),
    hour=st.integers(0, 23),
    weekday=st.integers(0, 6),
)


def _period(schedule: Schedule) -> timedelta:
    return DAY if schedule.cadence is Cadence.DAILY else 7 * DAY


def _is_scheduled_wall_time(schedule: Schedule, tz: ZoneInfo, moment: datetime) -> bool:
    """``moment`` shows the digest's local hour:00 (first occurrence), right day."""
    local = moment.astimezone(tz)
    right_day = schedule.cadence is Cadence.DAILY or local.weekday() == schedule.weekday
    return (local.hour, local.minute, local.fold) == (schedule.hour, 0, 0) and right_day


def _wall_time_missing(schedule: Schedule, tz: ZoneInfo, due: datetime) -> bool:
    """The digest's wall time on ``due``'s local date falls in a DST gap, and
    ``due`` is that wall time resolved with fold=0."""
    day = due.astimezone(tz).date()
    wall = datetime(day.year, day.month, day.day, schedule.hour, tzinfo=tz)
    missing = wall.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall.replace(
        tzinfo=None
    )
    return missing and wall.astimezone(UTC) == due


@given(_SCHEDULE, _ZONE_AND_NOW)
def test_next_due_is_after_now_and_within_one_period(schedule, zone_and_now):
    tz, now = zone_and_now
    due = next_due(schedule, tz, now)
    assert due.utcoffset() == timedelta(0)
    assert now < due <= now + _period(schedule) + HOUR


@given(_SCHEDULE, _ZONE_AND_NOW)
def test_next_due_lands_on_the_local_hour_and_weekday(schedule, zone_and_now):
    tz, now = zone_and_now
    due = next_due(schedule, tz, now)
    assert _is_scheduled_wall_time(schedule, tz, due) or _wall_time_missing(
        schedule, tz, due
    )
    if schedule.cadence is Cadence.WEEKLY:
        assert due.astimezone(tz).weekday() == schedule.weekday


@given(_SCHEDULE, _ZONE_AND_NOW)
def test_no_scheduled_wall_time_is_skipped(schedule, zone_and_now):
    """Brute force: every quarter-hour between now and the due time (all offsets
    in these zones are whole quarter-hours) is not a digest time."""
    tz, now = zone_and_now
    due = next_due(schedule, tz, now)
    first = now.replace(minute=now.minute // 15 * 15, second=0, microsecond=0)
    quarters = int((due - first) / timedelta(minutes=15))
    for n in range(1, quarters):  # bounded: at most 8 days of quarter-hours
        moment = first + n * timedelta(minutes=15)
        assert not (
            now < moment < due and _is_scheduled_wall_time(schedule, tz, moment)
        )


@given(_SCHEDULE, _ZONE_AND_NOW)
def test_consecutive_digests_fall_on_distinct_local_days(schedule, zone_and_now):
    tz, now = zone_and_now
    dues = [next_due(schedule, tz, now)]
    for _ in range(3):
        dues.append(next_due(schedule, tz, dues[-1]))
    days = [d.astimezone(tz).date() for d in dues]
    assert days == sorted(set(days))


@given(_SCHEDULE, _ZONE_AND_NOW)
def test_window_start_is_the_digest_before(schedule, zone_and_now):
    tz, now = zone_and_now
    due = next_due(schedule, tz, now)
    start = window_start(schedule, tz, due)
    assert start <= now < due
    assert next_due(schedule, tz, start) == due
    assert due - start <= _period(schedule) + HOUR


# --- weekdays ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("6", 6),
        ("６", 6),  # full-width digit
        ("mon", 0),
        ("Tue", 1),
        ("WEDNESDAY", 2),
        (" thursday ", 3),
        ("fri", 4),
        ("saturday", 5),
        ("sun", 6),
        ("月", 0),
        ("火曜", 1),
        ("水曜日", 2),
        ("木", 3),
        ("金曜日", 4),
        ("土", 5),
        ("日曜日", 6),
    ],
)
def test_parse_weekday(text, expected):
    assert parse_weekday(text) == expected


@pytest.mark.parametrize(
    "text", ["7", "-1", "", "funday", "tues", "月日", "曜日", "1.0"]
)
def test_parse_weekday_refuses_anything_else(text):
    with pytest.raises(UsageError) as caught:
        parse_weekday(text)
    message = str(caught.value)
    assert message.startswith("unknown weekday ")
    assert repr(text) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("n", "language", "expected"),
    [
        (0, "ja", "月曜日"),
        (6, "ja", "日曜日"),
        (0, "en", "Monday"),
        (3, "en", "Thursday"),
    ],
)
def test_weekday_name(n, language, expected):
    assert weekday_name(n, language) == expected


@pytest.mark.parametrize("n", range(7))
def test_weekday_names_parse_back(n):
    assert parse_weekday(weekday_name(n, "ja")) == n
    assert parse_weekday(weekday_name(n, "en")) == n


def test_weekday_name_refuses_bad_input():
    with pytest.raises(ValueError, match="0-6"):
        weekday_name(7, "ja")
    with pytest.raises(ValueError, match="'fr'"):
        weekday_name(0, "fr")
