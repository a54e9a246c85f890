"""config.toml → Settings: strict validation of every key; `env:NAME` secrets → Secret.

Every key is described once, in the option tables below (a typed option table with
validators, after miniflux's internal/config/options.go): its check, and the Settings
field it fills. A key not in a table is refused, as is a value of the wrong type or out
of range. Each refusal is one ConfigError naming the file, the key (`poll.interval`,
`members[2].id`) and the problem. A secret's value never appears in a message.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aggregator.errors import ConfigError
from aggregator.models import Member
from aggregator.settings import (
    MIN_INTERVAL,
    EmailSettings,
    LogSettings,
    PollSettings,
    Secret,
    ServerSettings,
    Settings,
    SiteSettings,
    WebhookSettings,
)

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


def _wrong_type(expected: str, value: object, where: Where) -> ConfigError:
    return where.error(f"must be {expected}, got {_kind(value)}")


def _human_seconds(seconds: float) -> str:
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


def _boolean(value: object, where: Where) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type("a boolean (true or false)", value, where)
    return value


def _string(value: object, where: Where) -> str:
    if not isinstance(value, str):
        raise _wrong_type("a string", value, where)
    return value


def _text(value: object, where: Where) -> str:
    text = _string(value, where)
    if not text.strip():
        raise where.error("must not be empty")
    return text


def _optional(check: Check) -> Check:
    """An optional string: empty means unset (None), anything else is checked."""

    def optional(value: object, where: Where) -> Any:
        return check(value, where) if _string(value, where) else None

    return optional


def _integer(low: int, high: int) -> Check:
    def check(value: object, where: Where) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong_type("an integer", value, where)
        if not low <= value <= high:
            raise where.error(f"must be between {low} and {high}, got {value}")
        return value

    return check


def _number(low: float, high: float) -> Check:
    def check(value: object, where: Where) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong_type("a number", value, where)
        if not low <= value <= high:
            raise where.error(f"must be between {low:g} and {high:g}, got {value:g}")
        return float(value)

    return check


def _choice(*allowed: str) -> Check:
    def check(value: object, where: Where) -> str:
        text = _string(value, where)
        if text not in allowed:
            names = ", ".join(f'"{a}"' for a in allowed)
            raise where.error(f'must be one of {names}, got "{text}"')
        return text

    return check


_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


def _slug(value: object, where: Where) -> str:
    text = _string(value, where)
    if not _SLUG.fullmatch(text):
        raise where.error(
            "must be a slug of lower-case letters, digits and hyphens, starting with"
            f' a letter or digit, at most 63 characters, got "{text}"'
        )
    return text


def _timezone(value: object, where: Where) -> str:
    name = _text(value, where)
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


def _http_url(value: object, where: Where) -> str:
    text = _string(value, where)
    if not _is_http_url(text):
        raise where.error(f'must be an absolute http(s) url, got "{text}"')
    return text


def _base_url(value: object, where: Where) -> str:
    """The portal's root: links and feed ids are built by appending to it."""
    text = _http_url(value, where)
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise where.error(f'must not have a query or fragment, got "{text}"')
    return text if text.endswith("/") else text + "/"


def _address(value: object, where: Where) -> str:
    text = _string(value, where)
    if not _is_address(text):
        raise where.error(f'must be an e-mail address, got "{text}"')
    return text


def _contact(value: object, where: Where) -> str:
    """Empty, a URL (http, https, mailto) or an e-mail address."""
    text = _string(value, where)
    mail = text.removeprefix("mailto:")
    if text and not (_is_http_url(text) or _is_address(mail)):
        raise where.error(f'must be a url or an e-mail address, got "{text}"')
    return text


_CONTACT_URL = re.compile(r"https?://[^\s;()<>]+")
_CONTACT_ADDRESS = re.compile(r"[^@\s<>\"();:]+@[^@\s<>\"();]+\.[^@\s<>\"();.]+")


def _user_agent(value: object, where: Where) -> str:
    # SPEC [poll]: the User-Agent must carry a contact, so a feed's owner can reach us
    text = _string(value, where)
    if text and not text.isprintable():
        raise where.error("must be one line of printable text")
    urls = (m[0] for m in _CONTACT_URL.finditer(text))
    if text and not (any(map(_is_http_url, urls)) or _CONTACT_ADDRESS.search(text)):
        raise where.error(f'must contain a contact url or e-mail address, got "{text}"')
    return text


# --- secrets ------------------------------------------------------------------------

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _secret(value: object, where: Where) -> Secret | None:
    """A literal, or `env:NAME` read from the environment; messages never show it."""
    if not isinstance(value, str):
        raise _wrong_type("a string", value, where)
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
        raise where.error(f"must be at least {_human_seconds(low)}, got {got}")
    if seconds > high:
        got = _as_written(value, "s")
        raise where.error(f"must be at most {_human_seconds(high)}, got {got}")


def _duration(low: int, high: int) -> Check:
    def check(value: object, where: Where) -> int:
        seconds = parse_duration(value, where.key, where.path)
        _within(seconds, low, high, value, where)
        return seconds

    return check


def _timeout(value: object, where: Where) -> float:
    """A timeout in seconds: a number (fractions allowed) or a duration string."""
    if isinstance(value, float):
        seconds = value
    else:
        seconds = float(parse_duration(value, where.key, where.path))
    if seconds <= 0:
        raise where.error(f"must be more than 0 s, got {_as_written(value, 's')}")
    _within(seconds, 0, MAX_TIMEOUT, value, where)
    return seconds


def _durations(value: object, where: Where) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise _wrong_type("an array of durations", value, where)
    if not value:
        raise where.error("must not be empty")
    check = _duration(0, WEEK)
    return tuple(check(item, where.at(i)) for i, item in enumerate(value))


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_SIZE_UNITS |= {"kib": KIB, "mib": MIB, "gib": 1024 * MIB}


def _size(low: int, high: int) -> Check:
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


def _tags(value: object, where: Where) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _wrong_type("an array of strings", value, where)
    tags = [_text(tag, where.at(i)) for i, tag in enumerate(value)]
    return tuple(dict.fromkeys(tags))  # a repeated tag means nothing more


# --- the option tables --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    check: Check
    field: str | None = None  # the Settings field, when its name differs from the key


_SITE = {
    "title": Option(_text),
    "base_url": Option(_base_url),
    "language": Option(_choice("ja", "en")),
    "timezone": Option(_timezone),
    "contact": Option(_contact),
}
_POLL = {
    "interval": Option(_duration(MIN_INTERVAL, WEEK)),
    "jitter": Option(_number(0, 0.5)),
    "concurrency": Option(_integer(1, 500)),
    "per_host": Option(_integer(1, 50)),
    "connect_timeout": Option(_timeout),
    "timeout": Option(_timeout),
    "max_bytes": Option(_size(KIB, 200 * MIB)),
    "max_backoff": Option(_duration(MIN_INTERVAL, WEEK)),
    "max_redirects": Option(_integer(0, 10)),
    "user_agent": Option(_user_agent),
    "notify_backlog": Option(_boolean),
}
_EMAIL = {
    "host": Option(_text),
    "port": Option(_integer(1, 65535)),
    "security": Option(_choice("none", "starttls", "tls")),
    "username": Option(_optional(_string)),
    "password": Option(_secret),
    "from": Option(_address, "from_address"),
    "reply_to": Option(_optional(_address)),
    "concurrency": Option(_integer(1, 100)),
    "timeout": Option(_timeout),
    "sender_name": Option(_string),
    "postal_address": Option(_string),
}
_WEBHOOKS = {
    "timeout": Option(_timeout),
    "retry_schedule": Option(_durations),
    "allow_private_addresses": Option(_boolean),
}
_SERVER = {"host": Option(_text), "port": Option(_integer(1, 65535))}
_LOG = {
    "level": Option(_choice("debug", "info", "warning", "error")),
    "format": Option(_choice("kv", "json")),
}
_STORAGE = {"data_dir": Option(_text)}
_MEMBER = {
    "id": Option(_slug),
    "name": Option(_text),
    "feed": Option(_http_url),
    "site": Option(_optional(_http_url)),
    "prefecture": Option(_optional(_string)),
    "tags": Option(_tags),
    "paused": Option(_boolean),
}
_MEMBER_REQUIRED = ("id", "name", "feed")

_SECTIONS: dict[str, tuple[dict[str, Option], Callable[..., Any]]] = {
    "site": (_SITE, SiteSettings),
    "poll": (_POLL, PollSettings),
    "email": (_EMAIL, EmailSettings),
    "webhooks": (_WEBHOOKS, WebhookSettings),
    "server": (_SERVER, ServerSettings),
    "log": (_LOG, LogSettings),
}


def _table(
    value: object, where: Where, options: Mapping[str, Option]
) -> dict[str, Any]:
    """Check one table against its options → {field: value}; unknown keys refused."""
    if not isinstance(value, dict):
        raise _wrong_type("a table", value, where)
    fields: dict[str, Any] = {}
    for key, item in value.items():
        option = options.get(key)
        if option is None:
            raise where.at(key).error("unknown key")
        fields[option.field or key] = option.check(item, where.at(key))
    return fields


# --- sections that need more than their table ---------------------------------------


def _poll(value: object, where: Where) -> PollSettings:
    poll = PollSettings(**_table(value, where, _POLL))
    if poll.max_backoff < poll.interval:
        raise where.at("max_backoff").error(
            f"must be at least poll.interval ({_human_seconds(poll.interval)}),"
            f" got {_human_seconds(poll.max_backoff)}"
        )
    return poll


def _data_dir(value: object, where: Where) -> Path:
    """`[storage] data_dir`, relative to the config file's directory."""
    fields = _table(value, where, _STORAGE)
    return _resolve_data_dir(where.path, fields.get("data_dir", "data"))


def _resolve_data_dir(config_path: Path, data_dir: str) -> Path:
    base = Path(os.path.abspath(config_path)).parent
    return Path(os.path.normpath(base / Path(data_dir).expanduser()))


def feed_key(url: str) -> str:
    """Two spellings of one feed URL (scheme or host case) are one feed."""
    parts = urlsplit(url)
    return parts._replace(
        scheme=parts.scheme.lower(), netloc=parts.netloc.lower()
    ).geturl()


def _member(value: object, where: Where) -> Member:
    fields = _table(value, where, _MEMBER)
    for key in _MEMBER_REQUIRED:
        if key not in fields:
            raise where.at(key).error("required key is missing")
    return Member(**fields)


def _members(value: object, where: Where) -> tuple[Member, ...]:
    if not isinstance(value, list):
        raise _wrong_type("an array of tables ([[members]])", value, where)
    members = tuple(_member(item, where.at(i)) for i, item in enumerate(value))
    ids: dict[str, int] = {}
    feeds: dict[str, int] = {}
    for i, member in enumerate(members):
        if (first := ids.setdefault(member.id, i)) != i:
            raise (
                where.at(i)
                .at("id")
                .error(f'duplicate member id "{member.id}" (also members[{first}])')
            )
        if (first := feeds.setdefault(feed_key(member.feed), i)) != i:
            raise (
                where.at(i)
                .at("feed")
                .error(f'duplicate feed "{member.feed}" (also members[{first}])')
            )
    return members


# --- entry points -------------------------------------------------------------------


def find_config_path(cli_path: str | Path | None) -> Path:
    """--config, else $KAIRAN_CONFIG, else ./config.toml (SPEC: Configuration)."""
    if cli_path:
        return Path(cli_path)
    from_env = os.environ.get("KAIRAN_CONFIG")
    return Path(from_env) if from_env else Path("config.toml")


def parse_settings(
    data: Mapping[str, Any], path: Path, environ: Mapping[str, str]
) -> Settings:
    """Validate parsed TOML data; pure (the file is never read again)."""
    root = Where(path, "", environ)
    sections: dict[str, Any] = {}
    data_dir = _resolve_data_dir(path, "data")
    for key, value in data.items():
        where = root.at(key)
        if key == "poll":
            sections["poll"] = _poll(value, where)
        elif key in _SECTIONS:
            options, section_type = _SECTIONS[key]
            sections[key] = section_type(**_table(value, where, options))
        elif key == "storage":
            data_dir = _data_dir(value, where)
        elif key == "members":
            sections["members"] = _members(value, where)
        else:
            raise where.error("unknown key")
    return Settings(path=path, data_dir=data_dir, **sections)


_TOML_POSITION = re.compile(r"\s*\((at line \d+, column \d+|at end of document)\)$")


def parse_config_text(text: str, path: Path, environ: Mapping[str, str]) -> Settings:
    """TOML text → Settings; a syntax error names its line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        match = _TOML_POSITION.search(message)
        where = f" {match[1]}" if match else ""
        reason = _TOML_POSITION.sub("", message)
        reason = reason[:1].lower() + reason[1:]
        raise ConfigError(str(path), "", f"invalid toml{where}: {reason}") from None
    return parse_settings(data, path, environ)


def read_config_text(path: Path) -> str:
    """The file's text, exactly (line endings kept, a UTF-8 BOM dropped)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            str(path), "", "no such file; run `kairan init` to create one"
        ) from None
    except OSError as e:
        reason = (e.strerror or type(e).__name__).lower()
        raise ConfigError(str(path), "", f"cannot read: {reason}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            str(path), "", f"not utf-8 (byte {e.start}); toml files are utf-8"
        ) from None


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate config.toml; `env:NAME` secrets come from ``environ``."""
    env = os.environ if environ is None else environ
    return parse_config_text(read_config_text(path), path, env)


# What `kairan init` writes. Every active value equals the Settings default (a test
# holds the two together), so the file documents the defaults it does not change.
INIT_TEMPLATE = """\
# Kairan configuration.
#
# Kairan refuses unknown keys and bad values at start, naming the file and the key.
# Durations: a number of seconds, or a string such as "90s", "30m", "1h30m", "1d".
# Sizes: a number of bytes, or "5MB" (10^6 bytes) / "512KiB" (2^10 bytes).
# A secret (marked "secret" below) may be written "env:NAME": it is then read from
# the environment variable NAME. Secrets are never logged or shown.

[site]
# The portal's name, shown in the combined feeds, e-mails and the portal page.
title = "Kairan"
# Where the portal is served: links, feed ids and unsubscribe links start with it.
# Change it before anyone subscribes; feed ids built from it must not change later.
base_url = "http://localhost:8080/"
# "ja" or "en": the language of e-mails and the portal.
language = "ja"
# An IANA time zone name; digests go out at local hours in it.
timezone = "Asia/Tokyo"
# A URL or e-mail address where feed owners can reach you. It goes into the
# User-Agent of every request; when it is empty, base_url does.
# contact = "mailto:webmaster@example.jp"

[poll]
# How often each feed is polled: at least 5 minutes. A feed's Cache-Control max-age,
# Expires or RSS ttl can only lengthen the wait, never shorten it.
interval = "30m"
# Each wait varies by up to this fraction of the interval (0 to 0.5), so polls spread.
jitter = 0.1
concurrency = 20        # requests in flight at once, all hosts (1 to 500)
per_host = 2            # requests in flight at once to one host (1 to 50)
connect_timeout = 10    # seconds to connect (at most 300)
timeout = 30            # seconds for the whole response, body included (at most 300)
max_bytes = "5MiB"      # a larger feed is refused (1KiB to 200MiB)
max_backoff = "24h"     # the longest wait after repeated failures (interval to 7d)
max_redirects = 5       # redirect hops followed (0 to 10)
# Sent with every request. Empty: Kairan's name and version with site.contact
# (else site.base_url). When set, it must contain a contact URL or e-mail address.
user_agent = ""
# A member's first poll stores its backlog without notifying anyone; true notifies.
notify_backlog = false

[email]
# The SMTP server that sends notifications.
host = "localhost"
port = 25
# "none", "starttls" (usually port 587) or "tls" (implicit TLS, usually port 465).
security = "none"
# username = "kairan"
# password = "env:KAIRAN_SMTP_PASSWORD"    # secret
# The sender address; needed before any e-mail is sent.
# from = "kairan@example.jp"
# reply_to = "office@example.jp"
concurrency = 2         # SMTP connections at once (1 to 100)
timeout = 30            # seconds per SMTP conversation (at most 300)
# Japan's Act on Specified Electronic Mail (特定電子メール法) requires the sender's
# name and postal address in every message; they go into the footer.
sender_name = ""
postal_address = ""

[webhooks]
timeout = 15            # seconds per POST (at most 300)
# The wait before each attempt, the first one included; then the delivery fails.
retry_schedule = ["0s", "5s", "5m", "30m", "2h", "5h", "10h", "10h"]
# Webhook URLs that resolve to private, loopback or link-local addresses are refused
# unless this is true.
allow_private_addresses = false

[server]
# The daemon's HTTP server (published feeds, unsubscribe links).
host = "127.0.0.1"
port = 8080

[log]
level = "info"          # "debug", "info", "warning" or "error"
format = "kv"           # "kv" (key=value lines) or "json"

[storage]
# The database, published files and backups; relative to this file's directory.
data_dir = "data"

# Members: one [[members]] table per publisher. `kairan members add` appends one
# after the last member, keeping comments and order. Write a member's comments
# below its [[members]] line: `kairan members remove` then takes them with it.
#
# [[members]]
# id = "example-city"                      # a slug: a-z, 0-9 and "-"; unique
# name = "Example City"
# feed = "https://note.com/example/rss"
# site = "https://note.com/example"        # optional
# prefecture = "東京都"                    # optional
# tags = ["municipality"]                  # optional
# paused = false                           # optional; true stops polling it
"""
