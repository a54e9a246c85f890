"""Kairan's soak (issue 6 §6): the daemon for minutes against changing local feeds.

    python -m bench.soak [--minutes 10] [--feeds 1000] [--subscribers 1000]
    python -m bench.soak --quick            # 2 minutes, 200 feeds, 200 subscribers

`kairan run` (bench/soak_daemon.py) runs in a process of its own on a clock 10×
real time, so the SPEC's minimum poll interval (300 s) is 30 real seconds. The
feed server (bench/server.py) and the SMTP sink (the sandbox's, writing .eml
files) are processes of their own. After a real minute of warm-up (the baseline
poll), 5% of the feeds gain one article at the start of every real minute.
Reported against the issue's targets: the daemon's RSS at the first burst and at
the end (growth < 10%), deliveries expected vs made (equal), and the p95 delay
from an article's appearance on the feed server to its immediate mail.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import sqlite3
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aggregator import config
from aggregator.clock import SystemClock
from bench import report, soak_setup
from bench.feeds import FeedSet
from bench.poll import member_id
from bench.report import progress, workspace
from bench.server import ServerProcess
from bench.soak_daemon import FastClock
from bench.soak_procs import Memory, Process, Sink, sample
from bench.soak_setup import SPEED, Article, ChangingFeeds, Timeline
from bench.soak_tally import Tally, read_mail, read_rows, tally

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GROWTH_TARGET = 0.10
SAMPLE_EVERY = 5.0  # real seconds between RSS samples
STEP = 0.5  # real seconds the driver sleeps at most between looks
START_WAIT = 60.0  # real seconds for the daemon to log daemon.started


@dataclass
class Run:
    """What the driver saw while the daemon ran."""

    timeline: Timeline
    clock: FastClock
    articles: list[Article] = field(default_factory=list)
    memory: list[Memory] = field(default_factory=list)
    start_memory: Memory | None = None  # just before the first burst
    baseline_s: float | None = None  # real seconds until every member was polled
    reloads: list[float] = field(default_factory=list)  # real seconds per reload
    problems: list[str] = field(default_factory=list)
    exit_code: int | None = None
    stop_s: float = 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def polled_members(database: Path) -> int:
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM members WHERE last_success_at IS NOT NULL"
            ).fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0])


def wait_started(log: Path, daemon: Process) -> None:
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline and daemon.alive():  # bounded by START_WAIT
        if "daemon.started" in log.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(STEP)
    raise RuntimeError(f"the daemon did not start; see {log}")


def drive(
    run: Run,
    daemon: Process,
    feeds: ChangingFeeds,
    server: ServerProcess,
    database: Path,
    members: int,
) -> None:
    """Bursts at the start of each real minute, RSS every few seconds, until the end."""
    rng = random.Random(61)
    clock, timeline = run.clock, run.timeline
    bursts = [clock.mono_at(timeline.burst(k)) for k in range(timeline.minutes)]
    end = clock.mono_at(timeline.end)
    next_sample = time.monotonic()
    while (now := time.monotonic()) < end:  # bounded: the run's end
        if not daemon.alive():
            run.problems.append(
                f"the daemon exited early, at {now - clock.origin_mono:.0f} s"
            )
            return
        if now >= next_sample:
            run.memory.append(sample(daemon.pid, now - clock.origin_mono))
            next_sample += SAMPLE_EVERY
        if run.baseline_s is None and polled_members(database) == members:
            run.baseline_s = now - clock.origin_mono
        if bursts and now >= bursts[0]:
            bursts.pop(0)
            if run.start_memory is None:
                run.start_memory = sample(daemon.pid, now - clock.origin_mono)
                if run.baseline_s is None:
                    run.problems.append("the baseline poll had not finished at burst 1")
            burst(run, feeds, server, rng)
        time.sleep(max(0.0, min(STEP, end - time.monotonic())))
    run.memory.append(sample(daemon.pid, time.monotonic() - clock.origin_mono))


def burst(
    run: Run, feeds: ChangingFeeds, server: ServerProcess, rng: random.Random
) -> None:
    at = run.clock.now()
    changed = feeds.burst(rng, at)
    # Taken before the reload: the server cannot serve them earlier, so a delay
    # is never understated (by at most the reload's time, reported).
    wall = time.time()
    server.reload()
    run.reloads.append(time.time() - wall)
    for index, url, text in changed:
        member = member_id(index)
        tag = soak_setup.member_tag(index)
        run.articles.append(Article(url, member, tag, text, at, wall))
    progress(f"burst {len(run.reloads)}: {len(changed)} feeds changed at {at:%H:%M:%S}")


def soak(args: argparse.Namespace, work: Path) -> tuple[Run, Tally, dict[str, int]]:
    feedset = FeedSet(work / "feeds", args.feeds, 20)
    feeds = ChangingFeeds(feedset)
    feeds.write_all()
    timeline = Timeline.starting_before(SystemClock().now(), args.minutes)
    made = []
    with ExitStack() as stack:
        server = stack.enter_context(
            ServerProcess(feedset.directory, args.latency, ROOT)
        )
        sink = stack.enter_context(Sink(work / "mail", ROOT))
        urls = [f"{server.base_url}/{feedset.path(i)}" for i in range(args.feeds)]
        path = work / "config.toml"
        hour = (SystemClock().now().hour + 12) % 24  # UTC hour; any far one will do
        path.write_text(
            soak_setup.config_toml(urls, work / "data", sink.port, free_port(), hour),
            encoding="utf-8",
        )
        settings = config.load_settings(path)
        made = soak_setup.followers(args.subscribers, args.feeds, timeline)
        soak_setup.add_followers(settings, made, timeline.origin)
        progress(
            f"{args.feeds} feeds, {len(made)} subscribers; daemon clock from "
            f"{timeline.origin:%Y-%m-%d %H:%M:%S} UTC at {SPEED:g}×"
        )
        origin_mono = time.monotonic()
        run = Run(timeline, timeline.clock(origin_mono))
        log_path = work / "daemon.log"
        log = stack.enter_context(log_path.open("wb"))
        argv = [
            sys.executable,
            "-m",
            "bench.soak_daemon",
            "--config",
            str(path),
            "--origin",
            timeline.origin.isoformat(),
            "--origin-mono",
            repr(origin_mono),
            "--speed",
            repr(SPEED),
        ]
        daemon = stack.enter_context(Process(argv, ROOT, log))
        wait_started(log_path, daemon)
        drive(run, daemon, feeds, server, settings.database_path, args.feeds)
        run.exit_code, run.stop_s = daemon.stop()
        if run.exit_code != 0:
            run.problems.append(f"the daemon exited {run.exit_code} on SIGTERM")
        sink.stop()
        counted = tally(
            run.articles,
            made,
            timeline.end,
            read_rows(settings.database_path),
            read_mail(work / "mail"),
        )
        logged = log_lines(log_path)
    return run, counted, logged


def log_lines(path: Path) -> dict[str, int]:
    """Warnings and errors the daemon logged, by event ("DATE TIME LEVEL EVENT …")."""
    events: dict[str, int] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split()
        if len(words) > 3 and words[2] in ("warning", "error"):
            events[words[3]] = events.get(words[3], 0) + 1
    return events


# --- the report ----------------------------------------------------------------------


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


def targets(run: Run, counted: Tally) -> list[list[str]]:
    end = run.memory[-1] if run.memory else None
    grown = growth(run.start_memory, end, total=False)
    p95 = counted.percentile(0.95)
    digests = counted.messages["daily"] + counted.messages["weekly"]
    expected, queued = counted.expected_sent, counted.expected_queued
    return [
        ["figure", "value", "target", "met"],
        [
            "RSS growth, daemon (burst 1 → end)",
            _share(grown),
            f"< {GROWTH_TARGET:.0%}",
            _met(grown is not None and grown < GROWTH_TARGET),
        ],
        [
            "RSS growth, with parse workers",
            _share(growth(run.start_memory, end, total=True)),
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


def memory_line(memory: Sequence[Memory], start: Memory | None) -> str:
    if not memory or start is None:
        return "RSS: no samples"
    first, end = memory[0], memory[-1]
    peak = max(memory, key=lambda m: m.total_kb)
    parts = [("after start-up", first), ("at burst 1", start), ("peak", peak)]
    parts.append(("end", end))
    text = ", ".join(f"{n} {mb(m.rss_kb)} / {mb(m.total_kb)}" for n, m in parts)
    return f"RSS MB (daemon / with parse workers): {text}"


def show(
    args: argparse.Namespace, run: Run, counted: Tally, logged: dict[str, int]
) -> dict[str, Any]:
    """Print the figures against their targets; return them all (for the JSON)."""
    end = run.memory[-1] if run.memory else None
    print(
        f"soak: {args.minutes} min, {args.feeds} feeds (5%/min), {args.subscribers}"
        f" subscribers, daemon clock {SPEED:g}× (poll.interval 300 s ="
        f" {300 / SPEED:g} s real)"
    )
    print(memory_line(run.memory, run.start_memory))
    print(
        f"baseline poll {run.baseline_s or 0:.1f} s; feed reload"
        f" ≤ {max(run.reloads, default=0):.2f} s; SIGTERM → exit {run.exit_code}"
        f" in {run.stop_s:.1f} s"
    )
    print(f"articles published {len(run.articles)}; messages {dict(counted.messages)}")
    print(report.table(targets(run, counted)))
    problems = run.problems + counted.problems
    print("\n".join(["PROBLEMS:", *problems]) if problems else "deliveries: all equal")
    if logged:
        print(f"daemon warnings/errors by event: {logged}")
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
        "stop_s": run.stop_s,
        "exit_code": run.exit_code,
        "articles": len(run.articles),
        "memory": [asdict(m) for m in run.memory],
        "memory_start": asdict(run.start_memory) if run.start_memory else None,
        "rss_growth": growth(run.start_memory, end, total=False),
        "rss_growth_with_workers": growth(run.start_memory, end, total=True),
        "deliveries": counted.summary(),
        "daemon_log": logged,
        "problems": problems,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    add = parser.add_argument
    add("--minutes", type=int, default=10, help="real minutes of changes; 10")
    add("--feeds", type=int, default=1000, help="feeds (members); 1000")
    add("--subscribers", type=int, default=1000, help="subscribers; 1000")
    add("--quick", action="store_true", help="2 minutes, 200 feeds, 200 subscribers")
    add("--latency", type=float, default=50.0, help="feed server ms per response; 50")
    add("--json", type=Path, metavar="FILE", help="default bench/results/soak-N.json")
    add("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.feeds, args.subscribers = 2, 200, 200
    if not (
        1 <= args.minutes <= 120
        and 20 <= args.feeds <= 9999
        and 1 <= args.subscribers <= 9999
    ):
        parser.error("need minutes 1-120, feeds 20-9999, subscribers 1-9999")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with workspace(args.keep) as work:
        run, counted, logged = soak(args, work)
    figures = show(args, run, counted, logged)
    target = args.json or RESULTS / f"soak-{args.feeds}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    progress(f"figures written to {target}")
    growth = figures["rss_growth"]
    ok = not figures["problems"] and growth is not None and growth < GROWTH_TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
