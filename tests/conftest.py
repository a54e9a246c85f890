"""Shared fixtures: a clean environment, an injected clock and RNG."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.clock import FixedClock


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # integration is applied by directory, so no test can forget the marker
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the operator's KAIRAN_* variables or proxies."""
    for name in list(os.environ):
        if name.startswith("KAIRAN_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 12, 1, 3, 0, tzinfo=UTC))


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)
