"""The soak's count: deliveries expected (from the feeds and the followers) vs made.

Expected comes from the soak's own records only: every article it published,
each follower's filters and schedule (`soak_setup.Follower`). Made is counted
twice, independently: the outbox's rows in the database, and the (recipient,
article URL) pairs in the messages the SMTP sink wrote as .eml files. A delay is
an .eml file's mtime (written before the sink's 250) minus the real time at which
the feed server started serving the article.
"""

from __future__ import annotations

import email
import re
import sqlite3
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from pathlib import Path

from aggregator.models import Cadence
from aggregator.timefmt import from_db_required
from bench.soak_setup import SPEED, Article, Follower

_URL = re.compile(r"https://note\.com/bench\d{4}/n/n[0-9a-f]{12}")
Pair = tuple[str, str]  # (address, article URL)
EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class Mail:
    to: str
    urls: frozenset[str]
    received: float  # the .eml file's mtime: real time.time()


def read_mail(directory: Path) -> list[Mail]:
    """Each .eml file's recipient and the article URLs in its text part.

    The compat32 parser and a decoded payload: policy.default's header objects
    cost 6× more, and only the addr-spec and the plain text are needed."""
    mails = []
    for file in sorted(directory.glob("*.eml")):
        message = email.message_from_bytes(file.read_bytes())
        urls = frozenset(_URL.findall(_plain_text(message)))
        mails.append(Mail(str(message["To"]), urls, file.stat().st_mtime))
    return mails


def _plain_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8")
    return ""


def _address(to: str) -> str:
    """The addr-spec of a To header (it may carry no display name)."""
    return email.utils.parseaddr(to)[1].lower()


@dataclass(frozen=True, slots=True)
class Row:
    address: str
    url: str
    state: str
    due: datetime


def read_rows(database: Path) -> list[Row]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            """SELECT s.address, e.link, d.state, d.due_at FROM deliveries d
               JOIN subscribers s ON s.id = d.subscriber_id
               JOIN entries e ON e.id = d.entry_id"""
        ).fetchall()
    return [Row(a.lower(), u, st, from_db_required(due)) for a, u, st, due in rows]


@dataclass
class Tally:
    expected_sent: int
    expected_queued: int
    expected_digests: int  # digest messages due within the run
    db_sent: int
    db_queued: int
    db_other: Counter[str]  # rows in any other state (or queued with a wrong due)
    sink_pairs: int
    sink_duplicates: int
    messages: Counter[str]  # by cadence of the recipient
    problems: list[str]
    delays: list[float]  # real seconds, one per immediate (recipient, article)

    @property
    def equal(self) -> bool:
        return not self.problems

    def percentile(self, share: float) -> float | None:
        if len(self.delays) < 2:
            return self.delays[0] if self.delays else None
        return statistics.quantiles(self.delays, n=100, method="inclusive")[
            round(share * 100) - 1
        ]

    def summary(self) -> dict[str, object]:
        p50, p95 = self.percentile(0.50), self.percentile(0.95)
        worst = max(self.delays, default=None)
        return {
            "expected_sent": self.expected_sent,
            "expected_queued": self.expected_queued,
            "expected_digest_messages": self.expected_digests,
            "db_sent": self.db_sent,
            "db_queued": self.db_queued,
            "db_other": dict(self.db_other),
            "sink_pairs": self.sink_pairs,
            "sink_duplicates": self.sink_duplicates,
            "messages": dict(self.messages),
            "delay_real_s": {"p50": p50, "p95": p95, "max": worst},
            "delay_daemon_s": {
                k: None if v is None else v * SPEED
                for k, v in {"p50": p50, "p95": p95, "max": worst}.items()
            },
            "delays_counted": len(self.delays),
            "problems": self.problems,
        }


def _differences(name: str, want: set[Pair], got: Iterable[Pair]) -> list[str]:
    have = set(got)
    problems = []
    for label, pairs in (("missing", want - have), ("unexpected", have - want)):
        if pairs:
            shown = ", ".join(f"{a} {u}" for a, u in sorted(pairs)[:EXAMPLES])
            problems.append(f"{name}: {len(pairs)} {label}, e.g. {shown}")
    return problems


def tally(
    articles: Sequence[Article],
    followers: Sequence[Follower],
    end: datetime,
    rows: Sequence[Row],
    mails: Sequence[Mail],
) -> Tally:
    by_address = {f.address: f for f in followers}
    sent: set[Pair] = set()
    queued: dict[Pair, datetime] = {}
    digests: set[tuple[str, datetime]] = set()
    # A burst's articles share one appearance time: one due time per follower.
    dues: dict[tuple[str, datetime], datetime] = {}
    for article in articles:
        for follower in followers:
            if not follower.matches(article):
                continue
            key = (follower.address, article.appeared)
            due = dues.get(key)
            if due is None:
                due = dues[key] = follower.due(article.appeared)
            pair = (follower.address, article.url)
            if due > end:
                queued[pair] = due
                continue
            sent.add(pair)
            if follower.cadence is not Cadence.IMMEDIATE:
                digests.add((follower.address, due))
    db_sent = [(r.address, r.url) for r in rows if r.state == "sent"]
    db_queued = [
        (r.address, r.url)
        for r in rows
        if r.state == "pending" and queued.get((r.address, r.url)) == r.due
    ]
    kept = set(db_queued)
    other = Counter(
        r.state for r in rows if r.state != "sent" and (r.address, r.url) not in kept
    )
    pairs = Counter((_address(m.to), url) for m in mails for url in m.urls)
    problems = _differences("outbox sent", sent, db_sent)
    problems += _differences("outbox queued", set(queued), db_queued)
    problems += _differences("sink", sent, pairs)
    if other:
        problems.append(f"outbox rows in other states (or wrong due): {dict(other)}")
    duplicates = sum(n - 1 for n in pairs.values() if n > 1)
    if duplicates:
        problems.append(f"sink: {duplicates} (recipient, article) pairs received twice")
    messages: Counter[str] = Counter()
    for mail in mails:
        known = by_address.get(_address(mail.to))
        messages[str(known.cadence) if known is not None else "unknown"] += 1
    digest_mail = messages["daily"] + messages["weekly"]
    if digest_mail != len(digests):
        problems.append(f"{digest_mail} digest messages, expected {len(digests)}")
    return Tally(
        expected_sent=len(sent),
        expected_queued=len(queued),
        expected_digests=len(digests),
        db_sent=len(db_sent),
        db_queued=len(db_queued),
        db_other=other,
        sink_pairs=sum(pairs.values()),
        sink_duplicates=duplicates,
        messages=messages,
        problems=problems,
        delays=_delays(articles, by_address, mails),
    )


def _delays(
    articles: Sequence[Article], by_address: dict[str, Follower], mails: Sequence[Mail]
) -> list[float]:
    """Real seconds from appearance to the sink, per immediate (recipient, article)."""
    appeared = {a.url: a.appeared_wall for a in articles}
    first: dict[Pair, float] = {}
    for mail in mails:
        address = _address(mail.to)
        follower = by_address.get(address)
        if follower is None or follower.cadence is not Cadence.IMMEDIATE:
            continue
        for url in mail.urls:
            if url in appeared:
                pair = (address, url)
                first[pair] = min(first.get(pair, mail.received), mail.received)
    return sorted(received - appeared[url] for (_, url), received in first.items())
