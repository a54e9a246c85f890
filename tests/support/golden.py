"""Golden feed fixtures: an input file beside `<name>.expected.json`, compared as dicts.

The expected file holds the call's inputs (`url`, `content_type`) and the ParsedFeed
as JSON-able dicts: datetimes as ISO 8601 (a naive one has no offset), tuples as
lists. After a deliberate change, rewrite the expected files and read the diff:

    python -m tests.support.golden rss20_note.xml atom03.xml
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aggregator.models import ParsedFeed
from aggregator.parse import parse_feed

FEEDS = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
MEMBER = "golden"


@dataclass(frozen=True, slots=True)
class Golden:
    body: bytes
    url: str
    content_type: str | None
    expected: dict[str, Any]  # the ParsedFeed, as feed_to_dict gives it

    def parse(self) -> ParsedFeed:
        return parse_feed(self.body, self.content_type, self.url, MEMBER)


def expected_path(name: str) -> Path:
    return FEEDS / f"{Path(name).stem}.expected.json"


def load(name: str) -> Golden:
    spec = json.loads(expected_path(name).read_text(encoding="utf-8"))
    return Golden(
        body=(FEEDS / name).read_bytes(),
        url=spec["url"],
        content_type=spec["content_type"],
        expected=spec["feed"],
    )


def feed_to_dict(feed: ParsedFeed) -> dict[str, Any]:
    """A ParsedFeed as plain JSON values, field order kept."""
    result = _jsonable(dataclasses.asdict(feed))
    assert isinstance(result, dict)
    return result


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def rewrite(name: str) -> None:
    """Parse the input again and store the result as its expected output."""
    golden = load(name)
    spec = {
        "url": golden.url,
        "content_type": golden.content_type,
        "feed": feed_to_dict(golden.parse()),
    }
    text = json.dumps(spec, ensure_ascii=False, indent=2) + "\n"
    expected_path(name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        rewrite(argument)
