"""dedup: verdicts against the stored article, first-poll status, member credit."""

from __future__ import annotations

import dataclasses

import pytest

from aggregator.dedup import Known, classify, credit, initial_status
from aggregator.models import Candidate, EntryStatus, Member, ParsedEntry, Verdict

ENTRY = ParsedEntry(
    guid="g",
    link="https://note.com/u/n/n0123456789ab",
    title="t",
    summary_html=None,
    content_html=None,
    published=None,
    updated=None,
)


def candidate(content_hash: str = "v1:new") -> Candidate:
    return Candidate("tokyo", ("note:n0123456789ab",), content_hash, ENTRY)


def known(sighting: str | None, stored: str = "v1:stored") -> Known:
    return Known(
        entry_id=7, member_id="tokyo", content_hash=stored, sighting_hash=sighting
    )


def test_known_is_a_frozen_slotted_value() -> None:
    k = known("v1:a")
    assert not hasattr(k, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.entry_id = 8  # type: ignore[misc]
    assert k == known("v1:a")


def test_tombstoned_wins_over_everything() -> None:
    assert classify(candidate(), None, tombstoned=True) is Verdict.TOMBSTONED
    assert classify(candidate(), known("v1:old"), tombstoned=True) is Verdict.TOMBSTONED


def test_unknown_is_new() -> None:
    assert classify(candidate(), None, tombstoned=False) is Verdict.NEW


def test_same_member_new_hash_is_edited() -> None:
    assert classify(candidate("v1:new"), known("v1:old"), False) is Verdict.EDITED


def test_same_member_same_hash_is_unchanged() -> None:
    assert classify(candidate("v1:same"), known("v1:same"), False) is Verdict.UNCHANGED


def test_first_sighting_by_this_member_is_not_news_nor_an_edit() -> None:
    # the magazine carried it first; the member's own copy differs
    assert classify(candidate("v1:member"), known(None, "v1:mag"), False) is (
        Verdict.UNCHANGED
    )


def test_a_change_the_stored_copy_already_holds_is_not_an_edit() -> None:
    # this member saw v1:old; another member's copy, v1:new, is what is stored
    assert classify(candidate("v1:new"), known("v1:old", "v1:new"), False) is (
        Verdict.UNCHANGED
    )


@pytest.mark.parametrize(
    ("baseline_done", "notify_backlog", "expected"),
    [
        (False, False, EntryStatus.BASELINE),
        (False, True, EntryStatus.NEW),
        (True, False, EntryStatus.NEW),
        (True, True, EntryStatus.NEW),
    ],
)
def test_initial_status(
    baseline_done: bool, notify_backlog: bool, expected: EntryStatus
) -> None:
    assert initial_status(baseline_done, notify_backlog) is expected


MAGAZINE = Member(
    "govgov-magazine", "自治体AI活用マガジン", "https://govgov.ai/m/m8f7256e10f43/rss",
    tags=("magazine",),
)  # fmt: skip
YOKOSUKA = Member("yokosuka", "横須賀市", "https://govgov.ai/rss")
TOKYO = Member("tokyo", "東京都", "https://note.com/kouzoukaikaku/rss")
KOBE = Member(
    "kobe", "神戸市", "https://kobe-note.jp/rss", site="https://Kobe.example/"
)
OTHER_MAG = Member(
    "other-mag", "別マガジン", "https://note.com/x/m/m1/rss", tags=("magazine",)
)

NOTE_LINK = "https://note.com/kouzoukaikaku/n/n0123456789ab"


@pytest.mark.parametrize(
    ("current", "other", "link", "expected"),
    [
        (MAGAZINE, TOKYO, NOTE_LINK, TOKYO),  # publisher beats magazine
        (TOKYO, MAGAZINE, NOTE_LINK, TOKYO),
        (MAGAZINE, KOBE, NOTE_LINK, KOBE),  # even when its host does not serve it
        (YOKOSUKA, TOKYO, NOTE_LINK, TOKYO),  # between members, the link's host
        (TOKYO, YOKOSUKA, NOTE_LINK, TOKYO),
        (TOKYO, KOBE, "https://kobe.example/a", KOBE),  # site host counts too
        (MAGAZINE, OTHER_MAG, NOTE_LINK, OTHER_MAG),  # between magazines, the host
        (TOKYO, KOBE, "https://elsewhere.example/a", TOKYO),  # nobody: stable
        (YOKOSUKA, TOKYO, None, YOKOSUKA),
        (YOKOSUKA, TOKYO, "not a url", YOKOSUKA),
        (MAGAZINE, YOKOSUKA, "https://govgov.ai/n/n0123456789ab", YOKOSUKA),
    ],
)
def test_credit(
    current: Member, other: Member, link: str | None, expected: Member
) -> None:
    assert credit(current, other, link) == expected


def test_credit_is_stable_when_both_serve_the_link() -> None:
    link = "https://govgov.ai/n/n0123456789ab"
    twin = Member("twin", "双子", "https://govgov.ai/other/rss")
    assert credit(YOKOSUKA, twin, link) == YOKOSUKA
    assert credit(twin, YOKOSUKA, link) == twin
