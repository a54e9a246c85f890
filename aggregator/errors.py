"""The KairanError tree: every error the core raises on purpose.

```
KairanError
├── ConfigError(path, key, problem)          exit 2
├── UsageError                               exit 2 (unknown member, bad argument)
├── FeedError(member_id, url)                a recorded outcome, never a crash
│   ├── FetchError                           error_class names the failure for `status`
│   │   ├── FetchTimeout                     "timeout"
│   │   ├── DNSError                         "dns"
│   │   ├── TLSError                         "tls"
│   │   ├── NetworkError                     "network" (refused, reset, truncated)
│   │   ├── FetchTooLarge                    "too_large"
│   │   ├── RedirectError                    "redirect" (loop, too many hops)
│   │   └── HTTPStatusError(status)          "http"
│   │       ├── FeedGone                     410
│   │       └── RateLimited(retry_after)     429 / 503
│   └── ParseError                           "parse"
│       ├── NotAFeedError                    "not_a_feed"
│       └── HostileXMLError                  "hostile_xml"
└── StoreError                               the database refused or failed
    ├── NotKairanDatabaseError
    └── SchemaVersionError                   the database is newer than this kairan
```

Messages are one line, lower-case, with no trailing period, and name the thing
involved. ``str()`` appends the cause (``message: cause``) so the underlying reason
is never lost.
"""

from __future__ import annotations

from datetime import datetime


class KairanError(Exception):
    """Root of every error Kairan raises on purpose."""

    exit_code = 1

    @property
    def message(self) -> str:
        return super().__str__()

    def __str__(self) -> str:
        cause = self.__cause__
        if cause is not None and str(cause) and str(cause) not in self.message:
            return f"{self.message}: {cause}"
        return self.message


class ConfigError(KairanError):
    """config.toml (or a value given for it) is wrong; names the file and key."""

    exit_code = 2

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


class UsageError(KairanError):
    """The operator asked for something that cannot be done as asked."""

    exit_code = 2


class FeedError(KairanError):
    """Something went wrong with one member's feed."""

    error_class = "feed"

    def __init__(self, member_id: str, url: str, problem: str) -> None:
        self.member_id = member_id
        self.url = url
        self.problem = problem
        super().__init__(f"member {member_id}: {url}: {problem}")


class FetchError(FeedError):
    error_class = "network"


class FetchTimeout(FetchError):
    error_class = "timeout"


class DNSError(FetchError):
    error_class = "dns"


class TLSError(FetchError):
    error_class = "tls"


class NetworkError(FetchError):
    error_class = "network"


class FetchTooLarge(FetchError):
    error_class = "too_large"


class RedirectError(FetchError):
    error_class = "redirect"


class HTTPStatusError(FetchError):
    error_class = "http"

    def __init__(
        self, member_id: str, url: str, status: int, problem: str = ""
    ) -> None:
        self.status = status
        super().__init__(member_id, url, problem or f"HTTP {status}")


class FeedGone(HTTPStatusError):
    """410 Gone: the member is no longer polled until an operator resumes it."""


class RateLimited(HTTPStatusError):
    """429/503; ``retry_after`` is the absolute time the server asked us to wait for."""

    def __init__(
        self,
        member_id: str,
        url: str,
        status: int,
        retry_after: datetime | None,
    ) -> None:
        self.retry_after = retry_after
        hint = f", retry after {retry_after.isoformat()}" if retry_after else ""
        super().__init__(member_id, url, status, f"HTTP {status}{hint}")


class ParseError(FeedError):
    error_class = "parse"

    def __reduce__(self) -> tuple[type[ParseError], tuple[str, str, str]]:
        # Raised in the parser's worker process and pickled back to the poller.
        return (type(self), (self.member_id, self.url, self.problem))


class NotAFeedError(ParseError):
    error_class = "not_a_feed"


class HostileXMLError(ParseError):
    error_class = "hostile_xml"


class StoreError(KairanError):
    """The database failed or is not usable by this version of Kairan."""


class NotKairanDatabaseError(StoreError):
    pass


class SchemaVersionError(StoreError):
    pass
