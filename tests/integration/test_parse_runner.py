"""Parsing in worker processes: results and errors cross the process boundary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aggregator.errors import HostileXMLError, NotAFeedError
from aggregator.parse_runner import ParseRunner, default_workers
from tests.support.feeds import Item, note_feed, note_key

URL = "https://note.com/city/rss"


@pytest.fixture(scope="module")
def runner() -> Iterator[ParseRunner]:
    runner = ParseRunner(workers=1)
    try:
        yield runner
    finally:
        runner.close()


async def test_a_feed_parsed_in_a_worker_matches_one_parsed_in_a_thread(
    runner: ParseRunner,
) -> None:
    body = note_feed([Item(note_key(1), "議事録要約"), Item(note_key(2), "研修")])
    in_worker = await runner.parse(body, "application/rss+xml", URL, "city")
    in_thread = await ParseRunner(workers=0).parse(
        body, "application/rss+xml", URL, "city"
    )
    assert in_worker == in_thread
    assert [e.title for e in in_worker.entries] == ["議事録要約", "研修"]


@pytest.mark.parametrize(
    ("body", "error", "problem"),
    [
        (b"<html><body>page</body></html>", NotAFeedError, "HTML page"),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "b">]><rss/>',
            HostileXMLError,
            "declares 1 entity",
        ),
    ],
)
async def test_errors_keep_their_type_member_and_message(
    runner: ParseRunner, body: bytes, error: type[Exception], problem: str
) -> None:
    with pytest.raises(error) as caught:
        await runner.parse(body, None, URL, "city")
    assert caught.value.member_id == "city"  # type: ignore[attr-defined]
    assert str(caught.value).startswith(f"member city: {URL}: ")
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)  # one line, no worker traceback


def test_one_core_parses_in_a_thread() -> None:
    assert default_workers() >= 0
    assert ParseRunner(workers=0).workers == 0
