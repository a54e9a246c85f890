"""Kairan at national scale on one machine (issue 6 §6): poll, enqueue, claim, RSS.

    python -m bench.scale [--quick] [--latency 50] [--json FILE] [--keep]

In one process, on a fresh data directory: 2,000 members whose feeds a local
feed server (`bench.server`, a process of its own) serves; 100,000 subscribers
(e-mail on mixed schedules, timezones and filters; 0.5% webhooks); an outbox
grown to 1,000,000 delivery rows. Then it times one poll cycle in which 5% of
the feeds have one new article, the enqueueing of those articles, the due query,
one chunk's claim, a dry-run delivery pass and the `kairan status` queries; and
reports this process's peak RSS and the database's size. ``--quick``: 200
members, 10,000 subscribers, 100,000 rows.

The exit code is 1 when something is functionally wrong (a member that failed,
a wrong count); a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aggregator import logs, runtime
from aggregator.poller import CycleReport
from aggregator.runtime import Runtime
from bench import digest, report
from bench.child import own_peak_rss_kb
from bench.digest_pass import BenchClock
from bench.feeds import FeedSet, published
from bench.poll import member_id
from bench.report import progress, workspace
from bench.scale_measure import Step, Targets, enqueue_steps, outbox_steps, plans
from bench.scale_setup import (
    History,
    add_subscribers,
    config_toml,
    count_rows,
    pause_and_unsubscribe,
)
from bench.server import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
FULL = (2_000, 100_000, 1_000_000)  # members, subscribers, delivery rows
QUICK = (200, 10_000, 100_000)
ITEMS = 5  # items per feed: the baseline poll stores members × ITEMS articles
CHANGED_EVERY = 20  # every 20th feed (5%) has one new article in the cycle
CYCLE_SHARE = 0.1  # target: a poll cycle takes at most 10% of the poll interval
RSS_TARGET_MB = 300.0
CHUNK = 40  # subscribers per claim: the webhook channel's 10 workers × 4
HISTORY_FIRST = 0.6  # share of the rows target grown before the cycle, at most
_PACKAGES = ("kairan", "httpx", "feedparser", "sqlite-utils", "prometheus-client")


@dataclass
class Result:
    args: argparse.Namespace
    sizes: tuple[int, int, int]
    setup: dict[str, float] = field(default_factory=dict)  # seconds, not targets
    counts: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    db_bytes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def peak_rss_mb(self) -> float:
        return own_peak_rss_kb() / 1024


@dataclass(frozen=True, slots=True)
class Stops:
    """The bench clock's stops, in UTC: after the feeds' backlog, then a year on."""

    baseline: datetime
    subscribed: datetime
    history: datetime  # the first day of the outbox's history
    cycle: datetime

    @classmethod
    def make(cls) -> Stops:
        baseline = published(ITEMS - 1).astimezone(UTC) + timedelta(hours=1)
        return cls(
            baseline=baseline,
            subscribed=baseline + timedelta(minutes=1),
            history=baseline + timedelta(days=1),
            cycle=baseline + timedelta(days=365),
        )


class Scale:
    def __init__(
        self,
        args: argparse.Namespace,
        work: Path,
        feeds: FeedSet,
        server: ServerProcess,
    ) -> None:
        self.args = args
        self.work = work
        self.feeds = feeds
        self.server = server
        self.result = Result(args, args.sizes)
        self.stops = Stops.make()
        self.clock = BenchClock(self.stops.baseline)

    def timed_setup(self, name: str, started: float) -> None:
        self.result.setup[name] = round(time.perf_counter() - started, 2)
        progress(f"setup: {name}: {self.result.setup[name]:.1f} s")

    def run(self) -> Result:
        members, _, _ = self.args.sizes
        urls = [
            (member_id(i), f"{self.server.base_url}/{self.feeds.path(i)}")
            for i in range(members)
        ]
        config = self.work / "config.toml"
        config.write_text(config_toml(self.work, urls), encoding="utf-8")
        settings = runtime.load(config)
        with runtime.open_runtime(settings, clock=self.clock) as rt:
            history = self.populate(rt)
            cycle = self.poll_cycle(rt)
            self.enqueue(rt, cycle)
            self.at_size(rt, history)
        path = settings.database_path
        for suffix in ("", "-wal"):
            file = path.with_name(path.name + suffix)
            self.result.db_bytes[file.name] = (
                file.stat().st_size if file.exists() else 0
            )
        return self.result

    def populate(self, rt: Runtime) -> History:
        members, count, rows = self.args.sizes
        started = time.perf_counter()
        stored = asyncio.run(digest.poll(rt))
        self.timed_setup("baseline poll (every feed 200, stored as backlog)", started)
        if stored != Counter(baseline=members * ITEMS):
            self.result.problems.append(f"baseline poll: {dict(stored)}")
        self.clock.at = self.stops.subscribed
        started = time.perf_counter()
        add_subscribers(rt, count, members)
        self.timed_setup(f"{count} subscribers added", started)
        pool = [r[0] for r in rt.db.execute("SELECT id FROM entries ORDER BY id")]
        history = History(rt, self.stops.history, pool)
        started = time.perf_counter()
        history.grow(1)  # one day first: how many rows an article makes
        expected = history.per_article * (members // CHANGED_EVERY)
        history.grow(int(max(rows * HISTORY_FIRST, rows - 1.1 * expected)))
        self.timed_setup(f"history: {count_rows(rt.db)} rows", started)
        self.clock.at = self.stops.cycle - timedelta(days=1)
        paused, left = pause_and_unsubscribe(rt)
        self.result.counts["paused, unsubscribed"] = [paused, left]
        for index in range(0, members, CHANGED_EVERY):
            self.feeds.write(index, ITEMS)  # one new article, the oldest dropped
        self.server.reload()
        return history

    def poll_cycle(self, rt: Runtime) -> CycleReport:
        self.clock.at = self.stops.cycle
        before = count_rows(rt.db)
        progress("measuring one poll cycle …")
        cycle, step = asyncio.run(timed_cycle(rt))
        added = count_rows(rt.db) - before
        kinds = Counter(m.kind for m in cycle.members)
        new = sum(m.new for m in cycle.members)
        step.note = f"{dict(kinds)}, {new} new, {added} rows enqueued"
        self.result.steps.append(step)
        errors = Counter(f"{m.error_class}: {m.error}" for m in cycle.failed)
        self.result.counts.update(
            cycle_kinds=dict(kinds),
            cycle_new=new,
            cycle_rows=added,
            cycle_errors=dict(errors.most_common(5)),
        )
        members, _, _ = self.args.sizes
        changed = len(range(0, members, CHANGED_EVERY))
        wanted = Counter(ok=changed, not_modified=members - changed)
        if kinds != wanted or new != changed:
            self.result.problems.append(
                f"poll cycle: {dict(kinds)}, {new} new, not {dict(wanted)}"
            )
        return cycle

    def enqueue(self, rt: Runtime, cycle: CycleReport) -> None:
        progress("measuring enqueueing …")
        steps, added = enqueue_steps(rt, cycle)
        self.result.steps += steps
        if added != self.result.counts["cycle_rows"]:
            cycle_rows = self.result.counts["cycle_rows"]
            self.result.problems.append(
                f"enqueue_articles added {added} rows; the cycle {cycle_rows}"
            )

    def at_size(self, rt: Runtime, history: History) -> None:
        _, _, rows = self.args.sizes
        started = time.perf_counter()
        history.grow(rows)
        self.timed_setup("history topped up", started)
        states = dict(
            rt.db.execute(
                "SELECT state, count(*) FROM deliveries GROUP BY state"
            ).fetchall()
        )
        self.result.counts.update(
            deliveries=count_rows(rt.db),
            delivery_states=states,
            history_days=history.day,
            history_articles=history.articles,
            rows_per_history_article=round(history.per_article, 1),
            batches=rt.db.execute("SELECT count(*) FROM batches").fetchone()[0],
            subscribers=dict(
                rt.db.execute(
                    "SELECT kind || ' ' || state, count(*) FROM subscribers GROUP BY 1"
                ).fetchall()
            ),
        )
        if count_rows(rt.db) < rows:
            self.result.problems.append(
                f"the outbox holds {count_rows(rt.db)} rows, not {rows}"
            )
        progress(f"measuring the outbox at {count_rows(rt.db)} rows …")
        steps = asyncio.run(outbox_steps(rt, CHUNK, Targets()))
        self.result.steps += steps
        self.result.counts["plans"] = {
            s.name: plans(rt.db, s) for s in self.result.steps if s.statements
        }


async def timed_cycle(rt: Runtime) -> tuple[CycleReport, Step]:
    """Poller.run_cycle over the due members (all of them, a year on), timed."""
    interval = rt.settings.poll.interval
    async with rt.poller() as poller:
        started, cpu = time.perf_counter(), time.process_time()
        cycle = await poller.run_cycle()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    step = Step(
        "Poller.run_cycle", wall, CYCLE_SHARE * interval, rss_kb=own_peak_rss_kb()
    )
    step.note = f"CPU {cpu:.1f} s"
    return cycle, step


# --- the report ----------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def step_table(steps: Sequence[Step]) -> str:
    rows = [["step", "ms", "target ms", "met", "peak RSS MB", "note"]]
    for s in steps:
        met = {True: "yes", False: "NO", None: "-"}[s.met]
        rss = f"{s.rss_kb / 1024:.0f}"
        rows.append([s.name, _ms(s.seconds), _ms(s.target), met, rss, s.note])
    return report.table(rows)


def verdicts(result: Result, cycle: Step, interval: int) -> list[str]:
    rss = result.peak_rss_mb
    rss_met = "met" if rss < RSS_TARGET_MB else "MISSED"
    share = cycle.seconds / interval
    cycle_met = "met" if share <= CYCLE_SHARE else "MISSED"
    size = ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in result.db_bytes.items())
    counts = result.counts
    return [
        f"poll cycle / poll interval: {cycle.seconds:.1f} s / {interval} s = "
        f"{share:.2%} (target ≤ {CYCLE_SHARE:.0%}: {cycle_met})",
        f"peak RSS (VmHWM of this process): {rss:.0f} MB "
        f"(target < {RSS_TARGET_MB:g} MB: {rss_met})",
        f"database: {size}",
        f"outbox: {counts.get('deliveries')} rows {counts.get('delivery_states')}",
    ]


def slow_plans(result: Result) -> list[str]:
    """EXPLAIN QUERY PLAN of the statements of each step that missed its target."""
    lines = []
    for s in result.steps:
        if s.met is False:
            lines.append(f"slow: {s.name}")
            for sql, plan in plans_of(result, s.name).items():
                lines += [f"  {sql[:160]} …", *(f"    {p}" for p in plan)]
    return lines


def show(result: Result, interval: int) -> dict[str, Any]:
    members, count, rows = result.sizes
    print(f"{members} members, {count} subscribers, {rows} delivery rows (target)")
    setup = "; ".join(f"{k} {v:.1f} s" for k, v in result.setup.items())
    print(f"setup (not measured): {setup}")
    print(step_table(result.steps))
    cycle = next(s for s in result.steps if s.name == "Poller.run_cycle")
    print("\n".join([*verdicts(result, cycle, interval), *slow_plans(result)]))
    problems = ["PROBLEMS:", *result.problems] if result.problems else ["no problems"]
    print("\n".join(problems))
    return {
        "machine": report.machine(_PACKAGES),
        "args": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(result.args).items()
        },
        "setup_s": result.setup,
        "steps": [s.row() for s in result.steps],
        "poll_interval_s": interval,
        "cycle_share": cycle.seconds / interval,
        "peak_rss_mb": round(result.peak_rss_mb, 1),
        "database_bytes": result.db_bytes,
        "counts": result.counts,
        "problems": result.problems,
    }


def plans_of(result: Result, name: str) -> dict[str, list[str]]:
    found: dict[str, dict[str, list[str]]] = result.counts.get("plans", {})
    return found.get(name, {})


# --- entry point ---------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="200 members, 10,000 subscribers, 100,000 rows",
    )
    add("--latency", type=float, default=50.0, help="server ms per response; 50")
    add(
        "--json",
        type=Path,
        metavar="FILE",
        help="figures; bench/results/scale[-quick].json",
    )
    add("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    if not 0 <= args.latency <= 10_000:
        parser.error("--latency: 0 to 10000 ms")
    args.sizes = QUICK if args.quick else FULL
    if args.json is None:
        args.json = RESULTS / ("scale-quick.json" if args.quick else "scale.json")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("warning")  # as `kairan deliver` runs: routine lines off
    members, _, _ = args.sizes
    with workspace(args.keep) as work:
        feeds = FeedSet(work / "feeds", members, ITEMS)
        feeds.write_all()
        with ServerProcess(feeds.directory, args.latency, ROOT) as server:
            result = Scale(args, work, feeds, server).run()
            interval = runtime.load(work / "config.toml").poll.interval
    figures = show(result, interval)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(figures, ensure_ascii=False, indent=2, default=str)
    args.json.write_text(text + "\n", encoding="utf-8")
    return 1 if result.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
