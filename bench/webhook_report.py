"""The webhook benchmark's figures: each run, medians over rounds, ratio, tables.

`bench.webhooks` measures; this module sums up (medians of wall and CPU time,
the largest peak RSS, the last round's receiver counts) and prints the tables
the other benchmarks print, with `bench.report`'s helpers.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench import profile, report
from bench.child import Measured
from bench.report import Ratio
from bench.webhook_receiver import ReceiverStats

TARGET = 1.5  # the pass ≤ 1.5 × the floor, wall and CPU (issue 5 §6)
FLOOR = "floor httpx"
KAIRAN = "kairan webhooks"
_PACKAGES = ("kairan", "httpx", "httpcore", "h11", "standardwebhooks")


@dataclass
class Run:
    name: str
    round: int
    process: Measured
    wall: float  # the child's own timing of the work
    cpu: float
    sent: int
    receiver: ReceiverStats
    output: dict[str, Any]
    verified: int = 0  # sampled requests whose signature and body checked out
    problems: list[str] = field(default_factory=list)

    @property
    def rss_mb(self) -> float:
        return int(self.output.get("rss_kb", 0)) / 1024

    def row(self) -> dict[str, object]:
        return {
            "phase": self.name,
            "round": self.round,
            "wall_s": self.wall,
            "cpu_s": self.cpu,
            "process_wall_s": round(self.process.wall, 3),
            "process_cpu_s": round(self.process.cpu, 3),
            "peak_rss_mb": round(self.rss_mb, 1),
            "sent": self.sent,
            "verified": self.verified,
            "receiver": self.receiver.summary(),
            "output": self.output,
            "problems": self.problems,
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """A phase over its rounds: median timings, largest RSS, the last round's counts."""

    name: str
    runs: int
    wall: float
    wall_min: float
    wall_max: float
    cpu: float
    process_wall: float
    process_cpu: float
    rss_mb: float
    receiver_cpu: float
    received: int
    verified: int
    max_open: int  # connections open at once, as the receiver saw them

    @classmethod
    def of(cls, runs: Sequence[Run]) -> Summary:
        walls = [r.wall for r in runs]
        last = runs[-1]
        return cls(
            name=last.name,
            runs=len(runs),
            wall=statistics.median(walls),
            wall_min=min(walls),
            wall_max=max(walls),
            cpu=statistics.median(r.cpu for r in runs),
            process_wall=statistics.median(r.process.wall for r in runs),
            process_cpu=statistics.median(r.process.cpu for r in runs),
            rss_mb=max(r.rss_mb for r in runs),
            receiver_cpu=statistics.median(r.receiver.cpu for r in runs),
            received=last.receiver.requests,
            verified=last.verified,
            max_open=last.receiver.max_open,
        )

    @property
    def rate(self) -> float:
        return self.received / self.wall if self.wall > 0 else 0.0


def summaries(runs: Sequence[Run]) -> dict[str, Summary]:
    grouped: dict[str, list[Run]] = {}
    for run in runs:
        grouped.setdefault(run.name, []).append(run)
    return {
        name: Summary.of(grouped[name]) for name in (FLOOR, KAIRAN) if name in grouped
    }


def ratio(by_name: dict[str, Summary]) -> Ratio:
    top, bottom = by_name.get(KAIRAN), by_name.get(FLOOR)
    if top is None or bottom is None or not bottom.wall or not bottom.cpu:
        return Ratio("webhooks / floor", None, None, TARGET)
    return Ratio(
        "webhooks / floor", top.wall / bottom.wall, top.cpu / bottom.cpu, TARGET
    )


_HEADER: tuple[str, ...] = ("phase", "runs", "wall s", "wall range", "CPU s")
_HEADER += ("req/s", "peak RSS MB", "process wall s", "process CPU s")
_HEADER += ("receiver CPU s", "received", "verified", "connections")


def phase_table(items: Sequence[Summary]) -> str:
    rows = [list(_HEADER)] + [
        [
            s.name,
            str(s.runs),
            f"{s.wall:.2f}",
            f"{s.wall_min:.2f}–{s.wall_max:.2f}",
            f"{s.cpu:.2f}",
            f"{s.rate:.0f}",
            f"{s.rss_mb:.0f}",
            f"{s.process_wall:.2f}",
            f"{s.process_cpu:.2f}",
            f"{s.receiver_cpu:.2f}",
            str(s.received),
            str(s.verified),
            str(s.max_open),
        ]
        for s in items
    ]
    return report.table(rows)


def rss_line(runs: Sequence[Run]) -> str:
    """Each phase's largest peak RSS; for the pass, also its RSS before run()."""
    parts = []
    for name in (KAIRAN, FLOOR):
        mine = [r for r in runs if r.name == name]
        if not mine:
            continue
        part = f"{name} {max(r.rss_mb for r in mine):.0f} MB"
        before = max(int(r.output.get("rss_before_kb", 0)) for r in mine)
        if before:
            part += f" ({before / 1024:.0f} MB before run())"
        parts.append(part)
    return "peak RSS: " + (", ".join(parts) or "-")


class SetupFigures(Protocol):
    """What the report needs of a round's setup."""

    @property
    def directory(self) -> Path: ...
    @property
    def seconds(self) -> float: ...
    @property
    def deliveries(self) -> int: ...
    @property
    def problems(self) -> list[str]: ...


def show(
    args: argparse.Namespace,
    setups: Sequence[SetupFigures],
    runs: Sequence[Run],
    item: profile.Profile | None,
) -> dict[str, Any]:
    """Print the tables; return every figure (for --json)."""
    by_name = summaries(runs)
    ratios = [ratio(by_name)]
    problems = [f"setup {s.directory.name}: {p}" for s in setups for p in s.problems]
    problems += [
        f"round {r.round + 1}, {r.name}: {p}" for r in runs for p in r.problems
    ]
    last = setups[-1] if setups else None
    print(
        f"{args.deliveries} webhook deliveries to {args.endpoints} endpoints "
        f"({args.deliveries // args.endpoints} articles each), concurrency "
        f"{args.concurrency}, per endpoint {args.per_endpoint}, "
        f"{len(setups)} round(s)"
    )
    if last is not None:
        print(f"setup (not measured, last round): {last.seconds:.2f} s")
    print()
    print(phase_table(list(by_name.values())))
    print()
    print(report.ratio_table(ratios))
    print(rss_line(runs))
    if item is not None:
        print()
        print(report.profile_text(item))
    print()
    print("\n".join(["PROBLEMS:", *problems]) if problems else "no functional problems")
    return {
        "machine": report.machine(_PACKAGES),
        "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
        },
        "setups": [
            {
                "directory": s.directory.name,
                "seconds": round(s.seconds, 3),
                "deliveries": s.deliveries,
                "problems": s.problems,
            }
            for s in setups
        ],
        "summaries": [asdict(s) for s in by_name.values()],
        "ratios": [r.as_dict() for r in ratios],
        "runs": [r.row() for r in runs],
        "profile": None if item is None else item.as_dict(report.TOP),
        "problems": problems,
    }
