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
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aggregator.config_values import (
    DAY,
    HOUR,
    KIB,
    MIB,
    WEEK,
    Check,
    Where,
    address,
    base_url,
    boolean,
    choice,
    contact,
    duration,
    durations,
    http_url,
    human_seconds,
    integer,
    number,
    optional,
    secret,
    size,
    slug,
    string,
    tags,
    text,
    timeout,
    timezone,
    user_agent,
    wrong_type,
)
from aggregator.errors import ConfigError
from aggregator.models import Member
from aggregator.settings import (
    MIN_INTERVAL,
    DaemonSettings,
    EmailSettings,
    LogSettings,
    OperatorSettings,
    PollSettings,
    PublishSettings,
    RetentionSettings,
    ServerSettings,
    Settings,
    SiteSettings,
    WebhookSettings,
)

# --- the option tables --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    check: Check
    field: str | None = None  # the Settings field, when its name differs from the key


_SITE = {
    "title": Option(text),
    "base_url": Option(base_url),
    "language": Option(choice("ja", "en")),
    "timezone": Option(timezone),
    "contact": Option(contact),
}
_POLL = {
    "interval": Option(duration(MIN_INTERVAL, WEEK)),
    "jitter": Option(number(0, 0.5)),
    "concurrency": Option(integer(1, 500)),
    "per_host": Option(integer(1, 50)),
    "connect_timeout": Option(timeout),
    "timeout": Option(timeout),
    "max_bytes": Option(size(KIB, 200 * MIB)),
    "max_backoff": Option(duration(MIN_INTERVAL, WEEK)),
    "max_redirects": Option(integer(0, 10)),
    "user_agent": Option(user_agent),
    "notify_backlog": Option(boolean),
    "parse_workers": Option(integer(0, 32)),
}
_EMAIL = {
    "host": Option(text),
    "port": Option(integer(1, 65535)),
    "security": Option(choice("none", "starttls", "tls")),
    "username": Option(optional(string)),
    "password": Option(secret),
    "from": Option(address, "from_address"),
    "reply_to": Option(optional(address)),
    "concurrency": Option(integer(1, 100)),
    "timeout": Option(timeout),
    "sender_name": Option(string),
    "postal_address": Option(string),
    "retry_schedule": Option(durations),
    "bounce_limit": Option(integer(1, 100)),
    "confirm_ttl": Option(duration(HOUR, 30 * DAY)),
    "unsubscribe_address": Option(optional(address)),
}
_WEBHOOKS = {
    "timeout": Option(timeout),
    "retry_schedule": Option(durations),
    "allow_private_addresses": Option(boolean),
    "concurrency": Option(integer(1, 200)),
    "per_endpoint": Option(integer(1, 50)),
    "disable_after": Option(duration(HOUR, 60 * DAY)),
    "secret_overlap": Option(duration(0, 30 * DAY)),
}
_DAEMON = {
    "poll_tick": Option(duration(1, HOUR)),
    "deliver_tick": Option(duration(1, HOUR)),
    "housekeeping_hour": Option(integer(0, 23)),
}
_RETENTION = {
    "deliveries": Option(duration(DAY, 3650 * DAY)),
    "fetch_log": Option(duration(DAY, 3650 * DAY)),
    "backups": Option(integer(0, 365)),
}
_OPERATOR = {"email": Option(optional(address))}
_PUBLISH = {
    "feed_size": Option(integer(10, 1000)),
    "websub_hub": Option(optional(http_url)),
    "icon": Option(optional(http_url)),
    "logo": Option(optional(http_url)),
}
_SERVER = {"host": Option(text), "port": Option(integer(1, 65535))}
_LOG = {
    "level": Option(choice("debug", "info", "warning", "error")),
    "format": Option(choice("kv", "json")),
}
_STORAGE = {"data_dir": Option(text)}
_MEMBER = {
    "id": Option(slug),
    "name": Option(text),
    "feed": Option(http_url),
    "site": Option(optional(http_url)),
    "prefecture": Option(optional(string)),
    "tags": Option(tags),
    "paused": Option(boolean),
}
_MEMBER_REQUIRED = ("id", "name", "feed")

_SECTIONS: dict[str, tuple[dict[str, Option], Callable[..., Any]]] = {
    "site": (_SITE, SiteSettings),
    "poll": (_POLL, PollSettings),
    "email": (_EMAIL, EmailSettings),
    "webhooks": (_WEBHOOKS, WebhookSettings),
    "publish": (_PUBLISH, PublishSettings),
    "server": (_SERVER, ServerSettings),
    "log": (_LOG, LogSettings),
    "daemon": (_DAEMON, DaemonSettings),
    "retention": (_RETENTION, RetentionSettings),
    "operator": (_OPERATOR, OperatorSettings),
}


def _table(
    value: object, where: Where, options: Mapping[str, Option]
) -> dict[str, Any]:
    """Check one table against its options → {field: value}; unknown keys refused."""
    if not isinstance(value, dict):
        raise wrong_type("a table", value, where)
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
            f"must be at least poll.interval ({human_seconds(poll.interval)}),"
            f" got {human_seconds(poll.max_backoff)}"
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
        raise wrong_type("an array of tables ([[members]])", value, where)
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
# Processes that parse feeds beside the poller (0: parse in the poller itself).
# Unset: one per CPU core beyond the first, at most 4.
# parse_workers = 1

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
# After a failed attempt (SMTP 4xx, server down), wait this long before the next;
# after the last wait the delivery fails (`kairan deliveries retry --failed`).
retry_schedule = ["1m", "5m", "30m", "2h", "6h", "12h", "24h"]
bounce_limit = 3        # hard bounces (5xx) before an address is no longer mailed
confirm_ttl = "7d"      # how long a double opt-in confirmation link works
# The mailto: of List-Unsubscribe (RFC 2369); unset: reply_to, else from.
# unsubscribe_address = "unsubscribe@example.jp"

[webhooks]
timeout = 15            # seconds per POST (at most 300)
# The wait before each attempt, the first one included; then the delivery fails.
retry_schedule = ["0s", "5s", "5m", "30m", "2h", "5h", "10h", "10h"]
# Webhook URLs that resolve to private, loopback or link-local addresses are refused
# unless this is true.
allow_private_addresses = false
concurrency = 10        # POSTs in flight at once, all endpoints (1 to 200)
per_endpoint = 2        # POSTs in flight at once to one endpoint (1 to 50)
# An endpoint that has answered nothing but failures for this long is disabled
# (`kairan subscribers enable ID` turns it back on).
disable_after = "5d"
# After `kairan subscribers rotate-secret`, the old secret keeps signing this long.
secret_overlap = "1d"

[publish]
# `kairan publish` writes feed.atom, feed.json, members.opml and the portal
# (index.html) to data/public/; the server serves them.
feed_size = 50          # articles in feed.atom and feed.json, and per archive page
# websub_hub = "https://pubsubhubbub.appspot.com/"   # link rel="hub" + a ping
# icon = "https://example.jp/favicon.png"
# logo = "https://example.jp/logo.png"

[server]
# The daemon's HTTP server (published feeds, unsubscribe links).
host = "127.0.0.1"
port = 8080

[log]
level = "info"          # "debug", "info", "warning" or "error"
format = "kv"           # "kv" (key=value lines) or "json"

[daemon]
# `kairan run`: how often it looks for due polls and due deliveries.
poll_tick = "1m"
deliver_tick = "30s"
housekeeping_hour = 4   # local hour of the daily prune, backup and PRAGMA optimize

[retention]
deliveries = "90d"      # sent, failed and cancelled deliveries are pruned after this
fetch_log = "30d"       # poll history kept for `kairan members show`
backups = 7             # daily backups kept in data/backups/ (0: none)

[operator]
# Where the daily health report goes (only on days something needs attention).
# email = "ops@example.jp"

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
