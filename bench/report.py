"""The benchmark's figures: per-phase summaries, ratios against targets, tables.

With ``--repeat R`` every phase runs R times; a summary takes the median wall and
CPU time (one noisy round on a shared 2-core machine moves a mean a lot) and the
largest peak RSS.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import profile
from bench.child import Measured
from bench.server import ServerStats

COLD_TARGET = 1.3  # cold wall and CPU ≤ 1.3 × the httpx floor
WARM_TARGET = 1.2  # warm ≤ 1.2 × the conditional floor, with 100% 304s
RSS_TARGET_MB = 200.0
TOP = 12  # rows per profile view
_PACKAGES = ("kairan", "httpx", "httpcore", "aiohttp", "feedparser", "nh3")


@dataclass
class Phase:
    """One measured run of one phase, with what the client and server counted."""

    name: str
    round: int
    run: Measured
    server: ServerStats
    parsed: int  # feeds parsed, as the client reports
    not_modified: int  # 304s, as the client reports
    problems: list[str]

    def row(self) -> dict[str, object]:
        return {
            "phase": self.name,
            "round": self.round,
            "wall_s": round(self.run.wall, 3),
            "cpu_s": round(self.run.cpu, 3),
            "user_s": round(self.run.user, 3),
            "sys_s": round(self.run.system, 3),
            "peak_rss_mb": round(self.run.rss_mb, 1),
            "requests": self.server.requests,
            "not_modified": self.server.not_modified,
            "client_not_modified": self.not_modified,
            "parsed": self.parsed,
            "max_in_flight": self.server.max_in_flight,
            "problems": self.problems,
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """A phase over its rounds: median times, largest RSS, the last round's counts."""

    name: str
    runs: int
    wall: float
    wall_min: float
    wall_max: float
    cpu: float
    rss_mb: float
    requests: int
    not_modified: int
    parsed: int
    max_in_flight: int

    @classmethod
    def of(cls, phases: Sequence[Phase]) -> Summary:
        walls = [p.run.wall for p in phases]
        last = phases[-1]
        return cls(
            name=last.name,
            runs=len(phases),
            wall=statistics.median(walls),
            wall_min=min(walls),
            wall_max=max(walls),
            cpu=statistics.median(p.run.cpu for p in phases),
            rss_mb=max(p.run.rss_mb for p in phases),
            requests=last.server.requests,
            not_modified=last.server.not_modified,
            parsed=last.parsed,
            max_in_flight=last.server.max_in_flight,
        )


def summaries(phases: Sequence[Phase]) -> dict[str, Summary]:
    """One Summary per phase name, in the order the phases first ran."""
    grouped: dict[str, list[Phase]] = {}
    for phase in phases:
        grouped.setdefault(phase.name, []).append(phase)
    return {name: Summary.of(runs) for name, runs in grouped.items()}


@dataclass(frozen=True, slots=True)
class Ratio:
    name: str
    wall: float | None
    cpu: float | None
    target: float | None  # None: for orientation only

    @property
    def met(self) -> bool | None:
        if self.target is None or self.wall is None or self.cpu is None:
            return None
        return self.wall <= self.target and self.cpu <= self.target

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "wall": self.wall,
            "cpu": self.cpu,
            "target": self.target,
            "met": self.met,
        }


def ratios(by_name: dict[str, Summary]) -> list[Ratio]:
    def ratio(name: str, top: str, bottom: str, target: float | None) -> Ratio:
        a, b = by_name.get(top), by_name.get(bottom)
        if a is None or b is None:
            return Ratio(name, None, None, target)
        return Ratio(name, a.wall / b.wall, a.cpu / b.cpu, target)

    every = [
        ratio("cold / httpx floor", "kairan cold", "floor httpx", COLD_TARGET),
        ratio("warm / httpx 304 floor", "kairan warm", "floor httpx 304", WARM_TARGET),
        ratio("cold / aiohttp floor", "kairan cold", "floor aiohttp", None),
        ratio("warm / aiohttp 304 floor", "kairan warm", "floor aiohttp 304", None),
        ratio("one-new / warm", "kairan one-new", "kairan warm", None),
    ]
    # a targeted ratio is always shown (unmeasured: "-"); the others when measured
    return [r for r in every if r.target is not None or r.wall is not None]


def machine(packages: Sequence[str] = _PACKAGES) -> dict[str, object]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {name: _version(name) for name in packages},
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return platform.processor()
    for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --- text ---------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


_PHASE_HEADER = (
    "phase",
    "runs",
    "wall s",
    "wall range",
    "CPU s",
    "peak RSS MB",
    "requests",
    "304s",
    "parsed",
    "in flight",
)


def phase_table(items: Sequence[Summary]) -> str:
    rows = [list(_PHASE_HEADER)] + [
        [
            s.name,
            str(s.runs),
            f"{s.wall:.2f}",
            f"{s.wall_min:.2f}–{s.wall_max:.2f}",
            f"{s.cpu:.2f}",
            f"{s.rss_mb:.0f}",
            str(s.requests),
            str(s.not_modified),
            str(s.parsed),
            str(s.max_in_flight),
        ]
        for s in items
    ]
    return table(rows)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def ratio_table(items: Sequence[Ratio]) -> str:
    rows = [["ratio (medians)", "wall", "CPU", "target", "met"]]
    for r in items:
        target = "-" if r.target is None else f"≤ {r.target:g}×"
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        rows.append([r.name, _times(r.wall), _times(r.cpu), target, met])
    return table(rows)


def rss_line(by_name: dict[str, Summary]) -> str:
    kairan = [s for name, s in by_name.items() if name.startswith("kairan")]
    parts = ", ".join(f"{s.name} {s.rss_mb:.0f} MB" for s in kairan)
    peak = max((s.rss_mb for s in kairan), default=0.0)
    verdict = "met" if peak < RSS_TARGET_MB else "MISSED"
    return f"peak RSS: {parts} (target < {RSS_TARGET_MB:g} MB: {verdict})"


def profile_text(item: profile.Profile) -> str:
    if item.error is not None:
        return f"profile kairan {item.phase}: {item.error}"
    sampled = "holding the GIL" if item.gil else "of busy threads"
    head = (
        f"profile kairan {item.phase}: {item.samples} samples {sampled} "
        f"at {profile.RATE} Hz ({item.output})"
    )
    lines = [head]
    for title, counter in item.views():
        lines.append(f"  {title}:")
        for name, samples in counter.most_common(TOP):
            share = 100 * samples / max(item.samples, 1)
            lines.append(f"    {share:5.1f}%  {item.seconds(samples):6.2f} s  {name}")
    return "\n".join(lines)


# --- the drivers' plumbing -----------------------------------------------------------


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


@contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    """A temporary working directory, removed afterwards unless ``keep``."""
    if keep:
        path = Path(tempfile.mkdtemp(prefix="kairan-bench-"))
        progress(f"working directory (kept): {path}")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="kairan-bench-") as name:
        yield Path(name)


def json_or_none(text: str) -> Any:
    """A child's JSON output, or None when it printed something else."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None
