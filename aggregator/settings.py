"""The validated settings types (frozen dataclasses); `config.py` builds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from aggregator.models import Member


@dataclass(frozen=True, slots=True)
class Secret:
    """A value read from config or the environment that must never be shown."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def reveal(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class SiteSettings:
    title: str = "Kairan"
    base_url: str = "http://localhost:8080/"
    language: str = "ja"  # "ja" or "en"
    timezone: str = "Asia/Tokyo"
    contact: str = ""  # URL or mail address; goes into the User-Agent

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class PollSettings:
    interval: int = 1800  # seconds; never below MIN_INTERVAL
    jitter: float = 0.1  # fraction of the interval, ± around it
    concurrency: int = 20  # requests in flight at once, all hosts
    per_host: int = 2  # requests in flight at once to one host
    connect_timeout: float = 10.0  # seconds
    timeout: float = 30.0  # seconds for the whole response, body included
    max_bytes: int = 5 * 1024 * 1024  # decoded body cap
    max_backoff: int = 24 * 3600  # seconds: the longest wait after failures
    max_redirects: int = 5
    user_agent: str = ""  # empty: built from the site's contact
    notify_backlog: bool = False  # a member's first poll stores its backlog silently
    parse_workers: int | None = None  # processes that parse; None: one per spare core


MIN_INTERVAL = 300  # SPEC: never poll a feed more often than every 5 minutes


@dataclass(frozen=True, slots=True)
class EmailSettings:
    host: str = "localhost"
    port: int = 25
    security: str = "none"  # "none", "starttls" or "tls"
    username: str | None = None
    password: Secret | None = None
    from_address: str = ""  # `from` in config.toml
    reply_to: str | None = None
    concurrency: int = 2
    timeout: float = 30.0
    sender_name: str = ""  # 特定電子メール法: who sends
    postal_address: str = ""  # 特定電子メール法: where they are
    # seconds to wait after the 1st, 2nd, … failed attempt; then the delivery fails
    retry_schedule: tuple[int, ...] = (60, 300, 1800, 7200, 21600, 43200, 86400)
    bounce_limit: int = 3  # hard bounces in a row before a subscriber is `bouncing`
    confirm_ttl: int = 7 * 86400  # seconds a double opt-in link stays valid
    unsubscribe_address: str | None = None  # List-Unsubscribe mailto; else reply_to


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    timeout: float = 15.0  # seconds for a whole POST, response included
    # the wait before each attempt, the first included (Standard Webhooks' schedule)
    retry_schedule: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    allow_private_addresses: bool = False
    concurrency: int = 10  # POSTs in flight at once, all endpoints
    per_endpoint: int = 2  # POSTs in flight at once to one endpoint
    disable_after: int = 5 * 86400  # seconds of nothing but failures → disabled
    secret_overlap: int = 86400  # seconds both secrets sign after a rotation


@dataclass(frozen=True, slots=True)
class PublishSettings:
    feed_size: int = 50  # articles in feed.atom / feed.json and each archive page
    websub_hub: str | None = None  # WebSub hub URL: link rel="hub" and a ping
    icon: str | None = None  # Atom icon / JSON Feed favicon URL
    logo: str | None = None  # Atom logo / JSON Feed icon URL


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: str = "kv"  # "kv" (key=value) or "json"


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """`kairan run`: how often its jobs tick (seconds)."""

    poll_tick: int = 60  # look for members whose next poll is due
    deliver_tick: int = 30  # send what the outbox has due
    housekeeping_hour: int = 4  # local hour of the daily housekeeping


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """What daily housekeeping prunes (seconds) and keeps."""

    deliveries: int = 90 * 86400  # sent, failed and cancelled delivery rows
    fetch_log: int = 30 * 86400
    backups: int = 7  # daily backups kept in data/backups/


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    email: str | None = None  # where the daily health report goes; unset: none


@dataclass(frozen=True, slots=True)
class Settings:
    path: Path  # the config file these came from
    data_dir: Path  # absolute; `[storage] data_dir`, relative to the config file
    site: SiteSettings = SiteSettings()
    poll: PollSettings = PollSettings()
    email: EmailSettings = EmailSettings()
    webhooks: WebhookSettings = WebhookSettings()
    publish: PublishSettings = PublishSettings()
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    daemon: DaemonSettings = DaemonSettings()
    retention: RetentionSettings = RetentionSettings()
    operator: OperatorSettings = OperatorSettings()
    members: tuple[Member, ...] = ()

    @property
    def database_path(self) -> Path:
        return self.data_dir / "kairan.sqlite3"

    @property
    def public_dir(self) -> Path:
        """Where `kairan publish` writes and the server serves from."""
        return self.data_dir / "public"

    def member(self, member_id: str) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)
