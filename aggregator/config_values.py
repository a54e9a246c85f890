"""Value checks for config.toml: each takes a TOML value and where it sits.

A check returns the value Settings wants (seconds, bytes, a Secret…) or raises the
one ConfigError that names the file, the key and the problem. `config.py` maps keys
to checks in its option tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aggregator.errors import ConfigError
from aggregator.settings import Secret

MINUTE, HOUR, DAY, WEEK = 60, 3600, 86400, 7 * 86400
KIB, MIB = 1024, 1024 * 1024
MAX_TIMEOUT = 300.0  # seconds: a longer wait only hides a dead server

# --- where a value sits, for messages ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Where:
    """The file and dotted key a value came from, plus the environment for secrets."""

    path: Path
    key: str
    environ: Mapping[str, str]

    def at(self, name: str | int) -> Where:
        if isinstance(name, int):
            key = f"{self.key}[{name}]"
        else:
            key = f"{self.key}.{name}" if self.key else name
        return Where(self.path, key, self.environ)

    def error(self, problem: str) -> ConfigError:
        return ConfigError(str(self.path), self.key, problem)


Check = Callable[[object, Where], Any]

_TOML_TYPES: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),  # before int: bool is a subclass of int
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
    (datetime, "a datetime"),  # before date: datetime is a subclass of date
    (date, "a date"),
    (time, "a time"),
)


def _kind(value: object) -> str:
    return next((name for t, name in _TOML_TYPES if isinstance(value, t)), "a value")


def wrong_type(expected: str, value: object, where: Where) -> ConfigError:
    return where.error(f"must be {expected}, got {_kind(value)}")


def human_seconds(seconds: float) -> str:
    for unit, name in ((DAY, "d"), (HOUR, "h"), (MINUTE, "min")):
        if seconds >= unit and seconds % unit == 0:
            return f"{int(seconds // unit)} {name}"
    return f"{seconds:g} s"


def _human_bytes(size: int) -> str:
    for unit, name in ((MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


def _as_written(value: object, unit: str) -> str:
    """Echo a number with its implied unit, a string as the operator wrote it."""
    return f"{value} {unit}" if isinstance(value, int | float) else str(value)


# --- scalar checks ------------------------------------------------------------------


def boolean(value: object, where: Where) -> bool:
    if not isinstance(value, bool):
        raise wrong_type("a boolean (true or false)", value, where)
    return value


def string(value: object, where: Where) -> str:
    if not isinstance(value, str):
        raise wrong_type("a string", value, where)
    return value


def text(value: object, where: Where) -> str:
    text = string(value, where)
    if not text.strip():
        raise where.error("must not be empty")
    return text


def optional(check: Check) -> Check:
    """An optional string: empty means unset (None), anything else is checked."""

    def optional(value: object, where: Where) -> Any:
        return check(value, where) if string(value, where) else None

    return optional


def integer(low: int, high: int) -> Check:
    def check(value: object, where: Where) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type("an integer", value, where)
        if not low <= value <= high:
            raise where.error(f"must be between {low} and {high}, got {value}")
        return value

    return check


def number(low: float, high: float) -> Check:
    def check(value: object, where: Where) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong_type("a number", value, where)
        if not low <= value <= high:
            raise where.error(f"must be between {low:g} and {high:g}, got {value:g}")
        return float(value)

    return check


def choice(*allowed: str) -> Check:
    def check(value: object, where: Where) -> str:
        text = string(value, where)
        if text not in allowed:
            names = ", ".join(f'"{a}"' for a in allowed)
            raise where.error(f'must be one of {names}, got "{text}"')
        return text

    return check


_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def slug(value: object, where: Where) -> str:
    text = string(value, where)
    if not _SLUG.fullmatch(text):
        raise where.error(
            "must be a slug of lower-case letters, digits and hyphens, starting with"
            f' a letter or digit, at most 63 characters, got "{text}"'
        )
    return text


def timezone(value: object, where: Where) -> str:
    name = text(value, where)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise where.error(
            f'unknown time zone "{name}" (use an IANA name such as "Asia/Tokyo")'
        ) from None
    return name


# --- addresses ----------------------------------------------------------------------


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a port that is not a number
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not re.search(r"\s", text)
    )


_ADDRESS = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\".]+")


def _is_address(text: str) -> bool:
    return bool(_ADDRESS.fullmatch(text))


def http_url(value: object, where: Where) -> str:
    text = string(value, where)
    if not _is_http_url(text):
        raise where.error(f'must be an absolute http(s) url, got "{text}"')
    return text


def base_url(value: object, where: Where) -> str:
    """The portal's root: links and feed ids are built by appending to it."""
    text = http_url(value, where)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise where.error(f'must not have a query or fragment, got "{text}"')
    return text if text.endswith("/") else text + "/"


def address(value: object, where: Where) -> str:
    text = string(value, where)
    if not _is_address(text):
        raise where.error(f'must be an e-mail address, got "{text}"')
    return text


def contact(value: object, where: Where) -> str:
    """Empty, a URL (http, https, mailto) or an e-mail address."""
    text = string(value, where)
    mail = text.removeprefix("mailto:")
    if text and not (_is_http_url(text) or _is_address(mail)):
        raise where.error(f'must be a url or an e-mail address, got "{text}"')
    return text


_CONTACT_URL = re.compile(r"https?://[^\s;()<>]+")
_CONTACT_ADDRESS = re.compile(r"[^@\s<>\"();:]+@[^@\s<>\"();]+\.[^@\s<>\"();.]+")


def user_agent(value: object, where: Where) -> str:
    # SPEC [poll]: the User-Agent must carry a contact, so a feed's owner can reach us
    text = string(value, where)
    if text and not text.isprintable():
        raise where.error("must be one line of printable text")
    urls = (m[0] for m in _CONTACT_URL.finditer(text))
    if text and not (any(map(_is_http_url, urls)) or _CONTACT_ADDRESS.search(text)):
        raise where.error(f'must contain a contact url or e-mail address, got "{text}"')
    return text


# --- secrets ------------------------------------------------------------------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def secret(value: object, where: Where) -> Secret | None:
    """A literal, or `env:NAME` read from the environment; messages never show it."""
    if not isinstance(value, str):
        raise wrong_type("a string", value, where)
    if not value.startswith("env:"):
        return Secret(value) if value else None
    name = value.removeprefix("env:")
    if not _ENV_NAME.fullmatch(name):
        raise where.error('must be "env:NAME" with NAME an environment variable name')
    found = where.environ.get(name)
    if not found:
        raise where.error(f"environment variable {name} is not set")
    return Secret(found)


# --- durations and sizes ------------------------------------------------------------

_DURATION_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds", "秒"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes", "分"), MINUTE),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours", "時間"), HOUR),
    **dict.fromkeys(("d", "day", "days", "日"), DAY),
    **dict.fromkeys(("w", "week", "weeks", "週"), WEEK),
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([^\d\s.]*)\s*")


def _duration_seconds(text: str) -> float | None:
    """'1h30m', '30 min', '90' → seconds; None when the text is not a duration."""
    parts = list(_DURATION_PART.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        return None
    if len(parts) > 1 and not all(p.group(2) for p in parts):
        return None  # "1h 30" is ambiguous
    units = [_DURATION_UNITS.get(p.group(2).lower() or "s") for p in parts]
    if None in units:
        return None
    return sum(float(p.group(1)) * (u or 0) for p, u in zip(parts, units, strict=True))


def parse_duration(value: object, key: str, path: Path) -> int:
    """A duration in whole seconds: an integer is seconds; strings such as "30m",
    "30 min", "1h", "90s", "1d", "1h30m" (and 分/時間/秒/日) carry their unit."""
    where = Where(path, key, {})
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise where.error(f"must not be negative, got {value}")
        return value
    seconds = _duration_seconds(value) if isinstance(value, str) else None
    if seconds is None:
        shown = f'"{value}"' if isinstance(value, str) else _kind(value)
        raise where.error(f'must be a duration such as "30m" or "1h30m", got {shown}')
    return round(seconds)


def _within(
    seconds: float, low: float, high: float, value: object, where: Where
) -> None:
    if seconds < low:
        got = _as_written(value, "s")
        raise where.error(f"must be at least {human_seconds(low)}, got {got}")
    if seconds > high:
        got = _as_written(value, "s")
        raise where.error(f"must be at most {human_seconds(high)}, got {got}")


def duration(low: int, high: int) -> Check:
    def check(value: object, where: Where) -> int:
        seconds = parse_duration(value, where.key, where.path)
        _within(seconds, low, high, value, where)
        return seconds

    return check


def timeout(value: object, where: Where) -> float:
    """A timeout in seconds: a number (fractions allowed) or a duration string."""
    if isinstance(value, float):
        seconds = value
    else:
        seconds = float(parse_duration(value, where.key, where.path))
    if seconds <= 0:
        raise where.error(f"must be more than 0 s, got {_as_written(value, 's')}")
    _within(seconds, 0, MAX_TIMEOUT, value, where)
    return seconds


def durations(value: object, where: Where) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise wrong_type("an array of durations", value, where)
    if not value:
        raise where.error("must not be empty")
    check = duration(0, WEEK)
    return tuple(check(item, where.at(i)) for i, item in enumerate(value))


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_SIZE_UNITS |= {"kib": KIB, "mib": MIB, "gib": 1024 * MIB}


def size(low: int, high: int) -> Check:
    """Bytes: an integer, or "5MB" (SI, 10^6) / "512KiB" (binary, 2^10) style."""

    def check(value: object, where: Where) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            size = value
        elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
            size = round(float(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()])
        else:
            shown = f'"{value}"' if isinstance(value, str) else _kind(value)
            raise where.error(f'must be a size such as "5MB" or "512KiB", got {shown}')
        if not low <= size <= high:
            span = f"{_human_bytes(low)} and {_human_bytes(high)}"
            raise where.error(f"must be between {span}, got {_as_written(value, 'B')}")
        return size

    return check


def tags(value: object, where: Where) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise wrong_type("an array of strings", value, where)
    tags = [text(tag, where.at(i)) for i, tag in enumerate(value)]
    return tuple(dict.fromkeys(tags))  # a repeated tag means nothing more
