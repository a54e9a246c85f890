"""Browser tests: Debian's Chromium driven by Playwright, with axe-core from npm.

Nothing is downloaded here: `.ci/run` installs both (apt-get install chromium;
npm install axe-core into AXE_PREFIX). Where either is missing the tests skip,
saying what to install, except under CI (CI set), where a missing browser is an
install step that broke and fails the run instead of hiding it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
AXE_VERSION = "4.14.1"  # what .ci/run installs
AXE_PREFIX = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "kairan-test"
    / "axe"
)
AXE_SCRIPT = AXE_PREFIX / "node_modules" / "axe-core" / "axe.min.js"

_shots: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: runs pages in headless Chromium (tests/browser)"
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _shots:
        terminalreporter.write_line(
            f"portal screenshots ({len(_shots)}): {_shots[0].parent}"
        )


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} (CI installs it: see .ci/run)")
    pytest.skip(what)


@dataclass(frozen=True, slots=True)
class Axe:
    source: str
    version: str


@pytest.fixture(scope="session")
def axe() -> Axe:
    if not AXE_SCRIPT.is_file():
        _missing(
            f"axe-core not found at {AXE_SCRIPT}: npm install --prefix {AXE_PREFIX} "
            f"axe-core@{AXE_VERSION}"
        )
    package = json.loads((AXE_SCRIPT.parent / "package.json").read_text("utf-8"))
    return Axe(AXE_SCRIPT.read_text("utf-8"), str(package["version"]))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium per test module, never longer: while Playwright's sync
    API is open its event loop counts as running in this thread, and every
    asyncio test of another module (pytest-randomly keeps a module's tests
    together) would fail with "Cannot run the event loop while another loop is
    running"."""
    if not CHROMIUM.is_file():
        _missing(f"{CHROMIUM} not found: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where every screenshot of the run is kept (pytest keeps the last 3 runs)."""
    return tmp_path_factory.mktemp("portal-screenshots")


@pytest.fixture
def screenshot(screenshots: Path) -> Callable[[Page, str], Path]:
    """Save a full-page screenshot as a test artefact; its path is printed."""

    def take(page: Page, name: str) -> Path:
        shot = screenshots / f"{name}.png"
        page.screenshot(path=shot, full_page=True)
        _shots.append(shot)
        print(f"screenshot: {shot}")  # noqa: T201 (the artefact's path, asked for)
        return shot

    return take
