"""Pure: classify a candidate against the stored article, first-poll status, credit."""

from __future__ import annotations

from dataclasses import dataclass

from aggregator import urls
from aggregator.models import Candidate, EntryStatus, Member, Verdict


@dataclass(frozen=True, slots=True)
class Known:
    """The stored article a candidate's keys resolved to, seen from one member."""

    entry_id: int
    member_id: str  # the member the article is credited to
    content_hash: str  # hash of the stored copy
    sighting_hash: str | None  # last hash seen from this member; None: never carried


def classify(candidate: Candidate, known: Known | None, tombstoned: bool) -> Verdict:
    """NEW, EDITED, UNCHANGED or TOMBSTONED (SPEC "Identity and dedup").

    An edit is a change in what *this* member publishes: the same article reached
    through another member or a magazine is neither news nor an edit, even when
    that copy differs. A change that the stored copy already holds is no edit.
    """
    if tombstoned:
        return Verdict.TOMBSTONED
    if known is None:
        return Verdict.NEW
    if known.sighting_hash is None or known.sighting_hash == candidate.content_hash:
        return Verdict.UNCHANGED
    if known.content_hash == candidate.content_hash:
        return Verdict.UNCHANGED
    return Verdict.EDITED


def initial_status(baseline_done: bool, notify_backlog: bool) -> EntryStatus:
    """A member's first successful poll stores its backlog as BASELINE, not news."""
    if baseline_done or notify_backlog:
        return EntryStatus.NEW
    return EntryStatus.BASELINE


def _serves(member: Member, link_host: str) -> bool:
    hosts = {urls.host(member.feed), urls.host(member.site or "")}
    return link_host in hosts


def credit(current: Member, other: Member, link: str | None) -> Member:
    """The member an article is credited to when `other` also carries it.

    A publisher beats a magazine that repeats it; between equals, the member whose
    feed or site host serves the link; otherwise `current` stays (stable credit).
    """
    if current.is_magazine != other.is_magazine:
        return other if current.is_magazine else current
    link_host = urls.host(link or "")
    if link_host and _serves(other, link_host) and not _serves(current, link_host):
        return other
    return current
