"""Subscriber settings as an operator types them (options, CSV cells), validated.

`subscribers add`, `update` and `import` share these: each value is checked
here, and a bad one is a UsageError naming the option (``--timezone``) or the
CSV column (``timezone``) it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from aggregator.digest_schedule import parse_weekday, weekday_name
from aggregator.errors import UsageError
from aggregator.models import Cadence, Filters, Schedule, Subscriber, SubscriberState
from aggregator.settings import Settings
from notifiers.render import MESSAGES

T = TypeVar("T")
Label = Callable[[str], str]  # a setting's name as the operator typed it

LANGUAGES = tuple(MESSAGES)  # the languages mail can be rendered in
# Between the values of a list column (members, tags, keywords) in CSV files.
SEPARATOR = ";"

ScheduleOption = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        metavar="immediate|daily|weekly",
        help="One mail per poll cycle with new articles, or a daily or weekly "
        "digest (when adding: immediate).",
        show_default=False,
    ),
]
HourOption = Annotated[
    str | None,  # parsed by hour_of, so that a bad value is a one-line error
    typer.Option(
        "--hour", metavar="H", help="Local hour of a digest, 0-23 (when adding: 8)."
    ),
]
WeekdayOption = Annotated[
    str | None,
    typer.Option(
        "--weekday",
        metavar="D",
        help="Day of a weekly digest: mon-sun, 0-6 (0 = Monday) or 月-日 "
        "(when adding: mon).",
    ),
]
MemberOption = Annotated[
    list[str] | None,
    typer.Option(
        "--member", metavar="ID", help="Only this member's articles (repeatable)."
    ),
]
TagOption = Annotated[
    list[str] | None,
    typer.Option(
        "--tag",
        metavar="T",
        help="Only articles with this tag, member tag or prefecture (repeatable).",
    ),
]
KeywordOption = Annotated[
    list[str] | None,
    typer.Option(
        "--keyword",
        metavar="K",
        help="Only articles with this word in the title or summary (repeatable).",
    ),
]
TimezoneOption = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        metavar="TZ",
        help="IANA time zone of the digest hour (when adding: the site's).",
    ),
]
LanguageOption = Annotated[
    str | None,
    typer.Option(
        "--language",
        metavar="ja|en",
        help="Language of the mail (when adding: the site's).",
    ),
]

# --- settings as typed, validated -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Given:
    """Subscriber settings as typed (options or CSV cells); None: not given."""

    schedule: str | None = None
    hour: str | None = None
    weekday: str | None = None
    members: Sequence[str] | None = None
    tags: Sequence[str] | None = None
    keywords: Sequence[str] | None = None
    timezone: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Choice:
    """Everything a subscriber chooses, validated."""

    schedule: Schedule
    filters: Filters
    timezone: str
    language: str

    @classmethod
    def defaults(cls, settings: Settings) -> Choice:
        return cls(
            Schedule(), Filters(), settings.site.timezone, settings.site.language
        )

    @classmethod
    def of(cls, subscriber: Subscriber) -> Choice:
        return cls(
            subscriber.schedule,
            subscriber.filters,
            subscriber.timezone,
            subscriber.language,
        )


def option_name(setting: str) -> str:
    """The option that sets a setting: members → --member (list options are
    singular)."""
    return "--" + setting.removesuffix("s") if setting.endswith("s") else "--" + setting


def resolve(given: Given, base: Choice, settings: Settings, label: Label) -> Choice:
    """`base` with what was given applied; UsageError names the first bad value."""
    schedule = Schedule(
        pick(given.schedule, cadence_of, label, base.schedule.cadence),
        pick(given.hour, hour_of, label, base.schedule.hour),
        pick(given.weekday, weekday_of, label, base.schedule.weekday),
    )
    members = base.filters.members
    if given.members is not None:
        members = members_of(given.members, settings, label)
    filters = Filters(
        members=members,
        tags=pick(given.tags, words_of("tags"), label, base.filters.tags),
        keywords=pick(
            given.keywords, words_of("keywords"), label, base.filters.keywords
        ),
    )
    return Choice(
        schedule,
        filters,
        pick(given.timezone, zone_of, label, base.timezone),
        pick(given.language, language_of, label, base.language),
    )


def pick(value: Any, parse: Callable[[Any, Label], T], label: Label, default: T) -> T:
    return default if value is None else parse(value, label)


def cadence_of(text: str, label: Label) -> Cadence:
    try:
        return Cadence(text.strip().lower())
    except ValueError:
        raise UsageError(
            f"{label('schedule')}: must be immediate, daily or weekly, got {text!r}"
        ) from None


def hour_of(value: str, label: Label) -> int:
    try:
        hour = int(value)
    except ValueError:
        hour = -1
    if not 0 <= hour <= 23:
        raise UsageError(f"{label('hour')}: must be an hour 0-23, got {value!r}")
    return hour


def weekday_of(text: str, label: Label) -> int:
    try:
        return parse_weekday(text)
    except UsageError as e:
        raise UsageError(f"{label('weekday')}: {e}") from None


def weekday_code(n: int) -> str:
    """The weekday as shown, exported and typed back: mon … sun."""
    return weekday_name(n, "en")[:3].lower()


def zone_of(name: str, label: Label) -> str:
    name = name.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f'{label("timezone")}: unknown time zone "{name}" '
            '(use an IANA name such as "Asia/Tokyo")'
        ) from None
    return name


def language_of(text: str, label: Label) -> str:
    language = text.strip().lower()
    if language not in LANGUAGES:
        raise UsageError(
            f"{label('language')}: must be {' or '.join(LANGUAGES)}, got {text!r}"
        )
    return language


def members_of(ids: Sequence[str], settings: Settings, label: Label) -> tuple[str, ...]:
    found = words_of("members")(ids, label)
    unknown = next((m for m in found if settings.member(m) is None), None)
    if unknown is not None:
        raise UsageError(f'{label("members")}: no member with id "{unknown}"')
    return found


def words_of(setting: str) -> Callable[[Sequence[str], Label], tuple[str, ...]]:
    """Trimmed, non-blank, unique values, in the order given.

    The CSV list separator is refused inside a value, so that every subscriber
    can be exported and imported back unchanged.
    """

    def parse(values: Sequence[str], label: Label) -> tuple[str, ...]:
        words = tuple(dict.fromkeys(w.strip() for w in values if w.strip()))
        bad = next((w for w in words if SEPARATOR in w), None)
        if bad is not None:
            raise UsageError(f"{label(setting)}: {bad!r} contains {SEPARATOR!r}")
        return words

    return parse


def state_of(text: str, label: Label = option_name) -> SubscriberState:
    try:
        return SubscriberState(text.strip().lower())
    except ValueError:
        names = ", ".join(SubscriberState)
        raise UsageError(
            f"{label('state')}: must be one of {names}, got {text!r}"
        ) from None


# --- shown back ---------------------------------------------------------------------


def schedule_text(schedule: Schedule) -> str:
    """immediate, daily 08:00 or weekly mon 08:00 (in the subscriber's zone)."""
    at = f"{schedule.hour:02d}:00"
    if schedule.cadence is Cadence.DAILY:
        return f"daily {at}"
    if schedule.cadence is Cadence.WEEKLY:
        return f"weekly {weekday_code(schedule.weekday)} {at}"
    return "immediate"
