"""Typed builders for test data: settings, members, candidates."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from aggregator.models import Member
from aggregator.settings import PollSettings, Settings, SiteSettings


def member(member_id: str, feed: str, **overrides: Any) -> Member:
    fields: dict[str, Any] = {"name": member_id.title(), "prefecture": None}
    fields.update(overrides)
    return Member(id=member_id, feed=feed, **fields)


def settings(tmp_path: Path, members: tuple[Member, ...] = (), **poll: Any) -> Settings:
    """Settings for a test: data in tmp_path, quick timeouts, given poll overrides."""
    # parse_workers=0: parse in a thread; tests/integration/test_parse_runner.py
    # covers the worker processes once, instead of every test paying their start.
    base = PollSettings(connect_timeout=2.0, timeout=5.0, jitter=0.0, parse_workers=0)
    return Settings(
        path=tmp_path / "config.toml",
        data_dir=tmp_path / "data",
        site=SiteSettings(contact="https://example.jp/contact"),
        poll=dataclasses.replace(base, **poll),
        members=members,
    )
