"""Kairan's soak (issue 6 §6): the daemon for minutes against changing local feeds.

    python -m bench.soak [--minutes 10] [--feeds 1000] [--subscribers 1000]
    python -m bench.soak --quick            # 2 minutes, 200 feeds, 200 subscribers

`kairan run` (bench/soak_daemon.py) runs in a process of its own on a clock 10×
real time, so the SPEC's minimum poll interval (300 s) is 30 real seconds. The
feed server (bench/server.py) and the SMTP sink (the sandbox's, writing .eml
files) are processes of their own. After a real minute of warm-up (the baseline
poll), 5% of the feeds gain one article at the start of every real minute.
After the last burst's minute the daemon runs on until it owes nothing the run
should have sent (bench/soak_drain.py; at most `DRAIN_MAX`), then SIGTERM and the
count. Reported against the issue's targets: the daemon's RSS at the first burst
and at the stop (growth < 10%), deliveries expected vs made (equal), and the p95
delay from an article's appearance on the feed server to its immediate mail.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from aggregator import config
from aggregator.clock import SystemClock
from bench import soak_setup
from bench.feeds import FeedSet
from bench.poll import member_id
from bench.report import progress, workspace
from bench.server import ServerProcess
from bench.soak_daemon import MARK
from bench.soak_drain import owed, polled_members
from bench.soak_procs import Process, Sink, sample
from bench.soak_report import GROWTH_TARGET, Run, figures, show, summary_line
from bench.soak_setup import SPEED, Article, ChangingFeeds, Timeline
from bench.soak_tally import Tally, read_mail, read_rows, tally

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SAMPLE_EVERY = 5.0  # real seconds between RSS samples
STEP = 0.5  # real seconds the driver sleeps at most between looks
START_WAIT = 60.0  # real seconds for the daemon to log daemon.started
DRAIN_MAX = 180.0  # real seconds the daemon gets after the run to owe nothing
DRAIN_LOOK = 2.0  # real seconds between looks at what it owes (a full scan)
Save = Callable[[Run], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_started(log: Path, daemon: Process) -> None:
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline and daemon.alive():  # bounded by START_WAIT
        if "daemon.started" in log.read_text(encoding="utf-8", errors="replace"):
            return
        time.sleep(STEP)
    raise RuntimeError(f"the daemon did not start; see {log}")


def watch(
    run: Run, daemon: Process, until: float, look: Callable[[float], bool]
) -> bool:
    """RSS every few seconds and ``look(now)`` every step, until the monotonic
    ``until`` or ``look`` says done (True); False if the daemon died first."""
    next_sample = time.monotonic()
    while (now := time.monotonic()) < until:  # bounded by `until`
        if not daemon.alive():
            run.problems.append(
                f"the daemon exited early, at {now - run.clock.origin_mono:.0f} s"
            )
            return False
        if now >= next_sample:
            run.memory.append(sample(daemon.pid, now - run.clock.origin_mono))
            next_sample += SAMPLE_EVERY
        if look(now):
            return True
        time.sleep(max(0.0, min(STEP, until - time.monotonic())))
    return True


def drive(
    run: Run,
    daemon: Process,
    feeds: ChangingFeeds,
    server: ServerProcess,
    database: Path,
    save: Save,
    tracing: bool,
) -> bool:
    """A burst at the start of each real minute until the run's end."""
    rng = random.Random(61)
    clock, timeline = run.clock, run.timeline
    bursts = [clock.mono_at(timeline.burst(k)) for k in range(timeline.minutes)]

    def look(now: float) -> bool:
        members = feeds.feeds.count
        if run.baseline_s is None and polled_members(database) == members:
            run.baseline_s = now - clock.origin_mono
        if bursts and now >= bursts[0]:
            bursts.pop(0)
            if run.start_memory is None:
                run.start_memory = sample(daemon.pid, now - clock.origin_mono)
                if run.baseline_s is None:
                    run.problems.append("the baseline poll had not finished at burst 1")
                if tracing:  # the baseline snapshot (bench/soak_daemon.py)
                    os.kill(daemon.pid, signal.SIGUSR1)
            burst(run, feeds, server, rng)
            save(run)
        return False

    alive = watch(run, daemon, clock.mono_at(timeline.end), look)
    if alive:
        now = time.monotonic() - clock.origin_mono
        run.run_end_memory = sample(daemon.pid, now)
    return alive


def drain(run: Run, daemon: Process, database: Path) -> None:
    """Keep the daemon running until it owes nothing the run should have sent."""
    started = time.monotonic()
    until = min(started + DRAIN_MAX, run.clock.mono_at(run.timeline.next_digest))
    urls = [a.url for a in run.articles]
    next_look = started

    def look(now: float) -> bool:
        nonlocal next_look
        if now < next_look:
            return False
        next_look = now + DRAIN_LOOK
        run.owed_at_stop = owed(database, urls, run.timeline.end)
        return not run.owed_at_stop

    if watch(run, daemon, until, look) and run.owed_at_stop:
        run.problems.append(
            f"still owed after {time.monotonic() - started:.0f} s: {run.owed_at_stop}"
        )
    run.drain_s = time.monotonic() - started
    run.memory.append(sample(daemon.pid, time.monotonic() - run.clock.origin_mono))


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


def daemon_argv(path: Path, run: Run, tracing: bool) -> list[str]:
    argv = [sys.executable, "-m", "bench.soak_daemon", "--config", str(path)]
    argv += ["--origin", run.timeline.origin.isoformat()]
    argv += ["--origin-mono", repr(run.clock.origin_mono), "--speed", repr(SPEED)]
    return argv + (["--tracemalloc"] if tracing else [])


def soak(
    args: argparse.Namespace, work: Path, save: Save
) -> tuple[Run, Tally, dict[str, int]]:
    feedset = FeedSet(work / "feeds", args.feeds, 20)
    feeds = ChangingFeeds(feedset)
    feeds.write_all()
    timeline = Timeline.starting_near(SystemClock().now(), args.minutes)
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
        database = settings.database_path
        made = soak_setup.followers(args.subscribers, args.feeds, timeline)
        soak_setup.add_followers(settings, made, timeline.origin)
        progress(
            f"{args.feeds} feeds, {len(made)} subscribers; daemon clock from "
            f"{timeline.origin:%Y-%m-%d %H:%M:%S} UTC at {SPEED:g}×"
        )
        run = Run(timeline, timeline.clock(time.monotonic()))
        log_path = work / "daemon.log"
        log = stack.enter_context(log_path.open("wb"))
        argv = daemon_argv(path, run, args.tracemalloc)
        daemon = stack.enter_context(Process(argv, ROOT, log))
        wait_started(log_path, daemon)
        if drive(run, daemon, feeds, server, database, save, args.tracemalloc):
            progress("the run is over; draining what the daemon still owes")
            drain(run, daemon, database)
            progress(f"drained in {run.drain_s:.1f} s; owed at stop {run.owed_at_stop}")
        run.exit_code, run.stop_s = daemon.stop()
        if run.exit_code != 0:
            run.problems.append(f"the daemon exited {run.exit_code} on SIGTERM")
        sink.stop()
        logged, run.tracemalloc = log_lines(log_path)
        save(run)
        counted = count(run, made, database, work / "mail")
    return run, counted, logged


def count(
    run: Run, made: Sequence[soak_setup.Follower], database: Path, mail: Path
) -> Tally:
    started = time.perf_counter()
    rows = read_rows(database)
    read = time.perf_counter()
    mails = read_mail(mail)
    parsed = time.perf_counter()
    counted = tally(run.articles, made, run.timeline.end, rows, mails)
    progress(
        f"counted {len(rows)} rows ({read - started:.1f} s) and {len(mails)}"
        f" messages ({parsed - read:.1f} s) in {time.perf_counter() - started:.1f} s"
    )
    return counted


def log_lines(path: Path) -> tuple[dict[str, int], list[str]]:
    """Warnings and errors the daemon logged, by event ("DATE TIME LEVEL EVENT …"),
    and its tracemalloc dumps."""
    events: dict[str, int] = {}
    traced = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split()
        if words[:1] == [MARK]:
            traced.append(line.removeprefix(MARK).strip())
        elif len(words) > 3 and words[2] in ("warning", "error"):
            events[words[3]] = events.get(words[3], 0) + 1
    return events, traced


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    add = parser.add_argument
    add("--minutes", type=int, default=10, help="real minutes of changes; 10")
    add("--feeds", type=int, default=1000, help="feeds (members); 1000")
    add("--subscribers", type=int, default=1000, help="subscribers; 1000")
    add("--quick", action="store_true", help="2 minutes, 200 feeds, 200 subscribers")
    add("--latency", type=float, default=50.0, help="feed server ms per response; 50")
    add("--tracemalloc", action="store_true", help="trace the daemon's allocations")
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


def write(target: Path, data: dict[str, Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    target.write_text(text, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    target = args.json or RESULTS / f"soak-{args.feeds}.json"
    with workspace(args.keep) as work:
        # Saved after each burst and at the stop, before the count: the RSS
        # series survives a count or a driver that fails.
        run, counted, logged = soak(
            args, work, lambda r: write(target, figures(args, r, None, None))
        )
    print(summary_line(args))
    show(run, counted, logged)
    result = figures(args, run, counted, logged)
    write(target, result)
    progress(f"figures written to {target}")
    growth = result["rss_growth"]
    ok = not result["problems"] and growth is not None and growth < GROWTH_TARGET
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
