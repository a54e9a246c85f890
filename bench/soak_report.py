"""The soak's report: its figures against the issue's targets, printed and as JSON."""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.soak_daemon import FastClock
from bench.soak_procs import Memory
from bench.soak_setup import SPEED, Article, Timeline
from bench.soak_tally import Tally

GROWTH_TARGET = 0.10


@dataclass
class Run:
    """What the driver saw while the daemon ran."""

    timeline: Timeline
    clock: FastClock
    articles: list[Article] = field(default_factory=list)
    memory: list[Memory] = field(default_factory=list)
    start_memory: Memory | None = None  # just before the first burst
    run_end_memory: Memory | None = None  # at the run's end, before the drain
    baseline_s: float | None = None  # real seconds until every member was polled
    reloads: list[float] = field(default_factory=list)  # real seconds per reload
    drain_s: float | None = None  # real seconds from the run's end to nothing owed
    owed_at_stop: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stop_s: float = 0.0
    tracemalloc: list[str] = field(default_factory=list)  # the daemon's dumps


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def growth(start: Memory | None, end: Memory | None, total: bool) -> float | None:
    """end / start - 1 of the daemon's RSS (with its parse workers: ``total``)."""
    if start is None or end is None:
        return None
    before, after = (
        (start.total_kb, end.total_kb) if total else (start.rss_kb, end.rss_kb)
    )
    return after / before - 1 if before else None


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1%}"


def _end(run: Run) -> Memory | None:
    return run.memory[-1] if run.memory else None


def targets(run: Run, counted: Tally) -> list[list[str]]:
    grown = growth(run.start_memory, _end(run), total=False)
    p95 = counted.percentile(0.95)
    digests = counted.messages["daily"] + counted.messages["weekly"]
    expected, queued = counted.expected_sent, counted.expected_queued
    return [
        ["figure", "value", "target", "met"],
        [
            "RSS growth, daemon (burst 1 → stop)",
            _share(grown),
            f"< {GROWTH_TARGET:.0%}",
            _met(grown is not None and grown < GROWTH_TARGET),
        ],
        [
            "RSS growth, with parse workers",
            _share(growth(run.start_memory, _end(run), total=True)),
            "-",
            "-",
        ],
        ["deliveries expected in the run", str(expected), "-", "-"],
        [
            "  rows sent (outbox)",
            str(counted.db_sent),
            "= expected",
            _met(counted.db_sent == expected),
        ],
        [
            "  (recipient, article) in sink mail",
            str(counted.sink_pairs),
            "= expected",
            _met(counted.sink_pairs == expected),
        ],
        [
            "digest rows queued past the run",
            f"{counted.db_queued} of {queued}",
            "= expected",
            _met(counted.db_queued == queued),
        ],
        [
            "digest messages",
            str(digests),
            f"= {counted.expected_digests}",
            _met(digests == counted.expected_digests),
        ],
        ["immediate delay p95, real s", "-" if p95 is None else f"{p95:.1f}", "-", "-"],
        [
            "immediate delay p95, daemon s",
            "-" if p95 is None else f"{p95 * SPEED:.0f}",
            "-",
            "-",
        ],
    ]


def memory_line(run: Run) -> str:
    memory, start = run.memory, run.start_memory
    if not memory or start is None:
        return "RSS: no samples"
    peak = max(memory, key=lambda m: m.total_kb)
    parts = [("after start-up", memory[0]), ("at burst 1", start), ("peak", peak)]
    if run.run_end_memory is not None:
        parts.append(("run's end", run.run_end_memory))
    parts.append(("at stop", memory[-1]))
    text = ", ".join(f"{n} {mb(m.rss_kb)} / {mb(m.total_kb)}" for n, m in parts)
    return f"RSS MB (daemon / with parse workers): {text}"


def show(run: Run, counted: Tally, logged: dict[str, int]) -> None:
    """Print the figures against their targets."""
    print(memory_line(run))
    steps = memory_steps(run.memory)
    print(f"RSS rises of 2 MB or more (s since spawn): {'; '.join(steps) or 'none'}")
    drain = "-" if run.drain_s is None else f"{run.drain_s:.1f} s"
    print(
        f"baseline poll {run.baseline_s or 0:.1f} s; feed reload"
        f" ≤ {max(run.reloads, default=0):.2f} s; drain after the run {drain}"
        f" (owed at stop: {run.owed_at_stop}); SIGTERM → exit {run.exit_code}"
        f" in {run.stop_s:.1f} s"
    )
    print(f"articles published {len(run.articles)}; messages {dict(counted.messages)}")
    print(report.table(targets(run, counted)))
    problems = run.problems + counted.problems
    print("\n".join(["PROBLEMS:", *problems]) if problems else "deliveries: all equal")
    if logged:
        print(f"daemon warnings/errors by event: {logged}")
    if run.tracemalloc:
        print("\n".join(["daemon tracemalloc:", *run.tracemalloc]))


def figures(
    args: argparse.Namespace,
    run: Run,
    counted: Tally | None,
    logged: dict[str, int] | None,
) -> dict[str, Any]:
    """Every figure, for the JSON; without the count while the run goes on."""
    end = _end(run)
    return {
        "machine": report.machine(),
        "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
        },
        "speed": SPEED,
        "origin": run.timeline.origin.isoformat(),
        "digest_moments": [m.isoformat() for m in run.timeline.digest_moments()],
        "baseline_s": run.baseline_s,
        "reload_max_s": max(run.reloads, default=None),
        "drain_s": run.drain_s,
        "owed_at_stop": run.owed_at_stop,
        "stop_s": run.stop_s,
        "exit_code": run.exit_code,
        "articles": len(run.articles),
        "memory": [asdict(m) for m in run.memory],
        "memory_start": asdict(run.start_memory) if run.start_memory else None,
        "memory_run_end": asdict(run.run_end_memory) if run.run_end_memory else None,
        "rss_growth": growth(run.start_memory, end, total=False),
        "rss_growth_with_workers": growth(run.start_memory, end, total=True),
        "deliveries": None if counted is None else counted.summary(),
        "daemon_log": logged,
        "tracemalloc": run.tracemalloc,
        "problems": run.problems + ([] if counted is None else counted.problems),
    }


def summary_line(args: argparse.Namespace) -> str:
    return (
        f"soak: {args.minutes} min, {args.feeds} feeds (5%/min), {args.subscribers}"
        f" subscribers, daemon clock {SPEED:g}× (poll.interval 300 s ="
        f" {300 / SPEED:g} s real)"
    )


def memory_steps(memory: Sequence[Memory], at_least_kb: int = 2048) -> list[str]:
    """Where the daemon's RSS rose by ``at_least_kb`` between two samples."""
    return [
        f"{a.at:.0f}→{b.at:.0f} s: {mb(a.rss_kb)}→{mb(b.rss_kb)} MB"
        for a, b in itertools.pairwise(memory)
        if b.rss_kb - a.rss_kb >= at_least_kb
    ]
